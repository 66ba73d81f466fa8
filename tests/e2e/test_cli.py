"""The ``lineage`` command end to end: the demo into a fresh SQLite file, then the queries.

Every test has its own database under tmp_path. Most call ``lineage.cli.main.main`` in-process
(capsys); one runs the installed console script to prove the entry point works.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse
from uuid import uuid4

import pytest

import lineage
from lineage.cli.main import main
from lineage.demo.scenario import run_demo

STEPS = 200  # checkpoints every 25 (keep_last=2); failure at 113; resume from 100
RECOVERY = ["FailureDetected", "RecoveryStarted", "RecoveryCheckpointSelected", "StepsLost",
            "RecoveryCompleted", "Finished"]
RETIRED_STEPS = [25, 50, 125, 150]  # older than the newest two, and neither best nor resumed from
ANSI = "\x1b["


@dataclass(frozen=True)
class Demo:
    db: str
    directory: Path


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No colour forced, no width or database chosen by whoever runs the tests."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS", "LINEAGE_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Demo:
    db, directory = str(tmp_path / "d.db"), tmp_path / "demo"
    assert main(["--db", db, "demo", "--dir", str(directory), "--steps", str(STEPS)]) == 0
    capsys.readouterr()
    return Demo(db, directory)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def strict_json(text: str) -> Any:
    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def runs_json(capsys: pytest.CaptureFixture[str], db: str) -> list[dict[str, Any]]:
    code, out, _ = run_cli(capsys, "--db", db, "runs", "--json")
    assert code == 0
    return strict_json(out)  # type: ignore[no-any-return]


def local_file(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


# -- the demo's records --------------------------------------------------------------------------


def test_runs_json_shows_the_failed_run_superseded_by_the_resumed_one(
        demo: Demo, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = runs_json(capsys, demo.db)

    assert (first["status"], second["status"]) == ("superseded", "completed")
    assert second["resumed_from"] == first["id"]
    assert first["superseded_by"] == second["id"]
    assert first["corrupted"] is True and first["failures"] == 1
    assert (first["last_step"], second["start_step"], second["last_step"]) == (113, 100, STEPS)
    assert second["steps"] == STEPS - 100


def test_runs_status_filter_and_db_option_after_the_subcommand(
        demo: Demo, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "runs", "--status", "completed", "--json", "--db", demo.db)

    assert code == 0
    assert [run["status"] for run in strict_json(out)] == ["completed"]


def test_run_show_lists_the_failure_and_recovery_events_in_order(
        demo: Demo, capsys: pytest.CaptureFixture[str]) -> None:
    failed = runs_json(capsys, demo.db)[0]

    code, out, _ = run_cli(capsys, "--db", demo.db, "runs", "show", failed["id"][:8], "--json")

    assert code == 0
    shown = strict_json(out)
    assert shown["run"]["id"] == failed["id"]
    events = shown["events"]
    positions = [event["position"] for event in events]
    assert positions == sorted(positions)
    own = [event["position"] for event in events if event["stream"] == "run"]
    assert len(set(own)) == len(own)  # steps of one block share its position; events do not
    run_versions = [e["originator_version"] for e in events if e["stream"] == "run"]
    assert run_versions == list(range(1, len(run_versions) + 1))  # no run event left out
    types = [event["type"] for event in events]
    assert types[0] == "Started"
    assert [t for t in types if t in RECOVERY] == RECOVERY
    assert types[-len(RECOVERY):] == RECOVERY
    assert shown["steps"] == {"total": 113, "shown": 10, "elided": 103, "elided_steps": [6, 108]}
    steps = [e["step"] for e in events if e["type"] == "StepRecorded"]
    assert steps == [1, 2, 3, 4, 5, 109, 110, 111, 112, 113]
    failure = events[types.index("FailureDetected")]
    assert (failure["signal"], failure["corrupted"], failure["step"]) == ("tinker.corrupted",
                                                                          True, 113)
    lost = events[types.index("StepsLost")]
    assert (lost["first_step"], lost["last_step"], lost["count"]) == (101, 113, 13)
    assert shown["run"]["job_status"] == "superseded"


def test_run_show_of_the_resumed_run_starts_after_the_checkpoint(
        demo: Demo, capsys: pytest.CaptureFixture[str]) -> None:
    failed, resumed = runs_json(capsys, demo.db)

    code, out, _ = run_cli(capsys, "--db", demo.db, "runs", "show", resumed["id"], "--json",
                           "--steps", "1")

    assert code == 0
    events = strict_json(out)["events"]
    link = next(e for e in events if e["type"] == "ResumedFrom")
    assert (link["previous_run_id"], link["step"], link["optimizer_restored"]) == (
        failed["id"], 100, True)
    assert [e["step"] for e in events if e["type"] == "StepRecorded"] == [101, STEPS]
    assert events[-1]["type"] == "Finished" and events[-1]["status"] == "completed"


def test_checkpoint_artifacts_are_real_files_with_the_recorded_sha256(
        demo: Demo, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--db", demo.db, "artifacts", "--json", "--type", "checkpoint")

    assert code == 0
    checkpoints = strict_json(out)
    assert [c["step"] for c in checkpoints] == [25, 50, 75, 100, 125, 150, 175, 200]
    for checkpoint in checkpoints:
        path = local_file(checkpoint["uri"])
        assert path.is_relative_to(demo.directory) and path.suffix == ".safetensors"
        assert checkpoint["includes_optimizer"] is True and checkpoint["format"] == "safetensors"
        if checkpoint["step"] in RETIRED_STEPS:  # retention: retired, then the file deleted
            assert checkpoint["status"] == "retired" and not path.exists()
            continue
        assert checkpoint["status"] == "live"
        data = path.read_bytes()
        assert len(data) == checkpoint["size"]
        assert hashlib.sha256(data).hexdigest() == checkpoint["checksum"]


def test_artifacts_of_one_run_by_prefix_and_show(demo: Demo,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    failed, resumed = runs_json(capsys, demo.db)

    code, out, _ = run_cli(capsys, "--db", demo.db, "artifacts", "--run", resumed["id"][:6],
                           "--json")
    assert code == 0
    produced = strict_json(out)
    assert {a["run_id"] for a in produced} == {resumed["id"]}
    assert [a["step"] for a in produced] == [125, 150, 175, 200]

    code, out, _ = run_cli(capsys, "--db", demo.db, "artifacts", "show", produced[0]["id"],
                           "--json")
    assert code == 0
    # the resumed run's first checkpoint derives from the checkpoint it resumed from
    assert strict_json(out)["parents"] == [failed["checkpoints"][-1]["artifact_id"]]


def test_human_output_has_the_ids_and_no_ansi_codes_when_not_a_tty(
        demo: Demo, capsys: pytest.CaptureFixture[str]) -> None:
    failed, resumed = runs_json(capsys, demo.db)

    outputs = [run_cli(capsys, "--db", demo.db, *argv)[1] for argv in (
        ["runs"], ["runs", "show", failed["id"]], ["artifacts"], ["artifacts", "--type", "model"])]

    assert failed["id"] in outputs[0] and resumed["id"] in outputs[0]
    assert "FailureDetected" in outputs[1] and "RecoveryCompleted" in outputs[1]
    assert "step events elided" in outputs[1]
    assert "checkpoint" in outputs[2] and "model" in outputs[3]
    assert all(ANSI not in output for output in outputs)


def test_run_demo_records_the_lost_steps_and_resumes_exactly(tmp_path: Path) -> None:
    result = run_demo(str(tmp_path / "d.db"), tmp_path / "demo", steps=120)

    assert result.failure_step == 68
    assert result.recovery_checkpoint.step == 50
    assert result.lost_steps == list(range(51, 69))
    with lineage.Tracker(str(tmp_path / "d.db")) as tracker:
        lost = {s.step: s.metrics for s in tracker.steps(result.failed_run.id)}
        redone = {s.step: s.metrics for s in tracker.steps(result.resumed_run.id)}
    # weights and momentum came back from the safetensors file: the same losses again
    for step in result.lost_steps:
        assert redone[step]["loss"] == pytest.approx(lost[step]["loss"], rel=1e-5)
    assert result.final_eval["val_accuracy"] > 0.8


# -- the console script --------------------------------------------------------------------------


def test_console_script_runs_the_demo_and_prints_plain_text(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("lineage")
    env = {k: v for k, v in os.environ.items()
           if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "LINEAGE_DATABASE_URL")}
    db = str(tmp_path / "d.db")

    demo = subprocess.run([str(script), "demo", "--dir", str(tmp_path / "demo"), "--steps",
                           "120", "--db", db], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300, check=False)
    listed = subprocess.run([str(script), "--db", db, "runs", "--json"], capture_output=True,
                            text=True, env=env, timeout=120, check=False)

    assert demo.returncode == 0, demo.stderr
    assert listed.returncode == 0, listed.stderr
    ids = [run["id"] for run in strict_json(listed.stdout)]
    assert len(ids) == 2 and all(run_id in demo.stdout for run_id in ids)
    assert f"lineage --db {db} runs show {ids[0]}" in demo.stdout
    assert "Retention: keep_last=2 retired 1 of 5 checkpoints (steps 75)" in demo.stdout
    assert "retired, file deleted" in demo.stdout and "Lost steps: 51-68" in demo.stdout
    assert ANSI not in demo.stdout and demo.stderr == ""


# -- errors --------------------------------------------------------------------------------------


def test_unknown_run_is_one_line_on_stderr_and_exit_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "d.db")
    lineage.Tracker(db).close()  # an empty database
    missing = str(uuid4())

    for argv in (["runs", "show", missing], ["runs", "show", "abc123"],
                 ["artifacts", "--run", missing]):
        code, out, err = run_cli(capsys, "--db", db, *argv)
        assert code == 1 and out == ""
        assert err.startswith("lineage: error: run ") and "not found" in err
        assert err.count("\n") == 1 and "Traceback" not in err


def test_an_ambiguous_or_malformed_prefix_is_refused(
        demo: Demo, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "--db", demo.db, "runs", "show", "not-a-run!")
    assert code == 1 and "is not a run id" in err

    code, _, err = run_cli(capsys, "--db", demo.db, "artifacts", "show", "-")
    assert code == 1 and err.startswith("lineage: error: ")


@pytest.mark.parametrize("url, message", [
    ("notascheme://host/db", "unsupported database"),
    ("/tmp/surely-no-lineage-database-here.db", "no lineage database at"),
    ("postgresql+psycopg://postgres@127.0.0.1:1/nowhere", "connection refused by 127.0.0.1:1"),
    ("http://[::1", "is not a database URL"),
    ("sqlite://", "SQLite needs a file"),
    ("/no/such/directory/x.db", "no lineage database at"),
])
def test_a_bad_database_url_exits_1_with_a_clear_message(
        url: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "--db", url, "runs")

    assert code == 1 and out == ""
    assert err.startswith("lineage: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("argv", [[], ["runs", "--status", "bogus"], ["demo", "--steps", "5"],
                                  ["artifacts", "--type", "weights"], ["runs", "show"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, *argv)

    assert code == 2 and "usage: lineage" in err


def test_database_defaults_to_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "env.db"
    monkeypatch.setenv("LINEAGE_DATABASE_URL", str(db))
    with lineage.Tracker() as tracker, tracker.start_run("from-env") as run:
        run.log_step(1, {"loss": float("nan"), "grad_norm": float("inf"), "x": -float("inf")})

    code, out, _ = run_cli(capsys, "runs", "--json")

    assert code == 0
    (only,) = strict_json(out)
    assert only["name"] == "from-env"
    assert only["last_metrics"] == {"loss": "NaN", "grad_norm": "Infinity", "x": "-Infinity"}
    code, out, _ = run_cli(capsys, "runs", "show", only["id"][:4], "--json")
    assert strict_json(out)["events"][1]["metrics"]["loss"] == "NaN"
