// Training page: "Reward model vs fresh human rankings". One line per reward model version (the share
// of fresh human preference pairs it orders as the labeler did, per day) over its 95 % interval as a
// band, and the labelers' agreement with each other as a dashed line: the ceiling. The data comes from
// the page (json_script, the same shape as GET /api/projects/{id}/reward-agreement/); Chart.js draws it
// on a canvas, so nothing the server sends is ever parsed as HTML.
(function () {
  "use strict";

  const dataNode = document.getElementById("reward-agreement-data");
  const canvas = document.getElementById("reward-agreement-chart");
  if (!dataNode || !canvas || !window.Chart) return;
  const report = JSON.parse(dataNode.textContent);
  const COLORS = ["#2f5bea", "#c0392b", "#1e8e3e", "#9333ea", "#d97706", "#0891b2", "#db2777", "#4b5563"];
  const CEILING = "#374151";

  const percent = (value) => (typeof value === "number" && isFinite(value) ? `${(value * 100).toFixed(1)}\u00a0%` : "–");
  const translucent = (hex, alpha) => {
    const n = parseInt(hex.slice(1), 16);
    return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
  };

  // every bucket any series has, oldest first: the x axis
  const starts = new Set(report.ceiling.points.map((point) => point.start));
  report.models.forEach((entry) => entry.points.forEach((point) => starts.add(point.start)));
  const labels = [...starts].sort();
  const byStart = (points) => new Map(points.map((point) => [point.start, point]));
  const values = (points, key) => {
    const found = byStart(points);
    return labels.map((start) => (found.has(start) ? found.get(start)[key] : null));
  };

  const datasets = [];
  report.models.forEach((entry, index) => {
    const color = COLORS[index % COLORS.length];
    const name = entry.model.name;
    const swatch = document.querySelector(`.tr-ra-swatch[data-series="${index}"]`);
    if (swatch) swatch.style.background = color;
    // the band: the upper ends, then the lower ends filled up to them
    datasets.push({ label: `${name} upper`, band: true, data: values(entry.points, "high"), borderWidth: 0,
                    pointRadius: 0, pointHitRadius: 0, fill: false, spanGaps: true });
    datasets.push({ label: `${name} lower`, band: true, data: values(entry.points, "low"), borderWidth: 0,
                    pointRadius: 0, pointHitRadius: 0, fill: "-1", backgroundColor: translucent(color, 0.16),
                    spanGaps: true });
    datasets.push({ label: name, points: byStart(entry.points), data: values(entry.points, "agreement"),
                    borderColor: color, backgroundColor: color, borderWidth: 2, pointRadius: 3, fill: false,
                    spanGaps: true, tension: 0 });
  });
  datasets.push({ label: "Labelers with each other", points: byStart(report.ceiling.points),
                  data: values(report.ceiling.points, "agreement"), borderColor: CEILING, backgroundColor: CEILING,
                  borderDash: [6, 4], borderWidth: 2, pointRadius: 2, fill: false, spanGaps: true, tension: 0 });

  const narrow = window.matchMedia("(max-width: 600px)").matches;
  new window.Chart(canvas, {
    type: "line",
    data: { labels, datasets },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      scales: {
        x: { grid: { display: false }, ticks: { maxTicksLimit: narrow ? 4 : 10, maxRotation: 0 } },
        y: { min: 0, max: 1, ticks: { stepSize: 0.25, callback: (value) => `${Math.round(value * 100)} %` } },
      },
      plugins: {
        legend: {
          position: "bottom",
          labels: { boxWidth: 18, boxHeight: 2, filter: (item, data) => !data.datasets[item.datasetIndex].band },
        },
        tooltip: {
          filter: (item) => !item.dataset.band && item.raw !== null,
          callbacks: {
            label: (item) => {
              const point = item.dataset.points.get(labels[item.dataIndex]);
              if (!point) return "";
              return `${item.dataset.label}: ${percent(point.agreement)} (${percent(point.low)}–${percent(point.high)}),`
                + ` ${point.pairs} pairs of ${point.tasks} tasks`;
            },
          },
        },
      },
    },
  });
  canvas.dataset.series = String(report.models.length);
})();
