// The registry: artifacts with the registry's filters and an "as of" time (the registry as it
// was then: what was registered by then, with the status and aliases it had then).
import { api } from "./api.js";
import { artifactLink, h, number, runLink, status, table, time } from "./dom.js";
import { hashFor, submitsTo, toLocal } from "./route.js";

const TYPES = ["checkpoint", "model", "dataset", "log"];
const STATES = ["live", "retired", "expired"];
const PAGE = 100;

export function checksum(a) {
  return a.checksum ? `${a.checksum_algorithm}:${a.checksum}` : "";
}

const COLUMNS = [
  { title: "Artifact", cell: (a) => h("span", {}, artifactLink(a.id), h("div", { class: "reason" }, a.name || "")) },
  { title: "Type", cell: (a) => a.type },
  { title: "Status", cell: (a) => status(a.status, a.status_reason) },
  { title: "Aliases", cell: (a) => a.aliases.join(", ") },
  { title: "Run", cell: (a) => runLink(a.run_id) },
  { title: "Step", class: "num", cell: (a) => number(a.step) },
  { title: "Checksum", cell: (a) => h("code", { title: checksum(a) }, checksum(a).slice(0, 19)) },
  { title: "Uri", cell: (a) => h("span", { class: "mono" }, a.uri) },
  { title: "Registered", cell: (a) => time(a.registered_at) },
];

function select(name, values, chosen) {
  return h("select", { name }, ["", ...values].map((v) => h("option", { value: v, selected: chosen === v }, v || "any")));
}

function filters(params) {
  const field = (label, name, attrs = {}) => h("label", {}, label, h("input", { name, value: params[name] || "", ...attrs }));
  const time = (label, name) => field(label, name, { type: "datetime-local", step: 0.001, value: toLocal(params[name]) });
  return h("form", { class: "filters", id: "artifact-filters" },
    h("label", {}, "Type", select("type", TYPES, params.type)),
    h("label", {}, "Status", select("status", STATES, params.status)),
    field("Alias", "alias"), field("Run id", "run", { size: 36 }), field("Checksum (prefix)", "checksum"),
    time("Registered since", "since"), time("Registered until", "until"),
    time("As of", "as_of"),
    h("button", { type: "submit" }, "Filter"),
    params.as_of ? h("a", { href: hashFor("/artifacts", { ...params, as_of: "" }) }, "now") : null);
}

export async function artifactsPage(main, _match, params) {
  const offset = Number(params.offset || 0);
  const form = submitsTo("/artifacts", filters(params));
  const rows = await api("/v1/artifacts", { type: params.type, status: params.status,
    alias: params.alias, run: params.run, checksum: params.checksum, since: params.since,
    until: params.until, as_of: params.as_of, limit: PAGE, offset });
  const pager = h("div", { class: "pager" },
    offset > 0 ? h("a", { href: hashFor("/artifacts", { ...params, offset: Math.max(0, offset - PAGE) }) }, "previous") : null,
    h("span", { class: "muted", id: "registry-when" },
      params.as_of ? `the registry as of ${params.as_of}` : "the registry now",
      `; ${rows.length ? `${offset + 1}-${offset + rows.length}` : "none"}`),
    rows.length === PAGE ? h("a", { href: hashFor("/artifacts", { ...params, offset: offset + PAGE }) }, "next") : null);
  main.append(h("h1", {}, "Artifacts"), form, pager, h("div", { id: "artifacts" }, table(COLUMNS, rows)));
}
