/* Demonstration editor: turns, role chips, autosave with version check, Markdown preview, Ctrl+Enter.
 *
 * The server is the source of truth: every change is saved (debounced) with the version it was based
 * on; a stale save answers 409 and the editor stops saving and asks for a reload, so two tabs never
 * silently overwrite each other. User text is only ever put in the page as text; the preview shows
 * HTML that the server sanitised.
 */
(function () {
  "use strict";

  const data = JSON.parse(document.getElementById("dialogue-data").textContent);
  const MAX_CHARS = data.limits.turn_max_chars;
  const MAX_TURNS = data.limits.turns_max;
  const SAVE_DELAY_MS = 800;
  const PREVIEW_DELAY_MS = 400;
  const ROLE_LABELS = { system: "System", user: "User", assistant: "Assistant" };
  const EDITABLE = ["draft", "rejected", "revised"];
  const STATUS_LABELS = { draft: "Draft", submitted: "Submitted", accepted: "Accepted", rejected: "Rejected", revised: "Being revised" };

  const el = {
    turns: document.getElementById("turns"),
    saveStatus: document.getElementById("save-status"),
    status: document.getElementById("dialogue-status"),
    addUser: document.getElementById("add-user"),
    addAssistant: document.getElementById("add-assistant"),
    addSystem: document.getElementById("add-system"),
    preview: document.getElementById("toggle-preview"),
    count: document.getElementById("turn-count"),
    hint: document.getElementById("structure-hint"),
    submit: document.getElementById("submit-dialogue"),
    submitError: document.getElementById("submit-error"),
    leaseExpiry: document.getElementById("lease-expiry"),
  };

  let nextKey = 0;
  const state = {
    turns: data.turns.map((t) => ({ key: nextKey++, role: t.role, content: t.content })),
    version: data.version,
    status: data.status,
    savedSnapshot: null, // JSON of the turns the server holds
    saving: null, // the promise of the save in flight
    timer: null,
    conflict: false,
    submitting: false,
  };
  state.savedSnapshot = snapshot();
  const promptText = data.prompt; // a queue prompt is the first user turn and stays as it is

  function snapshot() {
    return JSON.stringify(state.turns.map((t) => ({ role: t.role, content: t.content })));
  }
  function isDirty() {
    return snapshot() !== state.savedSnapshot;
  }
  function isPromptTurn(index) {
    if (promptText === null) return false;
    const first = state.turns[0] && state.turns[0].role === "system" ? 1 : 0;
    return index === first && state.turns[index].role === "user";
  }

  // --- status line -------------------------------------------------------------------------------

  function setSaveStatus(text, kind) {
    el.saveStatus.textContent = text;
    el.saveStatus.className = "dlg-save " + (kind || "muted");
  }

  function showConflict(message) {
    state.conflict = true;
    clearTimeout(state.timer);
    el.saveStatus.textContent = "";
    el.saveStatus.className = "dlg-save error";
    el.saveStatus.append("Conflict: " + (message || "this dialogue changed in another tab or window.") + " ");
    const reload = document.createElement("button");
    reload.type = "button";
    reload.id = "reload-dialogue";
    reload.textContent = "Reload";
    reload.addEventListener("click", () => window.location.reload());
    el.saveStatus.append(reload);
    el.submit.disabled = true;
  }

  function setDialogueStatus(status) {
    state.status = status;
    el.status.textContent = STATUS_LABELS[status] || status;
    el.status.className = "badge dlg-status-" + status;
  }

  function showLease(expiresAt) {
    if (!el.leaseExpiry || !expiresAt) return;
    const when = new Date(expiresAt);
    el.leaseExpiry.textContent = when > new Date()
      ? "Reserved for you until " + when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) + " (renewed as you write)."
      : "Your reservation expired; you can still submit.";
  }

  // --- server calls ------------------------------------------------------------------------------

  function headers() {
    return { "Content-Type": "application/json", "X-CSRFToken": data.csrf_token, Accept: "application/json" };
  }

  async function errorDetail(response) {
    try {
      const body = await response.json();
      return body.detail || response.statusText;
    } catch (e) {
      return response.statusText || "HTTP " + response.status;
    }
  }

  function scheduleSave() {
    if (state.conflict) return;
    setSaveStatus("Unsaved changes…", "muted");
    clearTimeout(state.timer);
    state.timer = setTimeout(() => save(false), SAVE_DELAY_MS);
  }

  // Save now (waiting for the save in flight first). Resolves true when the server holds our text.
  async function save(keepalive) {
    clearTimeout(state.timer);
    while (state.saving) await state.saving;
    if (state.conflict) return false;
    if (!isDirty()) return true;
    const sent = snapshot();
    state.saving = (async () => {
      setSaveStatus("Saving…", "muted");
      let response;
      try {
        response = await fetch(data.urls.dialogue, {
          method: "PATCH",
          headers: headers(),
          credentials: "same-origin",
          keepalive: Boolean(keepalive) && sent.length < 60000,
          body: JSON.stringify({ version: state.version, turns: JSON.parse(sent) }),
        });
      } catch (e) {
        setSaveStatus("Offline: not saved yet, retrying…", "error");
        state.timer = setTimeout(() => save(false), 5000);
        return false;
      }
      if (response.ok) {
        const body = await response.json();
        state.version = body.version;
        state.savedSnapshot = sent;
        setDialogueStatus(body.status);
        showLease(body.lease_expires_at);
        if (isDirty()) scheduleSave();
        else setSaveStatus("Saved", "ok");
        return true;
      }
      if (response.status === 409) {
        const detail = await errorDetail(response);
        if (!(await leaveIfNotEditable())) showConflict(detail);
        return false;
      }
      setSaveStatus("Not saved: " + (await errorDetail(response)), "error");
      return false;
    })();
    try {
      return await state.saving;
    } finally {
      state.saving = null;
    }
  }

  async function submit() {
    if (state.submitting || state.conflict) return;
    el.submitError.textContent = "";
    const problem = structureProblem();
    if (problem) {
      el.submitError.textContent = problem;
      return;
    }
    state.submitting = true;
    el.submit.disabled = true;
    try {
      if (!(await save(false))) {
        if (!state.conflict) el.submitError.textContent = "Save the dialogue before submitting it.";
        return;
      }
      const response = await fetch(data.urls.submit, {
        method: "POST",
        headers: headers(),
        credentials: "same-origin",
        body: JSON.stringify({ version: state.version }),
      });
      if (response.ok) {
        state.savedSnapshot = snapshot();
        window.location.assign(data.urls.after_submit);
        return;
      }
      if (response.status === 409) showConflict(await errorDetail(response));
      else el.submitError.textContent = await errorDetail(response);
    } catch (e) {
      el.submitError.textContent = "Could not reach the server; try again.";
    } finally {
      state.submitting = false;
      if (!state.conflict) el.submit.disabled = false;
    }
  }

  // --- structure -------------------------------------------------------------------------------

  function structureProblem() {
    const turns = state.turns;
    const conversation = turns.length && turns[0].role === "system" ? turns.slice(1) : turns;
    if (!conversation.length) return "Write at least one user turn and the assistant's answer.";
    for (let i = 0; i < turns.length; i++) {
      if (!turns[i].content.trim()) return "Turn " + (i + 1) + " (" + turns[i].role + ") is empty.";
      if (turns[i].content.length > MAX_CHARS) return "Turn " + (i + 1) + " is longer than " + MAX_CHARS + " characters.";
    }
    for (let i = 0; i < conversation.length; i++) {
      const expected = i % 2 === 0 ? "user" : "assistant";
      if (conversation[i].role !== expected) {
        return "Turn " + (i + 1 + turns.length - conversation.length) + " should be a " + expected +
          " turn: user and assistant turns alternate, starting with the user.";
      }
    }
    if (conversation[conversation.length - 1].role !== "assistant") return "The last turn must be the assistant's.";
    return "";
  }

  function updateSummary() {
    el.count.textContent = state.turns.length + " / " + MAX_TURNS + " turns";
    const full = state.turns.length >= MAX_TURNS;
    el.addUser.disabled = full;
    el.addAssistant.disabled = full;
    el.addSystem.disabled = full || (state.turns[0] && state.turns[0].role === "system");
    const problem = structureProblem();
    el.hint.textContent = problem ? "Before submitting: " + problem : "Ready to submit.";
    el.hint.className = problem ? "muted" : "ok";
  }

  // --- rendering -------------------------------------------------------------------------------

  function button(text, label, onClick, disabled) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "dlg-icon";
    b.textContent = text;
    b.setAttribute("aria-label", label);
    b.title = label;
    b.disabled = Boolean(disabled);
    b.addEventListener("click", onClick);
    return b;
  }

  function counterText(length) {
    return length.toLocaleString() + " / " + MAX_CHARS.toLocaleString();
  }

  function render(focusKey) {
    el.turns.textContent = "";
    state.turns.forEach((turn, index) => el.turns.append(renderTurn(turn, index)));
    updateSummary();
    if (focusKey !== undefined) {
      const area = el.turns.querySelector('[data-key="' + focusKey + '"] textarea');
      if (area) area.focus();
    }
  }

  function renderTurn(turn, index) {
    const locked = isPromptTurn(index);
    const li = document.createElement("li");
    li.className = "dlg-turn dlg-role-" + turn.role;
    li.dataset.key = String(turn.key);
    li.dataset.role = turn.role;

    const head = document.createElement("div");
    head.className = "dlg-turn-head";
    const chips = document.createElement("span");
    chips.className = "dlg-chips";
    chips.setAttribute("role", "group");
    chips.setAttribute("aria-label", "Role of turn " + (index + 1));
    for (const role of ["system", "user", "assistant"]) {
      const chip = document.createElement("button");
      chip.type = "button";
      chip.className = "dlg-chip dlg-chip-" + role + (turn.role === role ? " selected" : "");
      chip.textContent = ROLE_LABELS[role];
      chip.setAttribute("aria-pressed", String(turn.role === role));
      chip.disabled = locked || (role === "system" && index !== 0);
      chip.addEventListener("click", () => {
        if (turn.role === role) return;
        turn.role = role;
        render(turn.key);
        scheduleSave();
      });
      chips.append(chip);
    }
    head.append(chips);

    const counter = document.createElement("span");
    counter.className = "dlg-counter";
    counter.textContent = counterText(turn.content.length);
    head.append(counter);

    const tools = document.createElement("span");
    tools.className = "dlg-tools";
    const isSystem = turn.role === "system";
    const conversationStart = state.turns[0].role === "system" ? 1 : 0;
    const firstMovable = conversationStart + (promptText !== null ? 1 : 0);
    tools.append(
      button("↑", "Move turn " + (index + 1) + " up", () => move(index, -1), locked || isSystem || index <= firstMovable),
      button("↓", "Move turn " + (index + 1) + " down", () => move(index, 1),
        locked || isSystem || index >= state.turns.length - 1),
      button("✕", "Remove turn " + (index + 1), () => remove(index), locked),
    );
    head.append(tools);
    li.append(head);

    const area = document.createElement("textarea");
    area.rows = Math.min(14, Math.max(3, turn.content.split("\n").length + 1));
    area.maxLength = MAX_CHARS;
    area.value = turn.content;
    area.readOnly = locked;
    area.placeholder = turn.role === "assistant" ? "The ideal assistant answer (Markdown)…" :
      turn.role === "system" ? "Instructions for the assistant…" : "What the user says…";
    area.setAttribute("aria-label", "Turn " + (index + 1) + " (" + turn.role + ")");
    const preview = document.createElement("div");
    preview.className = "markdown dlg-preview";
    preview.hidden = !el.preview.checked;
    area.addEventListener("input", () => {
      turn.content = area.value;
      counter.textContent = counterText(turn.content.length);
      counter.classList.toggle("near", turn.content.length > MAX_CHARS * 0.9);
      updateSummary();
      schedulePreview(turn, preview);
      scheduleSave();
    });
    // maxlength cuts a paste off without a word: say how much was left out
    const cut = document.createElement("p");
    cut.className = "dlg-paste-cut";
    cut.setAttribute("role", "alert");
    cut.hidden = true;
    area.addEventListener("paste", (event) => {
      const pasted = event.clipboardData ? event.clipboardData.getData("text").length : 0;
      const room = MAX_CHARS - (area.value.length - (area.selectionEnd - area.selectionStart));
      cut.hidden = pasted <= room;
      cut.textContent = "The pasted text was cut: a turn holds at most " + MAX_CHARS.toLocaleString() +
        " characters, so its last " + (pasted - room).toLocaleString() + " characters were left out.";
    });
    li.append(area, cut, preview);
    if (el.preview.checked) schedulePreview(turn, preview, 0);
    return li;
  }

  const previewTimers = new Map();
  function schedulePreview(turn, target, delay) {
    if (!el.preview.checked) return;
    clearTimeout(previewTimers.get(turn.key));
    previewTimers.set(turn.key, setTimeout(async () => {
      try {
        const response = await fetch(data.urls.preview, {
          method: "POST", headers: headers(), credentials: "same-origin", body: JSON.stringify({ text: turn.content }),
        });
        if (response.ok) target.innerHTML = (await response.json()).html; // sanitised by the server
      } catch (e) {
        target.textContent = "Preview unavailable.";
      }
    }, delay === undefined ? PREVIEW_DELAY_MS : delay));
  }

  // --- edits -----------------------------------------------------------------------------------

  function add(role) {
    if (state.turns.length >= MAX_TURNS) return;
    const turn = { key: nextKey++, role: role, content: "" };
    if (role === "system") state.turns.unshift(turn);
    else state.turns.push(turn);
    render(turn.key);
    scheduleSave();
  }

  function remove(index) {
    const turn = state.turns[index];
    if (turn.content.trim() && !window.confirm("Remove this " + turn.role + " turn?")) return;
    state.turns.splice(index, 1);
    render();
    scheduleSave();
  }

  function move(index, delta) {
    const target = index + delta;
    if (target < 0 || target >= state.turns.length) return;
    const [turn] = state.turns.splice(index, 1);
    state.turns.splice(target, 0, turn);
    render(turn.key);
    scheduleSave();
  }

  // --- wiring ----------------------------------------------------------------------------------

  el.addUser.addEventListener("click", () => add("user"));
  el.addAssistant.addEventListener("click", () => add("assistant"));
  el.addSystem.addEventListener("click", () => add("system"));
  el.preview.addEventListener("change", () => render());
  el.submit.addEventListener("click", submit);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      submit();
    }
  });
  // nothing lost on a closed tab: flush when the page is hidden, and warn if a save is still pending
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden" && isDirty()) save(true);
  });
  window.addEventListener("pagehide", () => { if (isDirty()) save(true); });
  window.addEventListener("beforeunload", (event) => {
    if (isDirty() && !state.conflict && !state.submitting) {
      save(true);
      event.preventDefault();
      event.returnValue = "";
    }
  });

  // Back after submitting can show this page from the browser's memory as it was (a draft): ask the
  // server, and leave for the read-only page when the dialogue can no longer be edited.
  async function leaveIfNotEditable() {
    try {
      const response = await fetch(data.urls.dialogue, { headers: headers(), credentials: "same-origin", cache: "no-store" });
      if (!response.ok) return false;
      const body = await response.json();
      if (EDITABLE.includes(body.status)) return false;
      state.conflict = true; // no more saves from this copy
      window.location.replace(data.urls.detail);
      return true;
    } catch (e) {
      return false;
    }
  }
  window.addEventListener("pageshow", (event) => { if (event.persisted) leaveIfNotEditable(); });

  showLease(data.lease_expires_at);
  render();
  setSaveStatus("Saved", "ok");
})();
