"""The background exporter in a training process (``Tracker(export_otlp=True)``): spans flow to
a real receiver, and an unreachable or stalled collector never blocks or breaks training."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import lineage
from lineage.bootstrap import open_positions, open_store
from lineage.cli.main import main
from lineage.errors import CollectorUnavailableError
from tests.otlp_receiver import HttpReceiver, free_port
from tests.otlp_scenario import deterministic_tracker, record_scenario

TRAIN = textwrap.dedent("""
    import sys
    import lineage

    with lineage.Tracker(sys.argv[1], export_otlp=True) as tracker:
        with tracker.start_run("background", job={"model": "tiny"}) as run:
            for step in range(1, 501):
                run.log_step(step, {"loss": 1.0 / step})
            run.save_checkpoint("s3://bucket/ckpt-500", step=500, checksum="sha256:" + "e" * 64)
            run.log_eval(500, {"val_loss": 0.25})
    print("trained", run.id)
""")


def test_spans_flow_from_a_training_process_to_the_collector(
        tmp_path: Path, make_tracker: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = HttpReceiver().start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base)
    monkeypatch.setenv("LINEAGE_OTLP_STRICT", "1")  # a failure would raise at close()
    monkeypatch.delenv("LINEAGE_OTLP_EXPORT", raising=False)
    url = str(tmp_path / "lineage.db")
    tracker, clock = deterministic_tracker(url, make_tracker, export_otlp=None)  # auto: on
    assert tracker._otlp is not None and tracker._otlp.running
    record_scenario(tracker, clock)
    tracker.close()  # drains: every span of what it wrote has gone out
    names = sorted(span.name for span in receiver.spans())
    assert names.count("train run") == 2 and names.count("train steps") == 2 and len(names) == 11
    store = open_store(url)
    assert open_positions(url).get("otlp") == store.max_position()
    store.close()
    receiver.stop()


def test_a_stalled_collector_does_not_block_training_or_closing(
        tmp_path: Path, make_tracker: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = HttpReceiver().start()
    receiver.stall_from(0)  # every request is received and never answered
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("LINEAGE_OTLP_DRAIN_S", "0.2")
    url = str(tmp_path / "lineage.db")
    tracker = make_tracker(url, export_otlp=True)
    with tracker.start_run("stalled") as run:
        for step in range(1, 201):
            run.log_step(step, {"loss": 1.0})
    tracker.close()  # returns although the collector never answers
    receiver.stop()
    assert make_tracker(url, export_otlp=False).run(run.id).steps == 200


def test_an_unreachable_collector_leaves_training_alone_and_loses_nothing(tmp_path: Path) -> None:
    db = str(tmp_path / "lineage.db")
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LINEAGE_"))}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"  # nothing listens
    done = subprocess.run([sys.executable, str(script), db], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("trained")
    assert done.stderr.count("OTLP export is failing") == 1, done.stderr  # logged once

    receiver = HttpReceiver().start()  # the collector is back: the CLI sends what was left
    code = main(["--db", db, "export", "otlp", "--endpoint", receiver.endpoint])
    assert code == 0
    names = [span.name for span in receiver.spans()]
    assert names.count("train steps") == 5 and names.count("train run") == 1  # 500 steps
    assert {"save checkpoint", "evaluate"} <= set(names)
    receiver.stop()


def test_strict_mode_makes_background_failures_loud(
        tmp_path: Path, make_tracker: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("LINEAGE_OTLP_STRICT", "1")
    tracker = lineage.Tracker(str(tmp_path / "lineage.db"))
    with tracker.start_run("loud") as run:
        run.log_step(1, {"loss": 1.0})
    with pytest.raises(CollectorUnavailableError, match="unavailable"):
        tracker.close()  # the events are committed all the same
    assert make_tracker(str(tmp_path / "lineage.db"), export_otlp=False).run(run.id).steps == 1
