// The REST API with the user's bearer token (kept in this tab's sessionStorage).
const KEY = "lineage.token";

export class Refused extends Error {}

export function token() { return sessionStorage.getItem(KEY); }
export function setToken(text) { sessionStorage.setItem(KEY, text); }
export function clearToken() { sessionStorage.removeItem(KEY); }

export function url(path, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(name, value);
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

// The server writes NaN and the infinities as bare words (metrics may hold them).
function parse(text) {
  try {
    return JSON.parse(text);
  } catch (error) {
    return JSON.parse(text.replace(/(?<=[:\[,])(-?Infinity|NaN)(?=[,\]}])/g, "null"));
  }
}

// GET a route of the API as JSON; Refused when the token is missing or not valid (401).
export async function api(path, params = {}, given = token()) {
  if (!given) throw new Refused("no token: log in");
  const response = await fetch(url(path, params), {
    headers: { Authorization: `Bearer ${given}` }, cache: "no-store",
  });
  const text = await response.text();
  if (response.status === 401) {
    throw new Refused(detail(text) || "the token was refused");
  }
  if (!response.ok) {
    throw new Error(`${response.status}: ${detail(text) || response.statusText}`);
  }
  return parse(text);
}

function detail(text) {
  try { return parse(text).detail; } catch (error) { return text.slice(0, 300); }
}
