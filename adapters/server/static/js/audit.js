// The audit log: who did what and when, searched by subject, actor, kind and time; paged by
// position (the next page starts after the last row shown).
import { api } from "./api.js";
import { artifactLink, h, runLink, table, time } from "./dom.js";
import { hashFor, submitsTo, toLocal } from "./route.js";

const PAGE = 100;

function subject(row) {
  if (row.subject_type === "run") return runLink(row.subject_id);
  if (row.subject_type === "artifact") return artifactLink(row.subject_id);
  return h("code", {}, (row.subject_id || "").slice(0, 8));
}

const COLUMNS = [
  { title: "Position", class: "num", cell: (r) => String(r.position) },
  { title: "Recorded", cell: (r) => time(r.recorded_at) },
  { title: "Actor", cell: (r) => r.actor },
  { title: "Kind", cell: (r) => h("code", {}, r.kind) },
  { title: "Subject", cell: (r) => [r.subject_type, " ", subject(r)] },
  { title: "Run", cell: (r) => runLink(r.run_id) },
  { title: "Summary", cell: (r) => r.summary },
];

function filters(params) {
  const field = (label, name, attrs = {}) => h("label", {}, label, h("input", { name, value: params[name] || "", ...attrs }));
  const time = (label, name) => field(label, name, { type: "datetime-local", step: 0.001, value: toLocal(params[name]) });
  return h("form", { class: "filters", id: "audit-filters" },
    field("Subject (run or artifact id)", "subject", { size: 36 }), field("Actor", "actor"),
    field("Kind (part of)", "kind"), time("Since", "since"), time("Until", "until"),
    h("label", {}, "Steps", h("input", { type: "checkbox", name: "steps", value: "true", checked: params.steps === "true" })),
    h("button", { type: "submit" }, "Search"));
}

export async function auditPage(main, _match, params) {
  const after = Number(params.after || 0);
  const form = submitsTo("/audit", filters(params));
  const rows = await api("/v1/audit", { subject: params.subject, actor: params.actor,
    kind: params.kind, since: params.since, until: params.until, steps: params.steps,
    after, limit: PAGE });
  const last = rows.length ? rows[rows.length - 1].position : after;
  const pager = h("div", { class: "pager" },
    after > 0 ? h("a", { href: hashFor("/audit", { ...params, after: "" }) }, "first page") : null,
    h("span", { class: "muted" }, rows.length ? `positions ${rows[0].position}-${last}` : "no more rows"),
    rows.length >= PAGE ? h("a", { id: "audit-next", href: hashFor("/audit", { ...params, after: last }) }, "next page") : null);
  main.append(h("h1", {}, "Audit"), form, pager, h("div", { id: "audit" }, table(COLUMNS, rows)));
}
