// The runs table: job status and reason, steps, last metrics, duration, tags; filters in the
// URL; while a run on the page is running, the table is fetched again every few seconds.
import { api } from "./api.js";
import { duration, h, metrics, number, runLink, status, table, tags, time } from "./dom.js";
import { hashFor, submitsTo, toLocal } from "./route.js";

export const JOB_STATUSES = ["pending", "running", "completed", "failed", "corrupted",
  "superseded", "cancelled"];
const PAGE = 50;
const POLL_MS = 3000;

const COLUMNS = [
  { title: "Run", cell: (r) => h("span", {}, runLink(r.id, r.name), h("div", { class: "reason mono" }, r.id.slice(0, 8))) },
  { title: "Status", cell: (r) => status(r.job_status, r.status_reason) },
  { title: "Steps", class: "num", cell: (r) => number(r.last_step) },
  { title: "Last metrics", cell: (r) => h("span", { class: "mono" }, metrics(r.last_metrics)) },
  { title: "Duration", class: "num", cell: (r) => duration(r.started_at, r.finished_at || (r.job_status === "running" ? null : r.last_activity_at)) },
  { title: "Tags", cell: (r) => tags(r.tags) },
  { title: "Started", cell: (r) => time(r.started_at) },
];

function filters(params) {
  const choice = (value) => h("option", { value, selected: params.status === value }, value || "any");
  return h("form", { class: "filters", id: "run-filters" },
    h("label", {}, "Status", h("select", { name: "status" }, ["", ...JOB_STATUSES].map(choice))),
    h("label", {}, "Name", h("input", { name: "name", value: params.name || "" })),
    h("label", {}, "Tag (key or key=value)", h("input", { name: "tag", value: params.tag || "" })),
    h("label", {}, "Started since", h("input", { type: "datetime-local", step: 0.001, name: "since", value: toLocal(params.since) })),
    h("label", {}, "Started until", h("input", { type: "datetime-local", step: 0.001, name: "until", value: toLocal(params.until) })),
    h("button", { type: "submit" }, "Filter"));
}

export async function runsPage(main, _match, params) {
  const offset = Number(params.offset || 0);
  const query = { status: params.status, name: params.name, tag: params.tag,
    since: params.since, until: params.until, limit: PAGE, offset };
  const form = submitsTo("/runs", filters(params));
  const slot = h("div", { id: "runs" });
  main.append(h("h1", {}, "Runs"), form, slot);
  let timer = null;
  let stopped = false;
  const draw = async () => {
    if (stopped) return;
    const page = await api("/v1/run-table", query);
    const live = page.runs.some((r) => r.job_status === "running");
    const pager = h("div", { class: "pager" },
      offset > 0 ? h("a", { href: hashFor("/runs", { ...params, offset: Math.max(0, offset - PAGE) }) }, "newer") : null,
      h("span", { class: "muted" }, `${page.total} run(s); ${offset + 1}-${offset + page.runs.length}`),
      offset + PAGE < page.total ? h("a", { href: hashFor("/runs", { ...params, offset: offset + PAGE }) }, "older") : null,
      live ? h("span", { class: "muted", id: "live" }, "live: refreshing while runs are running") : null);
    slot.replaceChildren(pager, table(COLUMNS, page.runs));
    timer = live && !stopped ? setTimeout(() => draw().catch(() => {}), POLL_MS) : null;
  };
  await draw();
  return () => { stopped = true; clearTimeout(timer); };
}
