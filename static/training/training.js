// Training and Models pages: buttons that send to the JSON API ("Run this step now", "Turn the loop on",
// "Make it the current policy"), then reload the page to show what changed. Errors are shown as text, never as HTML.
(function () {
  "use strict";

  const statusLine = document.getElementById("tr-status");

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function say(text, isError) {
    if (!statusLine) return;
    statusLine.textContent = text;
    statusLine.classList.toggle("error", Boolean(isError));
  }

  // The API answers errors as {"message": ..., "errors": {...}} or DRF's {"detail": ...}.
  function errorText(body, response) {
    if (body && typeof body === "object") {
      if (typeof body.message === "string") return body.message;
      if (typeof body.detail === "string") return body.detail;
    }
    return "The server answered " + response.status + " " + response.statusText + ".";
  }

  async function post(button, request) {
    request = request || { url: button.dataset.postUrl, method: button.dataset.method, body: button.dataset.body };
    const original = button.textContent;
    button.disabled = true;
    button.textContent = button.dataset.working || "Working…";
    say("");
    try {
      const response = await fetch(request.url, {
        method: request.method || "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken() },
        body: request.body || "{}",
      });
      let body = null;
      try { body = await response.json(); } catch (ignored) { body = null; }
      if (!response.ok) throw new Error(errorText(body, response));
      say("Done. Reloading…");
      window.location.reload();
    } catch (error) {
      say(error.message || String(error), true);
      button.disabled = false;
      button.textContent = original;
    }
  }

  // A form with data-post-url sends itself as JSON: checkbox groups as lists of ids, numbers as numbers.
  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form[data-post-url]");
    if (!form) return;
    event.preventDefault();
    const body = form.dataset.project ? { project: Number(form.dataset.project) } : {};
    form.querySelectorAll("input[name]").forEach((input) => {
      if (input.type === "checkbox") {
        body[input.name] = body[input.name] || [];
        if (input.checked) body[input.name].push(Number(input.value));
      } else if (input.type === "number") {
        body[input.name] = input.value === "" ? null : Number(input.value);
      } else {
        body[input.name] = input.value;
      }
    });
    const button = form.querySelector("button[type=submit]");
    if (button.disabled) return;
    await post(button, { url: form.dataset.postUrl, body: JSON.stringify(body) });
  });

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-post-url]");
    if (!button || button.disabled) return;
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    post(button);
  });
})();
