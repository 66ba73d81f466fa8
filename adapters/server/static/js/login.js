// The login page: a bearer token (read scope at least), checked against /v1/whoami and kept
// in this tab's sessionStorage only.
import { Refused, api, clearToken, setToken } from "./api.js";
import { h } from "./dom.js";

export async function loginPage(main, _match, params) {
  if (params.logout) clearToken();
  const message = h("p", { id: "login-message", class: params.refused ? "error" : "muted" },
    params.refused ? `Refused: ${params.refused}` : "Paste a token from `lineage tokens create --scope read`.");
  const input = h("input", { type: "password", name: "token", id: "token", autocomplete: "off",
    placeholder: "lnt.<tenant>.<id>.<secret>" });
  const form = h("form", { class: "login", id: "login-form" },
    h("h1", {}, "Log in"), message,
    h("label", { for: "token" }, "Bearer token"), input,
    h("button", { type: "submit" }, "Log in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const given = input.value.trim();
    try {
      if (!given) throw new Refused("a token is needed");
      const me = await api("/v1/whoami", {}, given);
      setToken(given);
      location.hash = params.next && params.next.startsWith("#/") && !params.next.startsWith("#/login")
        ? params.next : "#/runs";
      document.getElementById("who").textContent = `${me.actor} @ ${me.tenant}`;
    } catch (error) {
      message.className = "error";
      message.textContent = `Refused: ${error.message}`;
    }
  });
  main.append(form);
  input.focus();
}
