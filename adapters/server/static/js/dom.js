// Small DOM helpers: data always goes in as text, never as markup.

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function link(hash, text, attrs = {}) { return h("a", { href: hash, ...attrs }, text); }

export function short(id) { return id ? id.slice(0, 8) : ""; }

export function runLink(id, text) { return id ? link(`#/runs/${id}`, text || short(id)) : ""; }
export function artifactLink(id, text) {
  return id ? link(`#/artifacts/${id}`, text || short(id)) : "";
}

export function status(value, reason) {
  return h("span", {}, h("span", { class: `status ${value}` }, value),
    reason ? h("div", { class: "reason" }, reason) : null);
}

export function number(value) {
  if (value === null || value === undefined) return "";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return value.toLocaleString("en");
  const size = Math.abs(value);
  return size !== 0 && (size < 1e-3 || size >= 1e6) ? value.toExponential(3) : value.toPrecision(4);
}

export function time(iso) { return iso ? iso.replace("T", " ").slice(0, 19) : ""; }

export function duration(fromIso, toIso) {
  if (!fromIso) return "";
  const ms = (toIso ? Date.parse(toIso) : Date.now()) - Date.parse(fromIso);
  if (!(ms >= 0)) return "";
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

export function metrics(values) {
  return Object.entries(values || {}).map(([name, value]) => `${name}=${number(value)}`).join("  ");
}

export function tags(values) {
  return Object.entries(values || {}).map(([name, value]) => `${name}:${value}`).join(" ");
}

// columns: [{title, cell(row) -> node or text, class}]
export function table(columns, rows, empty = "nothing matches") {
  const head = h("tr", {}, columns.map((c) => h("th", {}, c.title)));
  const body = rows.map((row) => h("tr", {}, columns.map((c) => h("td", { class: c.class }, c.cell(row)))));
  if (!rows.length) body.push(h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, empty)));
  return h("table", {}, h("thead", {}, head), h("tbody", {}, body));
}

export function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]));
}

export function json(value) { return h("pre", {}, JSON.stringify(value, null, 2)); }
