// Hash routes: every page's state is in its URL (#/path?query), so a link can be pasted.

export function current() {
  const text = location.hash.replace(/^#/, "") || "/runs";
  const [path, query = ""] = text.split("?");
  return { path, params: Object.fromEntries(new URLSearchParams(query)) };
}

export function hashFor(path, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(name, value);
  }
  const text = query.toString();
  return `#${path}${text ? `?${text}` : ""}`;
}

export function go(path, params) { location.hash = hashFor(path, params); }

// A filters form: on submit, its named inputs become the URL parameters of `path`. Returns it.
export function submitsTo(path, form) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = {};
    for (const field of form.elements) {
      if (!field.name || (field.type === "checkbox" && !field.checked)) continue;
      params[field.name] = field.type === "datetime-local" ? toIso(field.value) : field.value;
    }
    go(path, params);
  });
  return form;
}

// datetime-local inputs hold local time; URLs hold UTC ISO 8601.
export function toIso(local) { return local ? new Date(local).toISOString() : ""; }
export function toLocal(iso) {
  if (!iso) return "";
  const moment = new Date(iso);
  if (Number.isNaN(moment.getTime())) return "";
  const shifted = new Date(moment.getTime() - moment.getTimezoneOffset() * 60000);
  return shifted.toISOString().slice(0, 23);
}
