// Metric curves (uPlot): the server's buckets (min, max and last of consecutive points) as a
// band and a line over steps, with the run's marks on the same step axis: checkpoints (green
// when live, grey once retired), evaluations (purple dots where they report the metric,
// ticks otherwise), failures (red) and the lost steps of a recovery (shaded).
import { h } from "./dom.js";

export const BUCKETS = 250; // a bucket every two pixels of a chart's plot (about 500 wide)
const SIZE = { width: 580, height: 240 };
const COLOURS = { checkpoint: "#2f855a", retired: "#a0aec0", evaluation: "#6b46c1", failure: "#c53030" };

function marksPlugin(marks, name, lost) {
  return {
    hooks: {
      draw: [(u) => {
        const { ctx } = u;
        const { left, top, width, height } = u.bbox;
        ctx.save();
        ctx.beginPath();
        ctx.rect(left, top, width, height);
        ctx.clip();
        for (const [from, to] of lost) {
          const x0 = u.valToPos(from, "x", true);
          const x1 = u.valToPos(to, "x", true);
          ctx.fillStyle = "rgba(229, 62, 62, 0.15)";
          ctx.fillRect(x0, top, Math.max(x1 - x0, 2), height);
        }
        for (const mark of marks) {
          if (mark.step === null || mark.step === undefined) continue;
          const x = u.valToPos(mark.step, "x", true);
          const value = mark.kind === "evaluation" ? mark.metrics[name] : undefined;
          if (typeof value === "number") {
            ctx.fillStyle = COLOURS.evaluation;
            ctx.beginPath();
            ctx.arc(x, u.valToPos(value, "y", true), 4 * devicePixelRatio, 0, 2 * Math.PI);
            ctx.fill();
            continue;
          }
          const colour = mark.kind === "checkpoint" && mark.artifact_status && mark.artifact_status !== "live"
            ? COLOURS.retired : COLOURS[mark.kind];
          if (!colour) continue;
          ctx.strokeStyle = colour;
          ctx.setLineDash(mark.kind === "evaluation" ? [2, 4] : mark.kind === "checkpoint" ? [6, 3] : []);
          ctx.lineWidth = devicePixelRatio;
          ctx.beginPath();
          ctx.moveTo(x, top);
          ctx.lineTo(x, top + height);
          ctx.stroke();
        }
        ctx.restore();
      }],
    },
  };
}

// One chart of the buckets of metric ``name``.
export function metricChart(name, buckets, marks, lost) {
  const xs = buckets.map((b) => b.step_to);
  const data = [xs, buckets.map((b) => b.min), buckets.map((b) => b.max),
    buckets.map((b) => (Number.isFinite(b.last) ? b.last : null))];
  const box = h("div", { class: "chart", dataset: { metric: name, buckets: String(buckets.length) } });
  const band = "rgba(49, 130, 206, 0.18)";
  const options = {
    ...SIZE, title: name,
    scales: { x: { time: false } },
    series: [
      { label: "step" },
      { label: "min", stroke: band, width: 1 },
      { label: "max", stroke: band, width: 1 },
      { label: "last", stroke: "#2b6cb0", width: 1.5 },
    ],
    bands: [{ series: [2, 1], fill: band }],
    plugins: [marksPlugin(marks, name, lost)],
  };
  new uPlot(options, data, box);
  return box;
}

// The evaluations' own metrics (those no step logs) as points over steps.
export function evaluationChart(name, marks, lost) {
  const points = marks.filter((m) => m.kind === "evaluation" && typeof m.metrics[name] === "number")
    .sort((a, b) => a.step - b.step);
  const data = [points.map((m) => m.step), points.map((m) => m.metrics[name])];
  const box = h("div", { class: "chart", dataset: { metric: name, evaluation: "1" } });
  const options = {
    ...SIZE, title: `${name} (evaluations)`,
    scales: { x: { time: false } },
    series: [{ label: "step" }, { label: name, stroke: COLOURS.evaluation, width: 1,
      points: { show: true, size: 7, fill: COLOURS.evaluation } }],
    plugins: [marksPlugin(marks.filter((m) => m.kind !== "evaluation"), name, lost)],
  };
  new uPlot(options, data, box);
  return box;
}

export function legend() {
  return h("div", { class: "legend muted" },
    h("span", {}, "line: last value per bucket, band: min-max"),
    h("span", { style: `color:${COLOURS.checkpoint}` }, "| checkpoint (grey: retired)"),
    h("span", { style: `color:${COLOURS.evaluation}` }, "• evaluation"),
    h("span", { style: `color:${COLOURS.failure}` }, "| failure"),
    h("span", { style: "color:#e53e3e" }, "▒ lost steps"));
}
