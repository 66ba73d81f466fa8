// The lineage graph (Cytoscape, loaded on first use): nodes in columns by their distance from
// the artifact or run in the middle (upstream to the left), pan and zoom, a click opens the
// node's page. Positions are computed here (a preset layout): linear in the node count.
const LABELLED = 150; // nodes nearest the root labelled at once; the others on hover
const GROUP_MIN = 25; // alike nodes (same distance, kind and neighbours) drawn as one group
let loading = null;

// Fetch and run Cytoscape's script (once); call early so it loads while the graph is fetched.
export function loadCytoscape() {
  if (window.cytoscape) return Promise.resolve();
  loading = loading || new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = "vendor/cytoscape.min.js";
    script.onload = resolve;
    script.onerror = () => reject(new Error("could not load vendor/cytoscape.min.js"));
    document.head.append(script);
  });
  return loading;
}

// Where a node's page is: runs for runs (a span's run for a span), artifacts otherwise.
export function nodeHash(node) {
  if (node.type === "trace" || node.type === "run") return `#/runs/${node.id}`;
  if (node.type === "span") return node.trace_id ? `#/runs/${node.trace_id}` : null;
  return `#/artifacts/${node.id}`;
}

export function nodeLabel(node) {
  if (node.type === "group") return node.label;
  if (!node.found) return `${node.type} ${node.id.slice(0, 8)} (not found)`;
  if (node.artifact_type) {
    const tail = (node.uri || "").split("/").filter(Boolean).pop() || node.uri || "";
    return `${node.artifact_type}${node.step !== null && node.step !== undefined ? ` @${node.step}` : ""}\n${tail}`;
  }
  return node.label || node.id.slice(0, 8);
}

function kind(node) {
  if (node.type === "group") return "group";
  if (node.artifact_type) return node.artifact_type;
  return node.type === "trace" ? "run" : node.type;
}

const STYLE = [
  { selector: "node", style: { label: "data(label)", "text-wrap": "wrap", "text-max-width": 180,
    "font-size": 10, "text-valign": "bottom", "text-margin-y": 3, "min-zoomed-font-size": 7,
    width: 22, height: 22, "background-color": "#718096" } },
  { selector: "node[kind = 'run']", style: { shape: "round-rectangle", "background-color": "#3182ce" } },
  { selector: "node[kind = 'span']", style: { shape: "round-rectangle", "background-color": "#63b3ed" } },
  { selector: "node[kind = 'checkpoint']", style: { shape: "ellipse", "background-color": "#2f855a" } },
  { selector: "node[kind = 'dataset']", style: { shape: "barrel", "background-color": "#dd6b20" } },
  { selector: "node[kind = 'model']", style: { shape: "diamond", "background-color": "#319795" } },
  { selector: "node[status = 'retired'], node[status = 'expired']", style: { "background-opacity": 0.35 } },
  { selector: "node[kind = 'group']", style: { shape: "round-rectangle", width: 44, height: 30,
    "background-color": "#a0aec0", "border-width": 2, "border-color": "#4a5568" } },
  { selector: "node[?root]", style: { "border-width": 3, "border-color": "#1a202c" } },
  { selector: "edge", style: { width: 1.2, "line-color": "#a0aec0", "target-arrow-color": "#a0aec0",
    "target-arrow-shape": "triangle", "curve-style": "straight", "arrow-scale": 0.8 } },
];

// ``graph`` with each large set of alike nodes (same distance, kind and neighbours: e.g. the
// thousand checkpoints of one run) replaced by one group node; ``hidden``: how many.
export function collapsed(graph) {
  const neighbours = new Map();
  const meet = (a, b) => { if (!neighbours.has(a)) neighbours.set(a, []); neighbours.get(a).push(b); };
  for (const edge of graph.edges) { meet(edge.upstream_id, edge.downstream_id); meet(edge.downstream_id, edge.upstream_id); }
  const alike = new Map();
  for (const node of graph.nodes) {
    if (node.id === graph.root.id) continue;
    const key = `${node.depth}|${kind(node)}|${(neighbours.get(node.id) || []).sort().join(",")}`;
    if (!alike.has(key)) alike.set(key, []);
    alike.get(key).push(node);
  }
  const into = new Map();
  const groups = [];
  for (const members of alike.values()) {
    if (members.length < GROUP_MIN) continue;
    const id = `group-${groups.length}`;
    for (const member of members) into.set(member.id, id);
    groups.push({ id, type: "group", found: true, depth: members[0].depth, count: members.length,
      label: `${members.length} ${kind(members[0])}s (click to expand)` });
  }
  if (!groups.length) return { ...graph, hidden: 0 };
  const edges = new Map();
  for (const edge of graph.edges) {
    const up = into.get(edge.upstream_id) || edge.upstream_id;
    const down = into.get(edge.downstream_id) || edge.downstream_id;
    if (!edges.has(`${up}>${down}`)) edges.set(`${up}>${down}`, { ...edge, id: `${up}>${down}`, upstream_id: up, downstream_id: down });
  }
  return { ...graph, nodes: [...graph.nodes.filter((n) => !into.has(n.id)), ...groups],
    edges: [...edges.values()], hidden: into.size };
}

function elements(graph) {
  const near = new Set([...graph.nodes].sort((a, b) => Math.abs(a.depth) - Math.abs(b.depth))
    .slice(0, LABELLED).map((n) => n.id));
  const columns = new Map();
  for (const node of graph.nodes) {
    if (!columns.has(node.depth)) columns.set(node.depth, []);
    columns.get(node.depth).push(node);
  }
  const found = [];
  for (const [depth, column] of columns) {
    column.sort((a, b) => kind(a).localeCompare(kind(b)) || (a.step ?? 0) - (b.step ?? 0) || a.id.localeCompare(b.id));
    column.forEach((node, k) => found.push({ group: "nodes",
      data: { id: node.id, label: near.has(node.id) ? nodeLabel(node) : "", full: nodeLabel(node),
        kind: kind(node), status: node.status || "",
        root: node.id === graph.root.id, hash: nodeHash(node) },
      position: { x: depth * 280, y: (k - (column.length - 1) / 2) * 56 } }));
  }
  const ids = new Set(graph.nodes.map((n) => n.id));
  for (const edge of graph.edges) {
    if (ids.has(edge.upstream_id) && ids.has(edge.downstream_id)) {
      found.push({ group: "edges", data: { id: edge.id, source: edge.upstream_id,
        target: edge.downstream_id, relationship: edge.relationship } });
    }
  }
  return found;
}

// Draw ``graph`` (a /v1/lineage answer, maybe ``collapsed``) in ``container``; a click on a
// group calls ``expand``. Returns the Cytoscape instance (also window.lineageGraph, for tests
// and the console).
export async function drawGraph(container, graph, expand = () => {}) {
  await loadCytoscape();
  const many = graph.nodes.length > 300;
  // many nodes: straight lines without arrow heads (Cytoscape's cheapest edges), unwrapped text
  const style = many ? [...STYLE, { selector: "edge", style: { "curve-style": "haystack", "haystack-radius": 0 } },
    { selector: "node", style: { "text-wrap": "none" } }] : STYLE;
  const cy = window.cytoscape({ container, elements: elements(graph), style,
    layout: { name: "preset", fit: true, padding: 30 }, minZoom: 0.02, maxZoom: 4,
    wheelSensitivity: 0.3, textureOnViewport: many, hideEdgesOnViewport: many,
    pixelRatio: many ? 1 : "auto", boxSelectionEnabled: false, autoungrabify: true });
  cy.on("mouseover", "node", (event) => event.target.data("label", event.target.data("full")));
  cy.on("tap", "node", (event) => {
    if (event.target.data("kind") === "group") expand();
    const hash = event.target.data("hash");
    if (hash) location.hash = hash;
  });
  window.lineageGraph = cy;
  return cy;
}
