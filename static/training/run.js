// Run page: live charts of the figures the engine logs (Chart.js, vendored), the header (state,
// attempt, progress, ETA, error, output model), the engine log, cancel and resume. While the run is
// queued or running it polls the run, its new metric points (?after=last step) and its log every 2 s;
// it stops once the run has finished. Everything the server sends is shown with textContent.
(function () {
  "use strict";

  const configNode = document.getElementById("run-config-data");
  if (!configNode) return;
  const config = JSON.parse(configNode.textContent);
  const urls = config.urls;
  const FINISHED = ["succeeded", "failed", "cancelled"];
  const STATE_LABELS = { queued: "Queued", running: "Running", succeeded: "Succeeded", failed: "Failed", cancelled: "Cancelled" };
  // bookkeeping fields of a metrics line, not figures worth a chart
  const NOT_FIGURES = new Set(["step", "time", "epoch", "total_steps", "prompts_total", "total_flos", "episodes"]);
  // charts come in this order (what a person looks at first), then the rest alphabetically
  const PREFERRED = [
    "loss", "train_loss", "eval_loss", "accuracy", "eval_accuracy", "mean_token_accuracy",
    "rewards/accuracies", "eval_rewards/accuracies", "rewards/margins", "reward_gap",
    "score", "rlhf_reward", "kl", "kl_k3", "entropy", "learning_rate", "lr", "grad_norm",
    "tokens_per_second", "train_tokens_per_second", "rollout_tokens_per_s",
  ];
  const COLORS = ["#2f5bea", "#1e8e3e", "#c0392b", "#9333ea", "#d97706", "#0891b2", "#db2777", "#4b5563"];

  const chartsBox = document.getElementById("charts");
  const chartsEmpty = document.getElementById("charts-empty");
  const chartsNote = document.getElementById("charts-note");
  const statusLine = document.getElementById("tr-status");
  const stateBox = document.getElementById("run-state");
  const progress = document.getElementById("run-progress");
  const progressBar = progress.querySelector(".tr-progress-bar");
  const errorBox = document.getElementById("run-error");
  const outputBox = document.getElementById("run-output");
  const logBox = document.getElementById("run-log");
  const cancelButton = document.getElementById("run-cancel");
  const resumeButton = document.getElementById("run-resume");
  const field = (name) => document.querySelector(`[data-field="${name}"]`);

  let state = config.state;
  let lastStep = config.lastStep;
  let logSize = null;
  let timer = null;
  let failures = 0;
  const series = new Map(); // figure -> { data: [{x, y}], chart, panel, last }

  // ---- formatting ----
  function formatNumber(value) {
    if (typeof value !== "number" || !isFinite(value)) return "–";
    const size = Math.abs(value);
    if (Number.isInteger(value) || size >= 1000) return Math.round(value).toLocaleString("en");
    if (size >= 1 || value === 0) return String(Number(value.toFixed(3)));
    if (size < 0.001) return value.toExponential(2);
    return String(Number(value.toPrecision(4)));
  }
  function formatDuration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
    seconds = Math.max(0, Math.floor(seconds));
    if (seconds < 60) return `${seconds} s`;
    let minutes = Math.floor(seconds / 60);
    if (minutes < 60) return `${minutes} min ${String(seconds % 60).padStart(2, "0")} s`;
    let hours = Math.floor(minutes / 60);
    minutes %= 60;
    if (hours < 48) return `${hours} h ${String(minutes).padStart(2, "0")} min`;
    return `${Math.floor(hours / 24)} d ${hours % 24} h`;
  }
  function say(text, isError) {
    statusLine.textContent = text;
    statusLine.classList.toggle("error", Boolean(isError));
  }

  // ---- charts: one small chart per figure ----
  function rank(name) {
    const index = PREFERRED.indexOf(name);
    return index >= 0 ? [0, index, name] : [1, 0, name];
  }
  function before(a, b) {
    const [ra, rb] = [rank(a), rank(b)];
    return ra[0] !== rb[0] ? ra[0] < rb[0] : ra[1] !== rb[1] ? ra[1] < rb[1] : ra[2] < rb[2];
  }

  function seriesCreate(name) {
    const panel = document.createElement("figure");
    panel.className = "tr-chart";
    panel.dataset.figure = name;
    const caption = document.createElement("figcaption");
    const title = document.createElement("span");
    title.className = "tr-chart-name";
    title.textContent = name;
    const last = document.createElement("span");
    last.className = "tr-chart-last";
    caption.append(title, last);
    const box = document.createElement("div");
    box.className = "tr-chart-box";
    const canvas = document.createElement("canvas");
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", `${name} by step`);
    box.append(canvas);
    panel.append(caption, box);
    const next = [...chartsBox.children].find((other) => before(name, other.dataset.figure));
    chartsBox.insertBefore(panel, next || null);

    const color = COLORS[series.size % COLORS.length];
    const data = [];
    const chart = new window.Chart(canvas, {
      type: "line",
      data: { datasets: [{ label: name, data, borderColor: color, backgroundColor: color, borderWidth: 1.6, tension: 0 }] },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        parsing: false,
        normalized: true,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        // dots while there are few points, a plain line once there are many
        elements: { point: { radius: (context) => (context.dataset.data.length > 40 ? 0 : 2), hoverRadius: 3 } },
        scales: {
          x: { type: "linear", ticks: { maxTicksLimit: 6, precision: 0 }, grid: { display: false } },
          y: { ticks: { maxTicksLimit: 5, callback: (value) => formatNumber(value) } },
        },
        plugins: {
          legend: { display: false },
          tooltip: {
            displayColors: false,
            callbacks: { title: (items) => `step ${items[0].parsed.x}`, label: (item) => `${name} ${formatNumber(item.parsed.y)}` },
          },
        },
      },
    });
    const entry = { data, chart, panel, last };
    series.set(name, entry);
    return entry;
  }

  function pointAdd(data, step, value) {
    const tail = data.length ? data[data.length - 1].x : -Infinity;
    if (step > tail) {
      data.push({ x: step, y: value });
      return;
    }
    const index = data.findIndex((point) => point.x >= step);
    if (data[index].x === step) data[index].y = value;  // a step logged twice: the figures merge
    else data.splice(index, 0, { x: step, y: value });
  }

  function pointsAdd(points) {
    const touched = new Set();
    for (const point of points) {
      if (typeof point.step !== "number") continue;
      if (lastStep === null || point.step > lastStep) lastStep = point.step;
      for (const [name, value] of Object.entries(point)) {
        if (NOT_FIGURES.has(name) || typeof value !== "number" || !isFinite(value)) continue;
        const entry = series.get(name) || seriesCreate(name);
        pointAdd(entry.data, point.step, value);
        touched.add(entry);
      }
    }
    for (const entry of touched) {
      entry.chart.update("none");
      entry.panel.dataset.points = String(entry.data.length);
      entry.last.textContent = formatNumber(entry.data[entry.data.length - 1].y);
    }
    chartsEmpty.hidden = series.size > 0;
  }

  // ---- the header ----
  function stateRender(run) {
    state = run.state;
    const badge = stateBox.querySelector(".badge");
    badge.className = `badge tr-state tr-state-${run.state}`;
    badge.dataset.state = run.state;
    badge.textContent = (STATE_LABELS[run.state] || run.state) + (run.cancel_requested && run.state === "running" ? " · cancelling" : "");

    const p = run.progress || {};
    const total = p.total_steps || null;
    const step = p.step || 0;
    let fraction = typeof p.fraction === "number" ? p.fraction : total ? step / total : 0;
    if (run.state === "succeeded" && !total) fraction = 1;
    progressBar.style.width = `${(Math.max(0, Math.min(1, fraction)) * 100).toFixed(1)}%`;
    progressBar.className = `tr-progress-bar tr-state-${run.state}`;
    progress.setAttribute("aria-valuenow", String(step));
    progress.setAttribute("aria-valuemax", String(total || 0));
    field("steps").textContent = total ? `step ${step} of ${total}` : step ? `step ${step}` : "no step yet";
    field("eta").textContent = FINISHED.includes(run.state) ? "–"
      : total && step >= total ? "finishing…" : formatDuration(p.eta_seconds);

    if (run.attempt !== undefined) field("attempt").textContent = String(run.attempt);
    if (run.max_attempts !== undefined) field("max_attempts").textContent = String(run.max_attempts);
    field("worker").textContent = run.worker || "–";
    if (run.started_at) {
      const started = new Date(run.started_at);
      const time = document.createElement("time");
      time.dateTime = run.started_at;
      time.textContent = started.toLocaleString("sv-SE");
      field("started").replaceChildren(time);
    }
    const duration = typeof run.duration_seconds === "number" ? run.duration_seconds
      : run.started_at ? ((run.finished_at ? Date.parse(run.finished_at) : Date.now()) - Date.parse(run.started_at)) / 1000 : null;
    field("duration").textContent = formatDuration(duration);

    errorBox.textContent = run.error || "";
    errorBox.hidden = !run.error;
    const output = run.output_model;
    if (output && output.id) {
      const link = field("output");
      link.textContent = output.name;
      link.href = `${urls.modelsPage}#model-${output.id}`;
      outputBox.hidden = false;
    }
    const active = !FINISHED.includes(run.state);
    cancelButton.hidden = !active || Boolean(run.cancel_requested);
    resumeButton.hidden = !(run.state === "cancelled" || run.state === "failed");
    chartsNote.textContent = active ? "updating every 2 s" : "";
  }

  // ---- talking to the API ----
  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }
  async function api(url, method) {
    const response = await fetch(url, {
      method: method || "GET",
      credentials: "same-origin",
      headers: method === "POST"
        ? { Accept: "application/json", "Content-Type": "application/json", "X-CSRFToken": csrfToken() }
        : { Accept: "application/json" },
      body: method === "POST" ? "{}" : undefined,
    });
    let body = null;
    try { body = await response.json(); } catch (ignored) { body = null; }
    if (!response.ok) {
      const detail = body && typeof body.detail === "string" ? body.detail : `${response.status} ${response.statusText}`;
      const error = new Error(detail);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  async function logRefresh() {
    const log = await api(urls.log);
    if (!log || log.size === logSize) return;
    logSize = log.size;
    const atBottom = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 8;
    logBox.textContent = log.text || "(nothing logged yet)";
    if (atBottom) logBox.scrollTop = logBox.scrollHeight;
  }

  async function metricsRefresh() {
    const query = lastStep === null || lastStep === undefined ? "" : `?after=${encodeURIComponent(lastStep)}`;
    const body = await api(urls.metrics + query);
    const points = (body && body.points) || [];
    pointsAdd(points);
    return points.length;
  }

  async function poll() {
    timer = null;
    try {
      stateRender(await api(urls.run));
      // read after the state: once it says finished, these hold everything the run logged
      while ((await metricsRefresh()) >= 5000) { /* a long run's backlog: page through it */ }
      await logRefresh();
      failures = 0;
      if (statusLine.dataset.lost) { say(""); delete statusLine.dataset.lost; }
    } catch (error) {
      failures += 1;
      statusLine.dataset.lost = "1";
      say(`Could not refresh (${error.message}); trying again…`, true);
    }
    if (!FINISHED.includes(state)) timer = window.setTimeout(poll, config.pollSeconds * 1000 * Math.min(1 + failures, 5));
  }

  function pollStart() {
    if (timer === null) timer = window.setTimeout(poll, config.pollSeconds * 1000);
  }

  async function act(button, url, question) {
    if (question && !window.confirm(question)) return;
    button.disabled = true;
    say("");
    try {
      const run = await api(url, "POST");
      if (run && run.state) stateRender(run);
      else stateRender(await api(urls.run));
      if (!FINISHED.includes(state)) pollStart();
    } catch (error) {
      say(error.message, true);
    } finally {
      button.disabled = false;
    }
  }

  cancelButton.addEventListener("click", () =>
    act(cancelButton, urls.cancel, "Cancel this run? A running engine saves a checkpoint first; you can resume it later."));
  resumeButton.addEventListener("click", () => act(resumeButton, urls.resume, null));

  // ---- start ----
  pointsAdd(config.points || []);
  logBox.scrollTop = logBox.scrollHeight;
  if (!FINISHED.includes(state)) pollStart();
})();
