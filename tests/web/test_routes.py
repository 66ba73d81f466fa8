"""The read routes the web pages add (run table, run overview, UI settings) and how the pages
themselves are served, over HTTP on the demo's data (no browser)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from lineage.adapters.server.web import STATIC
from tests.web.conftest import JAEGER, Site


def get(site: Site, path: str, **params: object) -> httpx.Response:
    return site.server.http.get(path, params=params,
                                headers={"Authorization": f"Bearer {site.read_token}"})


def test_run_table_filters_pages_and_counts(site: Site) -> None:
    failed, resumed = str(site.demo.failed_run.id), str(site.demo.resumed_run.id)
    page = get(site, "/v1/run-table").json()
    assert page["total"] == 2 and [r["id"] for r in page["runs"]] == [resumed, failed]
    assert page["runs"][0]["last_metrics"]["loss"] > 0
    cases = {(("name", "demo-s"),): [resumed, failed], (("name", "%"),): [],
             (("tag", "scenario=corruption-recovery"),): [failed],
             (("tag", "resumed=true"),): [resumed],
             (("tag", "demo"),): [resumed, failed], (("tag", "demo=false"),): [],
             (("status", "completed"),): [resumed],
             (("since", "2999-01-01T00:00:00Z"),): [],
             (("until", site.demo.failed_run.started_at), ("status", "superseded")): [failed],
             (("limit", 1), ("offset", 1)): [failed]}
    for filters, expected in cases.items():
        found = get(site, "/v1/run-table", **dict(filters)).json()
        assert [r["id"] for r in found["runs"]] == expected, filters
    assert get(site, "/v1/run-table", limit=1).json()["total"] == 2


@pytest.mark.parametrize(("params", "field"), [({"status": "bogus"}, "status"),
                                               ({"since": "yesterday-ish"}, "since"),
                                               ({"tag": "=x"}, "tag"), ({"limit": 0}, "limit")])
def test_run_table_refuses_bad_filters_naming_the_field(site: Site, params: dict[str, object],
                                                        field: str) -> None:
    response = get(site, "/v1/run-table", **params)
    assert response.status_code == 400 and field in response.text


def test_run_overview_has_marks_chain_and_metric_names(site: Site) -> None:
    failed = site.demo.failed_run
    overview = get(site, f"/v1/runs/{failed.id}/overview").json()
    assert overview["run"]["id"] == str(failed.id)
    kinds = {mark["kind"] for mark in overview["marks"]}
    assert {"checkpoint", "evaluation", "failure"} <= kinds
    states = {m["artifact_status"] for m in overview["marks"] if m["kind"] == "checkpoint"}
    assert "retired" in states
    assert any("val_loss" in m["metrics"] for m in overview["marks"] if m["kind"] == "evaluation")
    chain = overview["chain"]
    assert [r["id"] for r in chain] == [str(failed.id), str(site.demo.resumed_run.id)]
    lost = chain[0]["lost_steps"]
    assert lost["count"] == len(site.demo.lost_steps) and lost["to_step"] == site.demo.failure_step
    assert get(site, f"/v1/runs/{site.demo.resumed_run.id}/overview").json()["chain"] == chain
    assert get(site, "/v1/ui-settings").json() == {"jaeger_url": JAEGER}


def test_the_pages_are_served_without_a_token_and_hold_no_data(site: Site) -> None:
    http = site.server.http
    home = http.get("/", follow_redirects=False)
    assert home.status_code in (302, 307) and home.headers["location"] == "/ui/"
    index = http.get("/ui/")
    assert index.status_code == 200 and "js/app.js" in index.text
    for module in sorted((STATIC / "js").glob("*.js")):  # generated: every module preloaded
        assert f'<link rel="modulepreload" href="js/{module.name}">' in index.text
    assert "default-src 'self'" in index.headers["content-security-policy"]
    for path in sorted(STATIC.rglob("*.js")):
        served = http.get(f"/ui/{path.relative_to(STATIC)}")
        assert served.status_code == 200 and "javascript" in served.headers["content-type"], path
        assert served.content == Path(path).read_bytes()
    assert http.get("/v1/run-table").status_code == 401
    assert http.get(f"/v1/runs/{site.demo.failed_run.id}/overview").status_code == 401
    assert http.get("/ui/../core.py").status_code == 404
    assert http.post("/ui/").status_code == 405 and http.put("/ui/index.html").status_code == 405
    assert http.head("/ui/").status_code == 200


def test_lineage_serve_takes_the_jaeger_url(tmp_path: Path) -> None:
    """The real command line: ``lineage serve --jaeger-url`` reaches the pages' settings."""
    from tests.server.harness import Server

    server = Server(str(tmp_path / "serve.db"), tmp_path / "serve.log",
                    extra=("--jaeger-url", "https://jaeger.example/ui")).start()
    try:
        token = server.token("t", "reader", ("read",))
        assert server.get("/v1/ui-settings", token).json() == {
            "jaeger_url": "https://jaeger.example/ui"}
        assert server.get("/v1/ui-settings", None).status_code == 401
        assert "js/app.js" in server.get("/ui/", None).text
    finally:
        server.stop()


def test_a_jaeger_url_that_is_not_http_is_refused() -> None:
    from lineage.adapters.server.web import WebSettings
    from lineage.errors import ValidationError

    for bad in ("javascript:alert(1)", "jaeger:16686", "http://x/\"><script>"):
        with pytest.raises(ValidationError, match="jaeger_url"):
            WebSettings(jaeger_url=bad)
    assert WebSettings(jaeger_url="https://j.example/").jaeger_url == "https://j.example/"


def test_lineage_layout_places_every_walked_node_once(site: Site) -> None:
    dataset = str(site.demo.dataset.id)
    walk = get(site, f"/v1/lineage/{dataset}", direction="down", depth=3).json()
    layout = get(site, f"/v1/lineage/{dataset}/layout", direction="down", depth=3).json()
    ids = [node["id"] for node in layout["nodes"]]
    assert sorted(ids) == sorted(node["id"] for node in walk["nodes"])
    assert ids[layout["root"]] == dataset
    assert sorted((ids[up], ids[down], why) for up, down, why in layout["edges"]) == sorted(
        (e["upstream_id"], e["downstream_id"], e["relationship"]) for e in walk["edges"])
    assert len({(node["x"], node["y"]) for node in layout["nodes"]}) == len(ids)
    for a in layout["nodes"]:  # deeper layers to the right
        assert all(a["x"] < b["x"] for b in layout["nodes"] if b["depth"] > a["depth"])
    runs = {str(site.demo.failed_run.id), str(site.demo.resumed_run.id)}
    assert {node["href"] for node in layout["nodes"] if node["kind"] == "run"} == {
        f"#/runs/{run}" for run in runs}
    assert get(site, f"/v1/lineage/{dataset}/layout", direction="down", depth=3).json() == layout
    assert get(site, f"/v1/lineage/{dataset}/layout", direction="sideways").status_code == 400
    other = site.server.token("another-tenant", "reader", ("read",))
    refused = site.server.http.get(f"/v1/lineage/{dataset}/layout",
                                   headers={"Authorization": f"Bearer {other}"})
    assert refused.status_code == 404


def test_alias_history_of_an_artifact_pairs_every_move_to_and_from_it(site: Site) -> None:
    """Recomputed from the alias's whole history (``/v1/aliases/best``): each time ``best``
    came to an artifact is one period, closed by the next move (None while it is still there)."""
    moves = get(site, "/v1/aliases/best").json()  # one alias per run (scope)
    expected: dict[str, list[tuple[Any, ...]]] = {}
    for alias in {move["alias_id"] for move in moves}:
        own = [move for move in moves if move["alias_id"] == alias]
        for move, after in zip(own, [*own[1:], None], strict=True):
            expected.setdefault(move["artifact_id"], []).append(
                (move["moved_at"], move["previous_artifact_id"], after and after["moved_at"],
                 after and after["artifact_id"]))
    assert any(period[3] for periods in expected.values() for period in periods)  # moved on
    for artifact, periods in expected.items():
        found = get(site, f"/v1/artifacts/{artifact}/alias-history").json()
        assert [(p["pointed_at"], p["previous_artifact_id"], p["moved_away_at"], p["moved_to"])
                for p in found if p["name"] == "best"] == periods
    other = site.server.token("another-tenant", "reader", ("read",))
    refused = site.server.http.get(f"/v1/artifacts/{moves[0]['artifact_id']}/alias-history",
                                   headers={"Authorization": f"Bearer {other}"})
    assert refused.status_code == 404
    assert get(site, "/v1/artifacts/not-a-uuid/alias-history").status_code == 400
