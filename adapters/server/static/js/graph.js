// The lineage graph, painted on a canvas from the server's layout (GET /v1/lineage/{id}/layout:
// positions are computed there, projections/web_graph.py), so the page does no layout and no
// per-node bookkeeping: a thousand nodes and edges paint in a few milliseconds. Drag to pan,
// wheel to zoom around the pointer, click a node to open its page; labels are painted once
// zoomed in far enough to read them, and the node under the pointer always shows its label.
const RADIUS = 9; // layout units
const PADDING = { x: 110, y: 30 }; // CSS pixels around the fitted graph: room for labels
const MIN_ZOOM = 0.02;
const MAX_ZOOM = 4;
const LABEL_ZOOM = 0.6; // labels painted from this zoom on
const COLOURS = { run: "#3182ce", span: "#63b3ed", checkpoint: "#2f855a", dataset: "#dd6b20",
  model: "#319795" };
const OTHER = "#718096";
const EDGE = "#a0aec0";
const FADED = new Set(["retired", "expired"]);
const SQUARE = new Set(["run", "span"]);

export class LineageGraph {
  // ``layout``: the server's answer; ``canvas``: where to paint (sized by CSS).
  constructor(canvas, layout) {
    this.canvas = canvas;
    this.layout = layout;
    this.ctx = canvas.getContext("2d");
    this.view = { zoom: 1, x: 0, y: 0 };
    this.hovered = -1;
    this.queued = false;
    this.listen();
    this.resize(false);
    this.fit();
  }

  ids() { return this.layout.nodes.map((n) => n.id); }

  zoom(level) {
    if (level === undefined) return this.view.zoom;
    this.zoomAround(level, this.size.width / 2, this.size.height / 2);
    return this.view.zoom;
  }

  pan() { return { x: this.view.x, y: this.view.y }; }

  panBy({ x = 0, y = 0 }) {
    this.view.x += x;
    this.view.y += y;
    this.redraw();
  }

  // Where node ``id`` is painted, in CSS pixels from the canvas's top left corner.
  renderedPosition(id) {
    const node = this.layout.nodes.find((n) => n.id === id);
    return node ? this.toScreen(node) : null;
  }

  fit() {
    const { nodes } = this.layout;
    const xs = nodes.map((n) => n.x);
    const ys = nodes.map((n) => n.y);
    const [left, right] = [Math.min(...xs) - RADIUS, Math.max(...xs) + RADIUS];
    const [top, bottom] = [Math.min(...ys) - RADIUS, Math.max(...ys) + RADIUS];
    const { width, height } = this.size;
    const zoom = clamp(Math.min((width - 2 * PADDING.x) / (right - left),
      (height - 2 * PADDING.y) / (bottom - top + 16), 2));
    this.view = { zoom, x: width / 2 - zoom * (left + right) / 2, y: height / 2 - zoom * (top + bottom) / 2 };
    this.redraw();
  }

  // Read the canvas's size again (after the page's layout changed) and paint; fitted again
  // when the canvas had no size before (laid out while hidden).
  resize(paint = true) {
    const box = this.canvas.getBoundingClientRect();
    const size = { width: Math.max(box.width, 1), height: Math.max(box.height, 1) };
    const ratio = window.devicePixelRatio || 1;
    if (this.size && size.width === this.size.width && size.height === this.size.height
        && ratio === this.ratio) return; // the observer's first call: nothing changed
    const unsized = this.size && this.size.width <= 1 && this.size.height <= 1;
    this.size = size;
    this.ratio = ratio;
    this.canvas.width = Math.round(this.size.width * this.ratio);
    this.canvas.height = Math.round(this.size.height * this.ratio);
    if (unsized && this.size.width > 1) this.fit();
    else if (paint) this.draw();
  }

  destroy() { this.observer.disconnect(); }

  toScreen(node) {
    return { x: this.view.x + this.view.zoom * node.x, y: this.view.y + this.view.zoom * node.y };
  }

  // The index of the node painted at (x, y) in CSS pixels, or -1.
  nodeAt(x, y) {
    const reach = Math.max(RADIUS * this.view.zoom, 4) + 2;
    let best = -1;
    let nearest = reach * reach;
    this.layout.nodes.forEach((node, k) => {
      const at = this.toScreen(node);
      const distance = (at.x - x) ** 2 + (at.y - y) ** 2;
      if (distance <= nearest) { nearest = distance; best = k; }
    });
    return best;
  }

  zoomAround(level, x, y) {
    const zoom = clamp(level);
    const { view } = this;
    view.x = x - (x - view.x) * (zoom / view.zoom);
    view.y = y - (y - view.y) * (zoom / view.zoom);
    view.zoom = zoom;
    this.redraw();
  }

  redraw() {
    if (this.queued) return;
    this.queued = true;
    requestAnimationFrame(() => { this.queued = false; this.draw(); });
  }

  draw() {
    const { ctx, view, ratio, layout } = this;
    const { nodes, edges } = layout;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, this.size.width, this.size.height);
    ctx.setTransform(ratio * view.zoom, 0, 0, ratio * view.zoom, ratio * view.x, ratio * view.y);
    ctx.beginPath(); // every edge in one path: one stroke
    for (const [up, down] of edges) {
      ctx.moveTo(nodes[up].x, nodes[up].y);
      ctx.lineTo(nodes[down].x, nodes[down].y);
    }
    ctx.lineWidth = 1.2 / view.zoom;
    ctx.strokeStyle = EDGE;
    ctx.stroke();
    if (view.zoom * RADIUS >= 4) this.arrows();
    for (const faded of [false, true]) { // one path per colour and shape
      ctx.globalAlpha = faded ? 0.35 : 1;
      const paths = new Map();
      for (const node of nodes) {
        if (FADED.has(node.status) !== faded) continue;
        const key = `${COLOURS[node.kind] || OTHER}|${SQUARE.has(node.kind)}`;
        if (!paths.has(key)) paths.set(key, new Path2D());
        const path = paths.get(key);
        if (SQUARE.has(node.kind)) path.rect(node.x - RADIUS, node.y - RADIUS, 2 * RADIUS, 2 * RADIUS);
        else { path.moveTo(node.x + RADIUS, node.y); path.arc(node.x, node.y, RADIUS, 0, 2 * Math.PI); }
      }
      for (const [key, path] of paths) { ctx.fillStyle = key.split("|")[0]; ctx.fill(path); }
    }
    ctx.globalAlpha = 1;
    const root = nodes[layout.root];
    ctx.lineWidth = 3 / view.zoom;
    ctx.strokeStyle = "#1a202c";
    ctx.strokeRect(root.x - RADIUS - 2, root.y - RADIUS - 2, 2 * RADIUS + 4, 2 * RADIUS + 4);
    this.labels();
  }

  arrows() {
    const { ctx } = this;
    const { nodes, edges } = this.layout;
    const size = 4;
    ctx.beginPath();
    for (const [up, down] of edges) {
      const from = nodes[up];
      const to = nodes[down];
      const length = Math.hypot(to.x - from.x, to.y - from.y) || 1;
      const [ux, uy] = [(to.x - from.x) / length, (to.y - from.y) / length];
      const [tx, ty] = [to.x - ux * RADIUS, to.y - uy * RADIUS];
      ctx.moveTo(tx, ty);
      ctx.lineTo(tx - ux * size * 2 - uy * size, ty - uy * size * 2 + ux * size);
      ctx.lineTo(tx - ux * size * 2 + uy * size, ty - uy * size * 2 - ux * size);
      ctx.closePath();
    }
    ctx.fillStyle = EDGE;
    ctx.fill();
  }

  // Labels in screen space (crisp at any zoom): every visible node's once zoomed in; the
  // hovered node's always.
  labels() {
    const { ctx, ratio, size } = this;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.font = "11px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const below = RADIUS * this.view.zoom + 3;
    const paint = (node, strong) => {
      const at = this.toScreen(node);
      if (at.x < -200 || at.x > size.width + 200 || at.y < -20 || at.y > size.height + 20) return;
      ctx.fillStyle = strong ? "#1a202c" : "#4a5568";
      ctx.fillText(node.label, at.x, at.y + below);
    };
    if (this.view.zoom >= LABEL_ZOOM) this.layout.nodes.forEach((node) => paint(node, false));
    if (this.hovered >= 0) paint(this.layout.nodes[this.hovered], true);
  }

  listen() {
    const { canvas } = this;
    let pressed = null;
    canvas.addEventListener("pointerdown", (event) => {
      pressed = { x: event.offsetX, y: event.offsetY, moved: false };
      canvas.setPointerCapture(event.pointerId);
    });
    canvas.addEventListener("pointermove", (event) => {
      if (pressed) {
        const [dx, dy] = [event.offsetX - pressed.x, event.offsetY - pressed.y];
        if (pressed.moved || Math.abs(dx) + Math.abs(dy) > 3) {
          pressed = { x: event.offsetX, y: event.offsetY, moved: true };
          this.panBy({ x: dx, y: dy });
        }
        return;
      }
      const hovered = this.nodeAt(event.offsetX, event.offsetY);
      if (hovered !== this.hovered) {
        this.hovered = hovered;
        canvas.style.cursor = hovered >= 0 && this.layout.nodes[hovered].href ? "pointer" : "grab";
        canvas.title = hovered >= 0 ? this.layout.nodes[hovered].label : "";
        this.redraw();
      }
    });
    canvas.addEventListener("pointerup", (event) => {
      const click = pressed && !pressed.moved;
      pressed = null;
      if (!click) return;
      const k = this.nodeAt(event.offsetX, event.offsetY);
      if (k >= 0 && this.layout.nodes[k].href) location.hash = this.layout.nodes[k].href;
    });
    canvas.addEventListener("wheel", (event) => {
      event.preventDefault();
      this.zoomAround(this.view.zoom * Math.exp(-event.deltaY * 0.0015), event.offsetX, event.offsetY);
    }, { passive: false });
    this.observer = new ResizeObserver(() => this.resize());
    this.observer.observe(canvas);
  }
}

function clamp(zoom) { return Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, zoom)); }

// Paint ``layout`` in ``canvas``; resolves once the first frame with it is painted. Returns
// the LineageGraph (also window.lineageGraph, for tests and the console).
export async function drawGraph(canvas, layout) {
  const graph = new LineageGraph(canvas, layout); // fitted: its first frame is queued
  window.lineageGraph = graph;
  await new Promise((done) => requestAnimationFrame(() => done()));
  return graph;
}
