// A run: its facts, the recovery chain it belongs to, metric curves with evaluations and
// checkpoints on the same step axis, the job spec and resources, and a link to its trace in
// Jaeger (the trace id is the run id). Polled while it is running.
import { api } from "./api.js";
import { artifactLink, duration, facts, h, json, metrics, number, runLink, status, table, tags, time } from "./dom.js";
import { BUCKETS, evaluationChart, legend, metricChart } from "./curves.js";

const POLL_MS = 5000;

function lostRanges(run) {
  const lost = run.lost_steps;
  return lost && lost.count > 0 ? [[lost.from_step, lost.to_step]] : [];
}

function chainView(chain) {
  const first = Math.min(...chain.map((r) => r.start_step ?? 0));
  const last = Math.max(...chain.map((r) => r.last_step ?? r.start_step ?? 0), first + 1);
  const at = (step) => `${(100 * (step - first)) / (last - first)}%`;
  const span = (from, to) => `left:${at(from)};width:calc(${at(to)} - ${at(from)} + 2px)`;
  const rows = chain.map((r) => {
    const track = h("div", { class: "track" });
    if (r.last_step !== null && r.last_step !== undefined) {
      track.append(h("div", { class: "bar", style: span(r.start_step, r.last_step), title: `steps ${r.start_step}-${r.last_step}` }));
    }
    const lost = r.lost_steps;
    if (lost && lost.count > 0) {
      track.append(h("div", { class: "lost", style: span(lost.from_step, lost.to_step),
        title: `${lost.count} lost step(s): ${lost.from_step}-${lost.to_step}` }));
      track.append(h("a", { class: "ckpt", href: `#/artifacts/${lost.checkpoint_id}`, style: `left:${at(lost.after_checkpoint_step)}`,
        title: `resumed from the checkpoint at step ${lost.after_checkpoint_step}` }));
    }
    return h("div", { class: "row", dataset: { run: r.id } },
      h("span", {}, runLink(r.id, r.name), " ", status(r.job_status),
        lost && lost.count > 0 ? h("div", { class: "reason" },
          `lost steps ${lost.from_step}-${lost.to_step} (${lost.count}); resumed from `,
          artifactLink(lost.checkpoint_id, `checkpoint @${lost.after_checkpoint_step}`), " as ",
          runLink(lost.resumed_as)) : null),
      track);
  });
  return h("div", { class: "chain", id: "chain" }, rows,
    h("div", { class: "muted" }, `steps ${first}-${last}; shaded: steps lost to a failure, redone by the resumed run`));
}

function header(run, settings) {
  const traceId = run.id.replaceAll("-", "");
  const jaeger = settings.jaeger_url
    ? h("a", { id: "jaeger", href: `${settings.jaeger_url.replace(/\/+$/, "")}/trace/${traceId}`, target: "_blank", rel: "noopener" }, "trace in Jaeger")
    : h("span", { class: "muted" }, "no Jaeger URL set (lineage serve --jaeger-url)");
  return [
    h("h1", {}, `Run ${run.name} `, status(run.job_status, run.status_reason)),
    facts([
      ["id", h("code", {}, run.id)],
      ["trace", [h("code", {}, traceId), " ", jaeger]],
      ["started", time(run.started_at)],
      ["finished", time(run.finished_at)],
      ["duration", duration(run.started_at, run.finished_at)],
      ["steps", `${number(run.steps)} logged, ${run.start_step}-${run.last_step ?? ""}`],
      ["last metrics", h("span", { class: "mono" }, metrics(run.last_metrics))],
      ["best", run.best ? [`${run.best.metric}=${number(run.best.value)} at step ${run.best.eval_step} `, artifactLink(run.best_checkpoint_id)] : ""],
      ["resumed from", run.resumed_checkpoint_id ? artifactLink(run.resumed_checkpoint_id) : ""],
      ["parent run", run.parent_trace_id ? runLink(run.parent_trace_id) : ""],
      ["superseded by", run.superseded_by ? runLink(run.superseded_by) : ""],
      ["failures", run.failures ? `${run.failures}: ${run.last_failure || ""}` : ""],
      ["tags", tags(run.tags)],
      ["inputs", (run.inputs || []).map((id) => [artifactLink(id), " "])],
    ]),
  ];
}

const MARK_COLUMNS = [
  { title: "Kind", cell: (m) => m.kind },
  { title: "Step", class: "num", cell: (m) => number(m.step) },
  { title: "What", cell: (m) => (m.artifact ? [artifactLink(m.artifact, m.name), " ", status(m.artifact_status || "")] : m.name) },
  { title: "Metrics / error", cell: (m) => h("span", { class: "mono" }, m.error || metrics(m.metrics)) },
  { title: "At", cell: (m) => time(m.at) },
];

function resources(job, sample) {
  return h("div", { id: "resources" }, facts([
    ["requested (job spec)", job.resources ? h("span", { class: "mono" }, metrics(job.resources)) : "none"],
    ["latest sample", sample ? [h("span", { class: "mono" }, metrics(sample.values)),
      ` at step ${number(sample.step)}, ${time(sample.at)}`] : "none logged"],
  ]));
}

function charts(run, overview, series) {
  const lost = lostRanges(run);
  const names = Object.keys(series).sort();
  const boxes = names.map((name) => metricChart(name, series[name], overview.marks, lost));
  const evaluated = new Set(overview.marks.filter((m) => m.kind === "evaluation")
    .flatMap((m) => Object.keys(m.metrics || {})));
  for (const name of [...evaluated].filter((n) => !names.includes(n)).sort()) {
    boxes.push(evaluationChart(name, overview.marks, lost));
  }
  return h("div", { class: "charts", id: "charts" }, boxes);
}

export async function runPage(main, [runId]) {
  const [overview, settings, series] = await Promise.all([
    api(`/v1/runs/${runId}/overview`), api("/v1/ui-settings"),
    api(`/v1/runs/${runId}/curves`, { buckets: BUCKETS })]);
  const run = overview.run;
  const job = run.job || {};
  main.append(...[header(run, settings),
    overview.chain.length > 1 || run.lost_steps ? [h("h2", {}, "Recovery chain"), chainView(overview.chain)] : null,
    h("h2", {}, "Metrics"), legend(), charts(run, overview, series),
    h("h2", {}, "Evaluations, checkpoints, failures"), table(MARK_COLUMNS, overview.marks, "none"),
    h("h2", {}, "Resources"), resources(job, overview.resources),
    h("h2", {}, "Job spec"), json(job)].flat().filter(Boolean));
  if (run.job_status !== "running") return null;
  const timer = setInterval(async () => {
    const now = await api(`/v1/runs/${runId}`).catch(() => null);
    if (now && (now.last_step !== run.last_step || now.job_status !== run.job_status)) {
      window.dispatchEvent(new HashChangeEvent("hashchange"));
    }
  }, POLL_MS);
  return () => clearInterval(timer);
}
