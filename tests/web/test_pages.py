"""The web pages in a real browser (Debian's Chromium through Playwright) on the demo's data:
each page opens and shows the demo's runs and artifacts, the lineage graph leads from a
checkpoint to its run and dataset, an "as of" time brings a retired checkpoint back, and no
page shows data without a token. Screenshots go to tests/artifacts/web/."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tests.web.conftest import JAEGER, Site, shoot


def log_in(page: Any, site: Site, route: str, name: str) -> None:
    """Open ``route`` logged out, log in on the page it sends to, land on ``route``."""
    page.goto(site.page_url(route))
    ready(page, "login")
    page.fill("#token", site.read_token)
    page.click("#login-form button[type=submit]")
    ready(page, name)


def ready(page: Any, name: str) -> None:
    page.wait_for_selector(f"body[data-page='{name}'][data-ready='1']")


def visit(page: Any, site: Site, route: str, name: str) -> None:
    page.goto(site.page_url(route))
    ready(page, name)


def test_no_token_no_data_and_a_read_token_logs_in(page: Any, site: Site) -> None:
    page.goto(site.page_url("/runs"))
    ready(page, "login")  # sent to the login page, nothing fetched
    assert site.demo.failed_run.name not in page.content()
    page.click("#login-form button[type=submit]")  # no token
    page.wait_for_selector("#login-message.error")
    assert "Refused" in page.inner_text("#login-message")
    page.fill("#token", site.read_token.rsplit(".", 1)[0] + ".wrong")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#login-message:has-text('not valid')")
    assert page.evaluate("sessionStorage.length") == 0
    assert page.evaluate("fetch('/v1/run-table').then(r => r.status)") == 401
    shoot(page, "login-refused")
    page.fill("#token", site.read_token)
    page.click("#login-form button[type=submit]")
    ready(page, "runs")
    assert page.inner_text("#who") == "auditor @ default"


def test_runs_page_lists_the_demo_runs_with_status_and_filters(page: Any, site: Site) -> None:
    log_in(page, site, "/runs", "runs")
    text = page.inner_text("#runs")
    assert str(site.demo.failed_run.id)[:8] in text and str(site.demo.resumed_run.id)[:8] in text
    assert "superseded" in text or "corrupted" in text
    assert "completed" in text and "loss=" in text
    shoot(page, "runs")
    page.select_option("#run-filters select[name=status]", "completed")
    page.click("#run-filters button[type=submit]")
    page.wait_for_url("**status=completed**")
    page.wait_for_selector(f"#runs:not(:has-text('{str(site.demo.failed_run.id)[:8]}'))")
    ready(page, "runs")
    text = page.inner_text("#runs")
    assert str(site.demo.resumed_run.id)[:8] in text
    assert str(site.demo.failed_run.id)[:8] not in text
    visit(page, site, "/runs?tag=nothing-like-this", "runs")  # a pasted URL keeps its filter
    assert "nothing matches" in page.inner_text("#runs")


def test_run_page_draws_curves_marks_chain_and_links_to_jaeger(page: Any, site: Site) -> None:
    log_in(page, site, f"/runs/{site.demo.failed_run.id}", "run")
    charts = page.query_selector_all("#charts .chart canvas")
    assert len(charts) >= 2  # loss and at least one evaluation metric
    assert page.query_selector("#charts .chart[data-metric='loss']") is not None
    lost = page.query_selector("#chain .lost")
    assert lost is not None and "lost step" in (lost.get_attribute("title") or "")
    href = page.get_attribute("#jaeger", "href")
    assert href == f"{JAEGER}/trace/{site.demo.failed_run.id.hex}"
    assert "Job spec" in page.inner_text("main") and "checkpoint" in page.inner_text("main")
    shoot(page, "run")
    page.click(f"#chain a[href='#/runs/{site.demo.resumed_run.id}']")
    ready(page, "run")
    assert str(site.demo.resumed_run.id) in page.inner_text("main")


def node_position(page: Any, node_id: str) -> tuple[float, float]:
    """Where node ``node_id`` of the drawn graph is in the viewport (scrolled into it)."""
    page.locator("#graph").scroll_into_view_if_needed()
    # Cytoscape caches where its container is: let it see the scroll before a click
    page.evaluate("() => { window.lineageGraph.resize(); return new Promise(done => "
                  "requestAnimationFrame(() => requestAnimationFrame(() => done(null)))); }")
    box = page.query_selector("#graph").bounding_box()
    at = page.evaluate("id => window.lineageGraph.getElementById(id).renderedPosition()", node_id)
    return box["x"] + at["x"], box["y"] + at["y"]


def test_lineage_graph_leads_from_a_checkpoint_to_its_run_and_dataset(page: Any, site: Site) -> None:
    checkpoint = site.demo.checkpoints[-1]
    route = f"/artifacts/{checkpoint.id}?direction=up&depth=3"
    log_in(page, site, route, "artifact")
    assert page.inner_text("#checksum").startswith("sha256:")
    ids = page.evaluate("window.lineageGraph.nodes().map(n => n.id())")
    resumed, dataset = str(site.demo.resumed_run.id), str(site.demo.dataset.id)
    assert resumed in ids and dataset in ids
    shoot(page, "artifact-lineage")
    page.mouse.click(*node_position(page, resumed))
    page.wait_for_url(f"**#/runs/{resumed}")
    ready(page, "run")
    page.go_back()
    ready(page, "artifact")
    page.mouse.click(*node_position(page, dataset))
    page.wait_for_url(f"**#/artifacts/{dataset}")
    ready(page, "artifact")
    assert "dataset" in page.inner_text("h1")
    # zoom and pan work on the drawn graph (the calls return nothing: Cytoscape's core is huge)
    page.evaluate("() => { window.lineageGraph.zoom(2); window.lineageGraph.panBy({x: 40, y: 9}); }")
    assert page.evaluate("() => [window.lineageGraph.zoom(), window.lineageGraph.pan().y]")[0] == 2


def test_as_of_brings_a_retired_checkpoint_back(page: Any, site: Site) -> None:
    retired = next(view for view in site.demo.checkpoint_states if view.status == "retired")
    log_in(page, site, "/artifacts?type=checkpoint&status=live", "artifacts")
    assert str(retired.id)[:8] not in page.inner_text("#artifacts")
    shoot(page, "artifacts")
    rows = page.evaluate(f"""fetch('/v1/audit?subject={retired.id}', {{headers: {{Authorization:
        'Bearer ' + sessionStorage.getItem('lineage.token')}}}}).then(r => r.json())""")
    recorded = {row["kind"]: datetime.fromisoformat(row["recorded_at"]) for row in rows}
    registered, retired_at = recorded["artifact.registered"], recorded["artifact.retired"]
    between = registered + (retired_at - registered) / 2  # the registry then: registered, live
    between = between.replace(microsecond=between.microsecond // 1000 * 1000)  # the input's
    assert registered < between < retired_at
    local = between.replace(tzinfo=None).isoformat(timespec="milliseconds")
    page.fill("#artifact-filters input[name=as_of]", local)
    page.click("#artifact-filters button[type=submit]")
    page.wait_for_selector("#registry-when:has-text('the registry as of')")
    ready(page, "artifacts")
    assert str(retired.id)[:8] in page.inner_text("#artifacts")
    shoot(page, "artifacts-as-of")
    assert abs(datetime.fromisoformat(page.url.split("as_of=")[1].split("&")[0]
                                      .replace("%3A", ":")) - between) < timedelta(seconds=1)


def test_audit_page_searches_and_pages(page: Any, site: Site) -> None:
    log_in(page, site, f"/audit?subject={site.demo.failed_run.id}", "audit")
    text = page.inner_text("#audit")
    assert "run.started" in text and "run.failure" in text
    shoot(page, "audit")
    visit(page, site, "/audit?kind=checkpoint", "audit")
    kinds = page.eval_on_selector_all("#audit tbody tr td:nth-child(4)",
                                      "cells => cells.map(c => c.innerText)")
    assert kinds and all("checkpoint" in kind for kind in kinds)
    visit(page, site, "/audit?actor=nobody-at-all", "audit")
    assert "nothing matches" in page.inner_text("#audit")


def test_a_large_fan_of_alike_nodes_is_drawn_as_one_group(page: Any, site: Site) -> None:
    """The graph page's grouping (graph.js ``collapsed``) on a run with 30 checkpoints: one
    group node with the run's edge; every node again with ``expand=1``."""
    log_in(page, site, "/audit?kind=nothing-at-all", "audit")
    ids = [f"00000000-0000-4000-8000-{k:012d}" for k in range(32)]
    graph = {"root": {"id": ids[0]}, "nodes": [
        {"id": ids[0], "type": "artifact", "depth": 0, "found": True, "artifact_type": "dataset"},
        {"id": ids[1], "type": "trace", "depth": 1, "found": True, "label": "run r"},
        *({"id": i, "type": "artifact", "depth": 2, "found": True, "artifact_type": "checkpoint",
           "step": k} for k, i in enumerate(ids[2:]))],
        "edges": [{"id": f"e{k}", "upstream_id": ids[1] if k else ids[0],
                   "downstream_id": ids[k + 1], "relationship": "produces"} for k in range(31)]}
    drawn = page.evaluate("graph => import('/ui/js/graph.js').then(g => g.collapsed(graph))", graph)
    assert drawn["hidden"] == 30 and len(drawn["nodes"]) == 3 and len(drawn["edges"]) == 2
    group = next(node for node in drawn["nodes"] if node["type"] == "group")
    assert group["count"] == 30 and group["depth"] == 2 and "30 checkpoints" in group["label"]
    route = f"/artifacts/{site.demo.dataset.id}?direction=down&depth=1"
    visit(page, site, route, "artifact")
    assert page.query_selector("#graph-groups") is None  # a small graph: every node drawn


def test_the_runs_table_follows_a_running_run(page: Any, site: Site) -> None:
    """A run still running (another tenant's, on the same store): the table refreshes itself
    and shows the steps logged after it was opened."""
    import lineage

    token = site.server.token("live-tenant", "watcher", ("read",))
    with lineage.Tracker(site.server.database, tenant_id="live-tenant") as tracker:
        run = tracker.start_run("live-run")
        run.log_step(1, {"loss": 1.0})
        tracker.flush()
        page.goto(site.page_url("/runs?status=running"))
        ready(page, "login")
        page.fill("#token", token)
        page.click("#login-form button[type=submit]")
        ready(page, "runs")
        page.wait_for_selector("#live")
        assert "live-run" in page.inner_text("#runs") and "running" in page.inner_text("#runs")
        for step in range(2, 43):
            run.log_step(step, {"loss": 1 / step})
        tracker.flush()
        page.wait_for_selector("#runs td.num:has-text('42')")  # refreshed, not reloaded
        assert page.url.endswith("#/runs?status=running")
        run.finish()
