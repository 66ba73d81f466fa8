"""Time to first render of the web pages in a real browser: a run page of a 1,000,000-step run
and the lineage graph of 1,000 nodes, served by ``lineage serve`` from a SQLite store.

The store is recorded through the public API (``Tracker``): run "long" logs ``--steps``
(1,000,000) steps of two metrics (loss, lr) with an evaluation and a checkpoint every tenth of
the run; run "wide" consumes a dataset and saves ``--nodes`` - 2 (998) checkpoints, so the
dataset's lineage downstream (depth 2) holds ``--nodes`` nodes. ``lineage serve`` runs in its
own process; the read models are caught up before anything is timed. Debian's Chromium
(``/usr/bin/chromium``, headless) opens each page through Playwright with a read token already
in the tab's ``sessionStorage``; the render is done when the page marks itself ready (every
chart drawn, or the graph painted and a frame gone by: ``body[data-ready=1]``). Figures: the
time from the navigation's start to that mark (``performance.now()`` then), first load (a
fresh tab: HTML, scripts and the API calls) and the median of ``--repeat`` (5) more fresh
tabs, and where the time goes (medians, from the page's own performance marks and resource
timings): the HTML and scripts (DOMContentLoaded), the page's slowest API call, and for the
graph its fetch and its painting. The run page asks the server for 250 buckets per metric
(a bucket every two pixels of a chart; min, max and last of consecutive points by the one rule
of ``projections/metric_buckets.py``), so what the browser draws does not grow with the run.
The graph page draws every node: 1,000 nodes and 999 edges laid out on the server
(``/v1/lineage/{id}/layout``, ``projections/web_graph.py``) and painted on a canvas.

Targets (issue 16): each <= 1 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from common import Report

TARGET_S = 1.0
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def record(database: str, folder: Path, steps: int, nodes: int) -> tuple[str, str]:
    """The long run's id and the wide graph's dataset id."""
    import lineage

    every = max(1, steps // 10)
    with lineage.Tracker(database, tenant_id="bench", actor="bench", source="bench") as tracker:
        data = folder / "data.bin"
        data.write_bytes(b"rows")
        dataset = tracker.register_artifact(data, type="dataset", name="graph-data")
        with tracker.start_run("long") as run:
            for step in range(1, steps + 1):
                run.log_step(step, {"loss": 1.0 / step ** 0.5, "lr": 1e-3 * (1 - step / steps)})
                if step % every == 0:
                    run.log_eval(step, {"val_loss": 1.1 / step ** 0.5})
                    path = folder / f"long-{step}.bin"
                    path.write_bytes(step.to_bytes(8, "little"))
                    run.save_checkpoint(path, step=step)
        with tracker.start_run("wide", inputs=[dataset]) as wide:
            for k in range(nodes - 2):
                path = folder / f"wide-{k}.bin"
                path.write_bytes(k.to_bytes(8, "little"))
                wide.save_checkpoint(path, step=k + 1)
        tracker.flush()
        return str(run.id), str(dataset.id)


def recorded(database: str) -> tuple[str, str]:
    """The long run's and the graph dataset's ids in a store ``record`` wrote."""
    import lineage

    with lineage.Tracker(database, tenant_id="bench") as tracker:
        run = next(view for view in tracker.runs() if view.name == "long")
        dataset = tracker.artifacts(type="dataset")[0]
        return str(run.id), str(dataset.id)


def serve(database: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LINEAGE_DATABASE_URL": database}
    with log.open("ab") as out:
        process = subprocess.Popen([str(Path(sys.executable).parent / "lineage"), "serve", "--port",
                                    str(port), "--rate", "10000"], env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"lineage serve did not start: {log.read_text()[-2000:]}")


# where the time went, in ms from the navigation's start: the page's marks and API calls
PHASES = """() => {
  const marks = Object.fromEntries(performance.getEntriesByType("mark")
    .map((m) => [m.name, m.startTime]));
  const api = performance.getEntriesByType("resource").filter((r) => r.name.includes("/v1/"));
  return { ready: Number(document.body.dataset.readyAt),
    scripts: performance.getEntriesByType("navigation")[0].domContentLoadedEventEnd,
    api: Math.max(...api.map((r) => r.responseEnd)), ...marks };
}"""


def first_render(browser: Any, url: str, token: str, page_name: str) -> dict[str, float]:
    """The page's ``PHASES`` (seconds) in a fresh tab; ``ready``: its ready mark."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_init_script(f"sessionStorage.setItem('lineage.token', {token!r})")
    tab = context.new_page()
    try:
        tab.goto(url)
        tab.wait_for_selector(f"body[data-page='{page_name}'][data-ready='1']", timeout=120_000)
        return {name: value / 1000 for name, value in tab.evaluate(PHASES).items()}
    finally:
        context.close()


def measure(report: Report, browser: Any, url: str, token: str, page_name: str,
            repeat: int) -> None:
    first = first_render(browser, url, token, page_name)
    again = [first_render(browser, url, token, page_name) for _ in range(repeat)]
    ready = sorted(phases["ready"] for phases in again)
    report.figure("first load", first["ready"], "s", fmt="{:.3f}", target=("<=", TARGET_S))
    report.figure(f"median of {repeat}", statistics.median(ready), "s", fmt="{:.3f}",
                  target=("<=", TARGET_S))
    report.figure("max", ready[-1], "s", fmt="{:.3f}")
    for name in again[0]:
        if name != "ready":
            report.figure(f"  {name} done at (median)",
                          statistics.median(phases.get(name, 0.0) for phases in again), "s",
                          fmt="{:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--nodes", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--port", type=int, default=8479)
    parser.add_argument("--store", default=None,
                        help="a SQLite file to keep the recorded store in, and to reuse when it "
                        "exists (default: a temp file)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from lineage.adapters.server.tokens import TokenStore
    from lineage.bootstrap import open_store

    report = Report.start("bench/web_render.py: time to first render of the web pages")
    with tempfile.TemporaryDirectory(prefix="lineage_bench_") as folder:
        database = args.store or str(Path(folder) / "lineage.db")
        started = time.perf_counter()
        if Path(database).exists():
            run_id, dataset_id = recorded(database)
            report.note(f"reusing {database}")
        else:
            run_id, dataset_id = record(database, Path(folder), args.steps, args.nodes)
            report.note(f"recorded {args.steps:,} steps and {args.nodes - 2} checkpoints in "
                        f"{time.perf_counter() - started:.1f} s")
        store = open_store(database)
        token = TokenStore(store.database.engine()).create("bench", "bench", ["read"])
        store.close()
        server = serve(database, args.port, Path(folder) / "serve.log")
        base = f"http://127.0.0.1:{args.port}"
        try:
            auth = {"Authorization": f"Bearer {token}"}
            started = time.perf_counter()
            graph = httpx.get(f"{base}/v1/lineage/{dataset_id}", params={"direction": "down",
                              "depth": 2}, headers=auth, timeout=600).json()
            report.note(f"read models caught up in {time.perf_counter() - started:.1f} s; the "
                        f"graph has {len(graph['nodes'])} nodes, {len(graph['edges'])} edges")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                report.section(f"run page, {args.steps:,} steps")
                measure(report, browser, f"{base}/ui/#/runs/{run_id}", token, "run", args.repeat)
                graph_url = f"{base}/ui/#/artifacts/{dataset_id}?direction=down&depth=2"
                report.section(f"lineage graph, {len(graph['nodes'])} nodes, every node drawn")
                measure(report, browser, graph_url, token, "artifact", args.repeat)
                browser.close()
        finally:
            server.terminate()
            server.wait(60)


if __name__ == "__main__":
    main()
