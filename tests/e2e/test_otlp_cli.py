"""``lineage demo`` with an OTLP endpoint set, and ``lineage export otlp`` / ``export status``,
against a real OTLP/HTTP receiver on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lineage.cli.main import main
from tests.otlp_receiver import HttpReceiver, free_port
from tests.otlp_scenario import deterministic_tracker, record_scenario


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("OTEL_", "LINEAGE_OTLP_")) or name in ("LINEAGE_DATABASE_URL", "COLUMNS"):
            monkeypatch.delenv(name)


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    server = HttpReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def db(tmp_path: Path, make_tracker: Callable[..., Any]) -> tuple[str, Any]:
    url = str(tmp_path / "lineage.db")
    tracker, clock = deterministic_tracker(url, make_tracker)
    scenario = record_scenario(tracker, clock)
    tracker.close()
    return url, scenario


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_demo_sends_its_runs_while_recording(tmp_path: Path, receiver: HttpReceiver,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base)
    db = str(tmp_path / "demo.db")
    assert run(capsys, "--db", db, "demo", "--dir", str(tmp_path / "d"), "--steps", "100")[0] == 0
    spans = receiver.spans()
    names = [span.name for span in spans]
    assert names.count("train run") == 2 and {"save checkpoint", "evaluate", "detect failure",
                                              "recover run", "train steps"} <= set(names)
    assert len({span.trace_id for span in spans}) == 2
    code, out, _ = run(capsys, "--db", db, "export", "status", "--json")
    [row] = json.loads(out)
    assert (row["name"], row["lag"]) == ("otlp", 0)
    code, out, _ = run(capsys, "--db", db, "export", "otlp")  # nothing new to send
    assert code == 0 and "0 spans" in out and len(receiver.spans()) == len(spans)


def test_export_backfills_then_from_start_resends_the_same_bytes(
        db: tuple[str, Any], receiver: HttpReceiver, capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = db
    code, out, err = run(capsys, "--db", url, "export", "otlp", "--endpoint", receiver.endpoint)
    assert code == 0, err
    assert f"exported to {receiver.endpoint}: 11 spans in 1 request(s)" in out
    code, out, _ = run(capsys, "--db", url, "export", "otlp", "--from-start", "--json",
                       "--endpoint", receiver.endpoint)
    summary = json.loads(out)
    assert (code, summary["spans"], summary["tracked"]) == (0, 11, True)
    assert receiver.raw[0] == receiver.raw[1]


def test_dry_run_prints_otlp_json_and_moves_nothing(db: tuple[str, Any],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    url, scenario = db
    code, out, err = run(capsys, "--db", url, "export", "otlp", "--dry-run")
    assert code == 0 and "printed: 11 spans" in err
    [line] = out.splitlines()
    spans = json.loads(line)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert {s["traceId"] for s in spans} == {scenario.failed_run.hex, scenario.resumed_run.hex}
    code, out, _ = run(capsys, "--db", url, "export", "otlp", "--dry-run", "--run",
                       str(scenario.resumed_run))
    spans = [s for line in out.splitlines()
             for s in json.loads(line)["resourceSpans"][0]["scopeSpans"][0]["spans"]]
    assert {s["traceId"] for s in spans} == {scenario.resumed_run.hex} and len(spans) == 4
    assert run(capsys, "--db", url, "export", "status")[1].startswith("nothing exported yet")


def test_bad_configuration_and_an_unreachable_collector_are_clear_errors(
        db: tuple[str, Any], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = db
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "127.0.0.1:4318")
    code, _, err = run(capsys, "--db", url, "export", "otlp")
    assert code == 1 and "OTEL_EXPORTER_OTLP_ENDPOINT='127.0.0.1:4318' is invalid" in err
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("LINEAGE_OTLP_RETRY_FOR_S", "0.3")
    code, _, err = run(capsys, "--db", url, "export", "otlp")
    assert code == 1 and "collector unavailable" in err
    assert run(capsys, "--db", url, "export", "status")[1].startswith("nothing exported yet")


def _ctrl_c_default() -> None:
    """In the child: Ctrl-C as a terminal gives it, also when this suite runs as a background
    job (whose children inherit SIGINT ignored, and Python then installs no handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_follow_keeps_exporting_until_interrupted(db: tuple[str, Any], receiver: HttpReceiver,
                                                  tmp_path: Path) -> None:
    url, _ = db
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.base, "LINEAGE_OTLP_POLL_S": "0.05"}
    follower = subprocess.Popen([str(Path(sys.executable).with_name("lineage")), "--db", url,
                                 "export", "otlp", "--follow"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=_ctrl_c_default)
    try:
        receiver.wait_for_spans(9)
        time.sleep(0.2)  # let it go idle (poll) before it is interrupted
    finally:
        follower.send_signal(signal.SIGINT)
        out, err = follower.communicate(timeout=30)
    assert follower.returncode == 0, err
    assert "following" in out and "11 spans" in out
