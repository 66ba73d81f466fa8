// An artifact: checksum, status and the reason (retention), verification, its aliases with
// their history, its own history, and its lineage graph (up, down or both; a depth).
import { api } from "./api.js";
import { artifactLink, facts, h, json, number, runLink, status, table, time } from "./dom.js";
import { checksum } from "./artifacts.js";
import { drawGraph } from "./graph.js";
import { hashFor, submitsTo } from "./route.js";

const HISTORY = [
  { title: "Position", class: "num", cell: (r) => String(r.position) },
  { title: "At", cell: (r) => time(r.at) },
  { title: "Status", cell: (r) => status(r.status, r.reason) },
];

// every alias that ever pointed here: when it came, from where, and when it moved away, to where
const ALIAS_PERIODS = [
  { title: "Alias", cell: (r) => (r.scope === "registry" ? r.name : `${r.name}@${r.scope.slice(0, 8)}`) },
  { title: "Pointed here", cell: (r) => time(r.pointed_at) },
  { title: "From", cell: (r) => artifactLink(r.previous_artifact_id) },
  { title: "By", cell: (r) => r.actor },
  { title: "Moved away", cell: (r) => (r.moved_away_at ? time(r.moved_away_at) : h("span", { class: "status live" }, "still here")) },
  { title: "To", cell: (r) => artifactLink(r.moved_to) },
  { title: "By", cell: (r) => r.moved_away_by || "" },
  { title: "Protected", cell: (r) => (r.protected ? "yes" : "") },
];

function verification(a) {
  if (a.verified === true) return h("span", { class: "status live" }, "verified");
  if (a.verified === false) return h("span", { class: "status failed" }, "verification failed");
  return h("span", { class: "muted" }, "not verified");
}

function graphControls(id, params) {
  const direction = params.direction || "up";
  const depth = params.depth || "5";
  const form = h("form", { class: "filters", id: "graph-controls" },
    h("label", {}, "Direction", h("select", { name: "direction" }, ["up", "down", "both"].map((d) =>
      h("option", { value: d, selected: d === direction }, d)))),
    h("label", {}, "Depth", h("input", { type: "number", name: "depth", min: 0, max: 100, value: depth })),
    h("button", { type: "submit" }, "Draw"),
    h("button", { type: "button", id: "graph-fit", onclick: () => window.lineageGraph && window.lineageGraph.fit() }, "Fit"),
    h("span", { class: "muted" }, "drag to pan, wheel to zoom, click a node to open it"));
  submitsTo(`/artifacts/${id}`, form);
  return { form, direction, depth: Number(depth) };
}

export async function lineageSection(id, params) {
  const { form, direction, depth } = graphControls(id, params);
  const layout = await api(`/v1/lineage/${id}/layout`, { direction, depth });
  performance.mark("graph:fetched");
  const canvas = h("canvas", { id: "graph", role: "img",
    "aria-label": `lineage graph: ${layout.nodes.length} nodes; the list below links each one` });
  // the nodes as links too (built when opened: a thousand rows cost more than the graph)
  const items = h("ul");
  const list = h("details", { id: "graph-nodes" }, h("summary", {}, `${layout.nodes.length} node(s), ${layout.edges.length} edge(s)`), items);
  list.addEventListener("toggle", () => {
    if (items.childElementCount) return;
    items.append(...layout.nodes.map((n) => h("li", {}, `${n.depth}: `, n.href ? h("a", { href: n.href }, n.label) : n.label)));
  });
  return { nodes: [h("h2", {}, "Lineage"), form, canvas, list], draw: () => drawGraph(canvas, layout) };
}

export async function artifactPage(main, [id], params) {
  const [a, periods, lineage] = await Promise.all([api(`/v1/artifacts/${id}`),
    api(`/v1/artifacts/${id}/alias-history`), lineageSection(id, params)]);
  const pins = Object.entries(a.pins || {}).map(([key, why]) => `${key}: ${why}`).join("; ");
  main.append(
    h("h1", {}, `${a.type} ${a.name || ""} `, status(a.status, a.status_reason)),
    facts([
      ["id", h("code", {}, a.id)],
      ["uri", h("code", {}, a.uri)],
      ["checksum", h("code", { id: "checksum" }, checksum(a))],
      ["size", a.size === null ? "" : `${number(a.size)} bytes`],
      ["format", a.format || ""],
      ["run", a.run_id ? [runLink(a.run_id), a.step !== null ? ` at step ${number(a.step)}` : ""] : ""],
      ["status", [status(a.status), " ", a.status_reason || ""]],
      ["retention", pins ? `kept: ${pins}` : (a.status === "live" ? "" : a.status_reason || "")],
      ["verification", verification(a)],
      ["deletion", a.deletion ? JSON.stringify(a.deletion) : ""],
      ["aliases", a.aliases.join(", ")],
      ["parents", (a.parents || []).map((p) => [artifactLink(p), " "])],
      ["same content", (a.same_content || []).map((p) => [artifactLink(p), " "])],
      ["registered", `${time(a.registered_at)} by ${a.actor}`],
      ["in the registry", h("a", { href: hashFor("/artifacts", { as_of: a.registered_at }) }, "as it was when this was registered")],
    ]),
    h("h2", {}, "Aliases and their history"), table(ALIAS_PERIODS, periods, "no alias ever pointed here"),
    h("h2", {}, "History"), table(HISTORY, a.history || [], "no change since registered"),
    ...lineage.nodes,
    h("h2", {}, "Metadata"), json(a.metadata));
  await lineage.draw();
  performance.mark("graph:drawn");
  return () => { if (window.lineageGraph) { window.lineageGraph.destroy(); window.lineageGraph = null; } };
}
