"""The read-model commands of the CLI: trace, lineage, audit, artifacts filters, project."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import lineage
from lineage.cli.main import main
from tests.integration.test_read_models import record_corruption_scenario


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("LINEAGE_DATABASE_URL", raising=False)


@pytest.fixture
def recorded(tmp_path: Path) -> dict[str, Any]:
    db = str(tmp_path / "q.db")
    with lineage.Tracker(db, actor="alice") as tracker:
        data, run, checkpoints, new = record_corruption_scenario(tracker)
    return {"db": db, "data": data, "run": run, "checkpoints": checkpoints, "new": new}


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_trace_tree_and_json(recorded: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    run = str(recorded["run"].id)
    code, out, _ = cli(capsys, "--db", recorded["db"], "trace", run[:8])
    assert code == 0
    for text in (run, "superseded", "save checkpoint", "detect failure", "recover run",
                 "lost: steps 41-47", "steps 1-47"):
        assert text in out
    assert "\x1b[" not in out
    code, out, _ = cli(capsys, "--db", recorded["db"], "trace", run, "--json")
    graph = json.loads(out)
    assert set(graph) == {"trace", "spans", "artifacts", "edges", "metadata"}
    code, out, _ = cli(capsys, "--db", recorded["db"], "trace", run, "--json", "--format", "nested")
    assert json.loads(out)["trace_id"] == run


@pytest.mark.parametrize("fmt, marker", [("tree", "↑"), ("json", '"nodes"'), ("dot", "digraph lineage"),
                                         ("mermaid", "flowchart LR")])
def test_lineage_formats(recorded: dict[str, Any], capsys: pytest.CaptureFixture[str], fmt: str,
                         marker: str) -> None:
    last = str(recorded["checkpoints"][-1].id)
    code, out, _ = cli(capsys, "--db", recorded["db"], "lineage", last[:8], "--up", "--depth", "20",
                       "--format", fmt)
    assert code == 0 and marker in out
    assert str(recorded["data"].id)[:8] in out


def test_audit_filters(recorded: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    db, run = recorded["db"], str(recorded["run"].id)
    code, out, _ = cli(capsys, "--db", db, "audit", "--subject", run, "--kind", "recovery", "--json")
    rows = json.loads(out)
    assert [r["kind"] for r in rows] == ["run.recovery_started", "run.recovery_checkpoint_selected",
                                         "run.recovery_completed"]
    assert {r["actor"] for r in rows} == {"alice"}
    code, out, _ = cli(capsys, "--db", db, "audit", "--actor", "nobody")
    assert code == 0 and "no events" in out
    code, out, _ = cli(capsys, "--db", db, "audit", "--limit", "2")
    assert "more: --after" in out


def test_artifacts_filters_and_as_of(recorded: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    db = recorded["db"]
    code, out, _ = cli(capsys, "--db", db, "artifacts", "--alias", "latest", "--json")
    assert {a["id"] for a in json.loads(out)} == {str(recorded["checkpoints"][1].id),
                                                   str(recorded["checkpoints"][2].id)}
    code, out, _ = cli(capsys, "--db", db, "artifacts", "--as-of", "1", "--json")
    assert [a["id"] for a in json.loads(out)] == [str(recorded["data"].id)]
    code, out, _ = cli(capsys, "--db", db, "artifacts", "--as-of", "2000-01-01T00:00Z", "--json")
    assert json.loads(out) == []
    code, _, err = cli(capsys, "--db", db, "artifacts", "--as-of", "someday")
    assert code == 1 and "as_of" in err and "Traceback" not in err


def test_project_status_rebuild(recorded: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    db = recorded["db"]
    code, out, _ = cli(capsys, "--db", db, "project", "status", "--json")
    statuses = json.loads(out)
    assert {s["name"] for s in statuses} == {"traces", "registry", "edges", "audit", "step_metrics"}
    code, out, _ = cli(capsys, "--db", db, "project", "rebuild", "audit")
    assert code == 0 and "rebuilt audit" in out
    code, out, _ = cli(capsys, "--db", db, "project", "status", "--json")
    assert all(s["lag"] == 0 for s in json.loads(out))
    code, _, err = cli(capsys, "--db", db, "project", "rebuild", "nonsense")
    assert code == 1 and "unknown read model" in err


def test_runs_shows_the_newest_and_says_how_many_more(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "many.db")
    with lineage.Tracker(db) as tracker:
        for index in range(4):
            tracker.start_run(f"run-{index}", occurred_at=f"2026-01-0{index + 1}T00:00:00Z").finish()
    code, out, _ = cli(capsys, "--db", db, "runs", "--limit", "2")
    assert code == 0 and "run-3" in out and "run-2" in out and "run-1" not in out
    assert "the newest 2 of 4 runs" in out
    code, out, _ = cli(capsys, "--db", db, "runs", "--all")
    assert all(f"run-{i}" in out for i in range(4)) and "newest" not in out
    code, out, _ = cli(capsys, "--db", db, "runs", "--json", "--limit", "3")
    assert [r["name"] for r in json.loads(out)] == ["run-1", "run-2", "run-3"]
    code, _, err = cli(capsys, "--db", db, "runs", "--limit", "0")
    assert code == 2 and "--limit" in err
