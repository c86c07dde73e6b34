// Evaluation tasks: pick the better answer or call a tie, submit (idempotent) and go straight to the next
// task. The judgement is sent as a ranking: [[picked], [the others]] or [[every answer]] for a tie.
(function () {
  "use strict";

  const configNode = document.getElementById("judging-config");
  if (!configNode) return;
  const config = JSON.parse(configNode.textContent);
  const ids = config.responses.map((r) => r.id);
  const labels = new Map(config.responses.map((r) => [r.id, r.label]));
  const byLabel = new Map(config.responses.map((r) => [r.label, r.id]));

  let choice = null; // a response id, or "tie"
  let submitting = false;
  // one key per page load: a retry after a network error returns the first result, never a duplicate
  const idempotencyKey = (window.crypto && crypto.randomUUID)
    ? crypto.randomUUID()
    : Date.now().toString(36) + Math.random().toString(36).slice(2);

  const statusLine = document.getElementById("judge-status");
  const submitButton = document.getElementById("submit-judgement");
  const skipButton = document.getElementById("skip-task");

  // ---- time spent: only while the page is visible ----
  let spentMs = 0;
  let visibleSince = document.visibilityState === "visible" ? performance.now() : null;
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden" && visibleSince !== null) {
      spentMs += performance.now() - visibleSince;
      visibleSince = null;
    } else if (document.visibilityState === "visible" && visibleSince === null) {
      visibleSince = performance.now();
    }
  });
  function timeSpent() {
    return Math.round(spentMs + (visibleSince === null ? 0 : performance.now() - visibleSince));
  }

  function say(message, isError) {
    statusLine.textContent = message;
    statusLine.classList.toggle("error", Boolean(isError));
  }

  function order() {
    if (choice === "tie") return [ids.slice()];
    return [[choice], ids.filter((id) => id !== choice)];
  }

  function render() {
    document.querySelectorAll("[data-pick]").forEach((button) => {
      const value = button.dataset.pick === "tie" ? "tie" : Number(button.dataset.pick);
      button.setAttribute("aria-pressed", String(value === choice));
    });
    document.querySelectorAll("article.judge-answer").forEach((card) => {
      const id = Number(card.dataset.responseId);
      card.classList.toggle("picked", id === choice);
      card.classList.toggle("tied", choice === "tie");
    });
    submitButton.disabled = submitting || choice === null;
  }

  function pick(value) {
    if (submitting) return;
    choice = value;
    say(value === "tie" ? "A tie: no answer is better." : "Answer " + labels.get(value) + " is better.");
    render();
  }

  document.addEventListener("click", (event) => {
    const button = event.target instanceof HTMLElement ? event.target.closest("[data-pick]") : null;
    if (!button) return;
    pick(button.dataset.pick === "tie" ? "tie" : Number(button.dataset.pick));
  });

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (target instanceof HTMLElement && target.matches("input, textarea, select, [contenteditable]")) return;
    if (event.altKey || event.metaKey) return;
    if (event.key === "Enter" && target !== skipButton) { // a picked answer's button keeps focus: Enter submits
      event.preventDefault();
      submit();
      return;
    }
    if (event.ctrlKey) return;
    if (/^[1-9]$/.test(event.key) && byLabel.has(Number(event.key))) {
      event.preventDefault();
      pick(byLabel.get(Number(event.key)));
    } else if (event.key === "0" || event.key === "t" || event.key === "T") {
      event.preventDefault();
      pick("tie");
    } else if (event.key === "Escape") {
      choice = null;
      say("Pick the better answer, or call a tie.");
      render();
    }
  });

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }
  async function post(url, body, headers) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: Object.assign({ "Content-Type": "application/json", "X-CSRFToken": csrfToken() }, headers || {}),
      body: JSON.stringify(body),
    });
  }
  async function detail(response) {
    try {
      const data = await response.json();
      return data.detail || JSON.stringify(data);
    } catch (error) {
      return "The server answered " + response.status + ".";
    }
  }
  function offerNext() {
    const link = document.createElement("a");
    link.href = config.nextUrl;
    link.className = "button";
    link.id = "next-task";
    link.textContent = "Take the next task";
    statusLine.append(" ", link);
  }

  async function submit() {
    if (submitting) return;
    if (choice === null) {
      say("Pick the better answer (or call a tie) first.", true);
      return;
    }
    submitting = true;
    render();
    say("Saving…");
    try {
      const body = { order: order(), time_spent_ms: timeSpent() };
      const response = await post(config.submitUrl, body, { "Idempotency-Key": idempotencyKey });
      if (response.status === 201) {
        say("Saved. Loading the next task…");
        window.location.assign(config.nextUrl);
        return;
      }
      say(await detail(response), true);
      if (response.status === 409 || response.status === 404) offerNext();
    } catch (error) {
      say("Could not reach the server; your choice is kept here. Press Submit again.", true);
    }
    submitting = false;
    render();
  }

  async function skip() {
    if (submitting) return;
    submitting = true;
    try {
      const response = await post(config.skipUrl, {});
      if (response.ok) {
        window.location.assign(config.nextUrl);
        return;
      }
      say(await detail(response), true);
    } catch (error) {
      say("Could not reach the server. Try again.", true);
    }
    submitting = false;
    render();
  }

  submitButton.addEventListener("click", submit);
  skipButton.addEventListener("click", skip);
  render();
})();
