// The import job page: poll the job's API while the worker reads the file, move the progress bar,
// and reload the page (which then shows the report or the refused lines) once the job is finished.
(function () {
  "use strict";
  const card = document.getElementById("import-job");
  if (!card || card.dataset.state === "done" || card.dataset.state === "failed") return;
  const bar = document.getElementById("import-job-progress");
  const lines = document.getElementById("import-job-lines");
  const POLL_MS = 1000;

  async function poll() {
    try {
      const response = await fetch(card.dataset.pollUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.ok) {
        const job = await response.json();
        if (job.state === "done" || job.state === "failed") {
          window.location.reload();
          return;
        }
        if (bar) {
          bar.max = Math.max(job.lines_total, 1);
          bar.value = job.lines_done;
        }
        if (lines) lines.textContent = String(job.lines_done);
      }
    } catch (error) {
      // a network blip: try again at the next tick
    }
    window.setTimeout(poll, POLL_MS);
  }
  window.setTimeout(poll, POLL_MS);
})();
