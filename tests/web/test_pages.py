"""The web pages in a real browser (Debian's Chromium through Playwright) on the demo's data:
each page opens and shows the demo's runs and artifacts, the lineage graph leads from a
checkpoint to its run and dataset, an "as of" time brings a retired checkpoint back, and no
page shows data without a token. Screenshots go to tests/artifacts/web/."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.web.conftest import JAEGER, Site, shoot


def log_in(page: Any, site: Site, route: str, name: str) -> None:
    """Open ``route`` logged out, log in on the page it sends to, land on ``route``."""
    page.goto(site.page_url(route))
    ready(page, "login")
    page.fill("#token", site.read_token)
    page.click("#login-form button[type=submit]")
    ready(page, name)


def ready(page: Any, name: str) -> None:
    """Page ``name`` drawn for the URL the browser is at now (not the page before a click)."""
    page.wait_for_function(
        "name => document.body.dataset.page === name && document.body.dataset.ready === '1' "
        "&& document.body.dataset.drawn === location.hash", arg=name)


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
    page.wait_for_selector(f"main code:has-text('{site.demo.resumed_run.id}')")  # the new page
    ready(page, "run")
    assert str(site.demo.resumed_run.id) in page.inner_text("main")


def node_position(page: Any, node_id: str) -> tuple[float, float]:
    """Where node ``node_id`` of the drawn graph is in the viewport (scrolled into it)."""
    page.locator("#graph").scroll_into_view_if_needed()
    box = page.query_selector("#graph").bounding_box()
    at = page.evaluate("id => window.lineageGraph.renderedPosition(id)", node_id)
    return box["x"] + at["x"], box["y"] + at["y"]


def next_frame(page: Any) -> None:
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => done(null)))")


def test_lineage_graph_leads_from_a_checkpoint_to_its_run_and_dataset(page: Any, site: Site) -> None:
    checkpoint = site.demo.checkpoints[-1]
    route = f"/artifacts/{checkpoint.id}?direction=up&depth=3"
    log_in(page, site, route, "artifact")
    assert page.inner_text("#checksum").startswith("sha256:")
    ids = page.evaluate("window.lineageGraph.ids()")
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
    # the wheel zooms around the pointer (the node under it stays put), a drag pans, and
    # neither is a click
    x, y = node_position(page, str(site.demo.dataset.id))
    zoomed = page.evaluate("window.lineageGraph.zoom()")
    page.mouse.move(x, y)
    page.mouse.wheel(0, -400)
    next_frame(page)
    assert page.evaluate("window.lineageGraph.zoom()") > zoomed * 1.5
    assert node_position(page, str(site.demo.dataset.id)) == pytest.approx((x, y), abs=1)
    before = page.evaluate("window.lineageGraph.pan()")
    page.mouse.move(x + 5, y + 60)
    page.mouse.down()
    page.mouse.move(x + 65, y + 80, steps=4)
    page.mouse.up()
    after = page.evaluate("window.lineageGraph.pan()")
    assert (after["x"] - before["x"], after["y"] - before["y"]) == pytest.approx((60, 20), abs=1)
    assert page.url.endswith(f"#/artifacts/{dataset}")


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


def test_an_artifact_page_shows_every_alias_that_pointed_at_it(page: Any, site: Site) -> None:
    """The demo's ``best`` alias moved on from an early checkpoint: its page still lists it,
    with when it moved away and to where."""
    moves = site.server.http.get("/v1/aliases/best", headers={
        "Authorization": f"Bearer {site.read_token}"}).json()
    left, then = next((move, after) for move, after in itertools.pairwise(moves)
                      if move["alias_id"] == after["alias_id"])  # a move, and the next one
    log_in(page, site, f"/artifacts/{left['artifact_id']}", "artifact")
    text = page.inner_text("main")
    assert "best" in text and "still here" not in text
    assert page.locator(f"main table a[href='#/artifacts/{then['artifact_id']}']").count() >= 1
    shoot(page, "artifact-aliases")


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
