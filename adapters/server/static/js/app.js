// The router: one page per hash route; no token -> the login page.
import { Refused, api, clearToken, token } from "./api.js";
import { h } from "./dom.js";
import { current, go } from "./route.js";
import { loginPage } from "./login.js";
import { runsPage } from "./runs.js";
import { runPage } from "./run.js";
import { artifactsPage } from "./artifacts.js";
import { artifactPage } from "./artifact.js";
import { auditPage } from "./audit.js";

const ID = "([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})";
const ROUTES = [
  [/^\/runs$/, "runs", runsPage],
  [new RegExp(`^/runs/${ID}$`), "run", runPage],
  [/^\/artifacts$/, "artifacts", artifactsPage],
  [new RegExp(`^/artifacts/${ID}$`), "artifact", artifactPage],
  [/^\/audit$/, "audit", auditPage],
  [/^\/login$/, "login", loginPage],
];

let cleanup = null;
let rendering = 0;

async function render() {
  if (cleanup) { cleanup(); cleanup = null; }
  const turn = ++rendering;
  const hash = location.hash; // what this render draws (tests wait for it, not an older page)
  const { path, params } = current();
  const found = ROUTES.map(([rule, name, page]) => [path.match(rule), name, page]).find(([m]) => m);
  if (path !== "/login" && !token()) {
    go("/login", { next: location.hash || "#/runs" });
    return;
  }
  const main = document.getElementById("main");
  document.body.dataset.ready = "0";
  document.body.dataset.page = found ? found[1] : "missing";
  for (const a of document.querySelectorAll("header nav a")) {
    a.classList.toggle("active", found && found[1].startsWith(a.dataset.nav.replace(/s$/, "")));
  }
  main.replaceChildren();
  try {
    if (!found) throw new Error(`no page at ${path}`);
    const [match, , page] = found;
    cleanup = (await page(main, match.slice(1), params, () => turn === rendering)) || null;
  } catch (error) {
    if (error instanceof Refused) {
      clearToken();
      go("/login", { next: location.hash, refused: error.message });
      return;
    }
    main.replaceChildren(h("div", { class: "error" }, String(error.message || error)));
  }
  if (turn === rendering) {
    // drawn: the benchmark reads the time since the navigation started
    document.body.dataset.readyAt = String(performance.now());
    document.body.dataset.drawn = hash;
    document.body.dataset.ready = "1";
  }
}

async function who() {
  const slot = document.getElementById("who");
  if (!token()) { slot.textContent = ""; return; }
  try {
    const me = await api("/v1/whoami");
    slot.textContent = `${me.actor} @ ${me.tenant}`;
  } catch (error) {
    slot.textContent = "";
  }
}

window.addEventListener("hashchange", () => { render(); who(); });
render();
who();
