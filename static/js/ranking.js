// Ranking page: order K answers best first, with ties, by drag and drop (SortableJS: mouse and touch),
// taps ("Rank next" on an answer, then Up / Down / Tie / Unrank) or keyboard; flags, scores, "all bad";
// submit (idempotent) and go straight to the next task.
(function () {
  "use strict";

  const configNode = document.getElementById("ranking-config");
  if (!configNode) return;
  const config = JSON.parse(configNode.textContent);
  const labels = new Map(config.responses.map((r) => [r.id, r.label]));
  const byLabel = new Map(config.responses.map((r) => [r.label, r.id]));

  // groups: best first; each a list of response ids. Answers not in a group are unranked.
  let groups = [];
  let selected = null;
  let submitting = false;
  let unrankedError = false; // the status line says "Rank every answer first"; cleared once none is left
  // one key per page load: a retry after a network error returns the first result, never a duplicate
  const idempotencyKey = (window.crypto && crypto.randomUUID)
    ? crypto.randomUUID()
    : Date.now().toString(36) + Math.random().toString(36).slice(2);

  const pool = document.getElementById("rank-pool");
  const list = document.getElementById("rank-groups");
  const statusLine = document.getElementById("rank-status");
  const submitButton = document.getElementById("submit-ranking");
  const skipButton = document.getElementById("skip-task");
  const allBad = document.getElementById("all-bad");
  const actionBar = document.getElementById("rank-actions");
  const progressLines = document.querySelectorAll("[data-progress]");
  const dockSubmit = document.getElementById("submit-ranking-dock");
  let sortables = [];

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

  // ---- model ----
  function groupIndexOf(id) {
    return groups.findIndex((group) => group.includes(id));
  }
  function removeFromGroups(id) {
    const index = groupIndexOf(id);
    if (index < 0) return -1;
    groups[index] = groups[index].filter((other) => other !== id);
    if (groups[index].length === 0) {
      groups.splice(index, 1);
    }
    return index;
  }
  function insertAsGroup(id, position) {
    removeFromGroups(id);
    position = Math.max(0, Math.min(position, groups.length));
    groups.splice(position, 0, [id]);
  }
  function joinGroup(id, targetIndex) {
    const target = groups[targetIndex];
    if (!target || target.includes(id)) return;
    const targetGroup = target;
    removeFromGroups(id);
    targetGroup.push(id);
  }
  function unrank(id) {
    removeFromGroups(id);
  }
  function moveUp(id) {
    const index = groupIndexOf(id);
    if (index < 0) return;
    if (groups[index].length > 1) {
      groups[index] = groups[index].filter((other) => other !== id);
      groups.splice(index, 0, [id]); // leave the tie, just above it
    } else if (index > 0) {
      [groups[index - 1], groups[index]] = [groups[index], groups[index - 1]];
    }
  }
  function moveDown(id) {
    const index = groupIndexOf(id);
    if (index < 0) return;
    if (groups[index].length > 1) {
      groups[index] = groups[index].filter((other) => other !== id);
      groups.splice(index + 1, 0, [id]); // leave the tie, just below it
    } else if (index < groups.length - 1) {
      [groups[index + 1], groups[index]] = [groups[index], groups[index + 1]];
    }
  }
  function tieWithAbove(id) {
    const index = groupIndexOf(id);
    if (index <= 0) {
      say("Nothing above to tie with: move the answer down first.", true);
      return;
    }
    const above = groups[index - 1];
    removeFromGroups(id);
    above.push(id);
  }
  function unranked() {
    const ranked = new Set(groups.flat());
    return config.responses.map((r) => r.id).filter((id) => !ranked.has(id));
  }

  // ---- view ----
  function chip(id) {
    const node = document.createElement("span");
    node.className = "chip" + (id === selected ? " selected" : "");
    node.draggable = true;
    node.tabIndex = 0;
    node.dataset.responseId = String(id);
    node.textContent = "Answer " + labels.get(id);
    node.addEventListener("click", () => {
      if (groupIndexOf(id) < 0) insertAsGroup(id, groups.length); // a tap places an unranked answer next
      select(id);
    });
    return node;
  }
  function gap(position) {
    const node = document.createElement("li");
    node.className = "rank-gap";
    node.dataset.drop = "gap";
    node.dataset.position = String(position);
    node.textContent = position === groups.length ? (groups.length ? "Drop here: next rank" : "Drop here: best") : "";
    return node;
  }
  function render() {
    pool.replaceChildren(...unranked().map(chip));
    if (!pool.children.length) {
      const done = document.createElement("span");
      done.className = "muted small";
      done.textContent = "Every answer is ranked.";
      pool.append(done);
    }
    const nodes = [];
    groups.forEach((group, index) => {
      nodes.push(gap(index));
      const row = document.createElement("li");
      row.className = "rank-group" + (group.length > 1 ? " tie" : "");
      row.dataset.drop = "group";
      row.dataset.index = String(index);
      const number = document.createElement("span");
      number.className = "rank-number";
      number.textContent = String(index + 1);
      row.append(number, ...group.map(chip));
      if (group.length > 1) {
        const tie = document.createElement("span");
        tie.className = "tie-label muted small";
        tie.textContent = "tie";
        row.append(tie);
      }
      nodes.push(row);
    });
    nodes.push(gap(groups.length));
    list.replaceChildren(...nodes);
    document.querySelectorAll("article.answer").forEach((card) => {
      const id = Number(card.dataset.responseId);
      const index = groupIndexOf(id);
      const badge = card.querySelector("[data-rank-badge]");
      badge.textContent = index < 0 ? "unranked" : "Rank " + (index + 1) + (groups[index].length > 1 ? " (tie)" : "");
      card.classList.toggle("selected", id === selected);
      card.classList.toggle("ranked", index >= 0);
      const flagged = card.querySelectorAll("[data-flag-for]:checked").length;
      card.querySelector("[data-flag-count]").textContent = flagged ? "(" + flagged + ")" : "";
    });
    document.querySelectorAll("[data-place]").forEach((button) => {
      const ranked = groupIndexOf(Number(button.dataset.place)) >= 0;
      button.textContent = ranked ? "Unrank" : "Rank next (#" + (groups.length + 1) + ")";
    });
    const index = selected === null ? -1 : groupIndexOf(selected);
    actionBar.hidden = index < 0;
    if (index >= 0) {
      actionBar.querySelector("[data-picked]").textContent = "Answer " + labels.get(selected) + ":";
      actionBar.querySelector('[data-action="up"]').disabled = index === 0 && groups[index].length === 1;
      actionBar.querySelector('[data-action="down"]').disabled = index === groups.length - 1 && groups[index].length === 1;
      actionBar.querySelector('[data-action="tie"]').disabled = index === 0;
    }
    const left = unranked().length;
    const progress = left ? (config.responses.length - left) + " of " + config.responses.length + " ranked" : "All ranked";
    progressLines.forEach((line) => { line.textContent = progress; });
    if (unrankedError && !left) {
      unrankedError = false;
      say("");
    }
    submitButton.disabled = submitting;
    dockSubmit.disabled = submitting;
    makeSortable();
  }
  // Drag and drop by mouse or touch: every zone (the pool, each rank, each gap between ranks) is a
  // Sortable list of chips; after a drop the ranking is read back from where the chips landed.
  function makeSortable() {
    if (!window.Sortable) return;
    sortables.forEach((sortable) => sortable.destroy());
    const zones = [pool, ...list.querySelectorAll("li.rank-group, li.rank-gap")];
    sortables = zones.map((zone) => window.Sortable.create(zone, {
      group: "ranking",
      draggable: ".chip",
      delayOnTouchOnly: true,
      delay: 120, // a touch that moves at once scrolls the page; one that rests first drags
      emptyInsertThreshold: 12,
      ghostClass: "chip-ghost",
      onStart: (event) => { selected = Number(event.item.dataset.responseId); },
      onEnd: () => window.setTimeout(() => { readBack(); render(); }),
    }));
  }
  function readBack() {
    const order = [];
    list.querySelectorAll("li.rank-group, li.rank-gap").forEach((zone) => {
      const ids = [...zone.querySelectorAll(".chip[data-response-id]")].map((chip) => Number(chip.dataset.responseId));
      if (zone.classList.contains("rank-group")) {
        if (ids.length) order.push(ids);
      } else {
        ids.forEach((id) => order.push([id])); // dropped between ranks: a rank of its own
      }
    });
    groups = order;
  }
  function select(id) {
    selected = id;
    render();
  }
  function say(message, isError) {
    statusLine.textContent = message;
    statusLine.classList.toggle("error", Boolean(isError));
  }

  // ---- keyboard ----
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    const typing = target instanceof HTMLElement && target.matches("input, textarea, select, [contenteditable]");
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      submit();
      return;
    }
    if (typing || event.altKey || event.ctrlKey || event.metaKey) return;
    if (/^[1-9]$/.test(event.key) && byLabel.has(Number(event.key))) {
      const id = byLabel.get(Number(event.key));
      if (groupIndexOf(id) < 0) insertAsGroup(id, groups.length);
      select(id);
      event.preventDefault();
      return;
    }
    if (selected === null) return;
    const actions = {
      ArrowUp: () => moveUp(selected),
      ArrowDown: () => moveDown(selected),
      t: () => tieWithAbove(selected),
      T: () => tieWithAbove(selected),
      "0": () => unrank(selected),
      Backspace: () => unrank(selected),
      Delete: () => unrank(selected),
      Escape: () => { selected = null; },
    };
    if (actions[event.key]) {
      event.preventDefault();
      actions[event.key]();
      render();
    }
  });

  // ---- taps: "Rank next" on an answer, and the buttons under the board for the picked answer ----
  document.addEventListener("click", (event) => {
    const place = event.target instanceof HTMLElement ? event.target.closest("[data-place]") : null;
    if (place) {
      const id = Number(place.dataset.place);
      if (groupIndexOf(id) < 0) {
        insertAsGroup(id, groups.length);
        selected = id;
      } else {
        unrank(id);
        if (selected === id) selected = null;
      }
      render();
      return;
    }
    const action = event.target instanceof HTMLElement ? event.target.closest("[data-action]") : null;
    if (!action || selected === null) return;
    ({ up: moveUp, down: moveDown, tie: tieWithAbove, unrank: unrank })[action.dataset.action](selected);
    if (groupIndexOf(selected) < 0) selected = null;
    render();
  });
  document.addEventListener("change", (event) => {
    if (event.target instanceof HTMLElement && event.target.matches("[data-flag-for]")) render();
  });

  // ---- submit and skip ----
  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }
  function collect() {
    const flags = {};
    document.querySelectorAll("[data-flag-for]:checked").forEach((box) => {
      (flags[box.dataset.flagFor] = flags[box.dataset.flagFor] || []).push(box.value);
    });
    const scores = {};
    document.querySelectorAll("[data-score-for]:checked").forEach((radio) => {
      scores[radio.dataset.scoreFor] = Number(radio.value);
    });
    return { order: groups, flags, scores, all_bad: allBad.checked, time_spent_ms: timeSpent() };
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
  async function submit() {
    if (submitting) return;
    const missing = unranked();
    if (missing.length) {
      say("Rank every answer first: " + missing.map((id) => "Answer " + labels.get(id)).join(", ") + " still unranked.", true);
      unrankedError = true;
      return;
    }
    submitting = true;
    unrankedError = false;
    render();
    say("Saving…");
    try {
      const response = await post(config.submitUrl, collect(), { "Idempotency-Key": idempotencyKey });
      if (response.status === 201) {
        say("Saved. Loading the next task…");
        window.location.assign(config.nextUrl);
        return;
      }
      say(await detail(response), true);
      if (response.status === 409 || response.status === 404) offerNext();
    } catch (error) {
      say("Could not reach the server; your ranking is kept here. Press Submit again.", true);
    }
    submitting = false;
    render();
  }
  function offerNext() {
    // the task can't take this ranking any more (taken by others, closed): offer the next one
    const link = document.createElement("a");
    link.href = config.nextUrl;
    link.className = "button";
    link.id = "next-task";
    link.textContent = "Take the next task";
    statusLine.append(" ", link);
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
  dockSubmit.addEventListener("click", () => {
    submit();
    if (unrankedError) statusLine.scrollIntoView({ block: "center" }); // the message is by the board
  });
  skipButton.addEventListener("click", skip);

  render();
})();
