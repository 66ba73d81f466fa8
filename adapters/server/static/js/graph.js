// The lineage graph (Cytoscape, loaded on first use): nodes in columns by their distance from
// the artifact or run in the middle (upstream to the left), pan and zoom, a click opens the
// node's page. Positions are computed here (a preset layout): linear in the node count.
let loading = null;

function loadCytoscape() {
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
  if (!node.found) return `${node.type} ${node.id.slice(0, 8)} (not found)`;
  if (node.artifact_type) {
    const tail = (node.uri || "").split("/").filter(Boolean).pop() || node.uri || "";
    return `${node.artifact_type}${node.step !== null && node.step !== undefined ? ` @${node.step}` : ""}\n${tail}`;
  }
  return node.label || node.id.slice(0, 8);
}

function kind(node) {
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
  { selector: "node[?root]", style: { "border-width": 3, "border-color": "#1a202c" } },
  { selector: "edge", style: { width: 1.2, "line-color": "#a0aec0", "target-arrow-color": "#a0aec0",
    "target-arrow-shape": "triangle", "curve-style": "straight", "arrow-scale": 0.8 } },
];

function elements(graph) {
  const columns = new Map();
  for (const node of graph.nodes) {
    if (!columns.has(node.depth)) columns.set(node.depth, []);
    columns.get(node.depth).push(node);
  }
  const found = [];
  for (const [depth, column] of columns) {
    column.sort((a, b) => kind(a).localeCompare(kind(b)) || (a.step ?? 0) - (b.step ?? 0) || a.id.localeCompare(b.id));
    column.forEach((node, k) => found.push({ group: "nodes",
      data: { id: node.id, label: nodeLabel(node), kind: kind(node), status: node.status || "",
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

// Draw ``graph`` (a /v1/lineage answer) in ``container``; returns the Cytoscape instance
// (also window.lineageGraph, for tests and the console).
export async function drawGraph(container, graph) {
  await loadCytoscape();
  const many = graph.nodes.length > 300;
  const cy = window.cytoscape({ container, elements: elements(graph), style: STYLE,
    layout: { name: "preset", fit: true, padding: 30 }, minZoom: 0.02, maxZoom: 4,
    wheelSensitivity: 0.3, textureOnViewport: many, hideEdgesOnViewport: many,
    pixelRatio: many ? 1 : "auto", boxSelectionEnabled: false, autoungrabify: true });
  cy.on("tap", "node", (event) => {
    const hash = event.target.data("hash");
    if (hash) location.hash = hash;
  });
  window.lineageGraph = cy;
  return cy;
}
