"""An exporter killed mid-batch (SIGKILL, after the collector got a request but before the
position moved) loses nothing, and re-sends exactly that request, byte for byte."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lineage.bootstrap import open_positions, otlp_runner, otlp_transport
from lineage.config.otlp import OtlpSettings
from tests.otlp_receiver import HttpReceiver
from tests.otlp_scenario import deterministic_tracker, record_scenario

SCENARIO_SPANS = 11  # as in test_otlp_export


@pytest.mark.slow
def test_an_exporter_killed_mid_batch_resends_that_batch_identically(
        tmp_path: Path, make_tracker: Callable[..., Any]) -> None:
    url = str(tmp_path / "lineage.db")
    tracker, clock = deterministic_tracker(url, make_tracker)
    record_scenario(tracker, clock)
    tracker.close()
    receiver = HttpReceiver().start()
    receiver.stall_from(2)  # the third request is received, then never answered
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.base,
           "LINEAGE_OTLP_BATCH_SPANS": "3", "OTEL_EXPORTER_OTLP_TIMEOUT": "60000"}
    script = Path(sys.executable).with_name("lineage")
    exporter = subprocess.Popen([str(script), "--db", url, "export", "otlp"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while len(receiver.raw) < 3 and exporter.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(receiver.raw) == 3, exporter.stderr.read() if exporter.stderr else ""
    finally:
        exporter.kill()  # SIGKILL: no cleanup, no position write
        exporter.wait(30)
        receiver.release()
    positions = open_positions(url)
    tracked = positions.get("otlp")
    store = make_tracker(url, export_otlp=False).store
    assert 0 < tracked < store.max_position()

    settings = OtlpSettings.load({}, endpoint=receiver.endpoint, batch_spans=3)
    runner = otlp_runner(store, positions, settings, otlp_transport(settings))
    runner.export_to_head()
    runner.transport.close()
    receiver.stop()

    assert receiver.raw[3] == receiver.raw[2]  # the interrupted request, re-sent unchanged
    spans: dict[bytes, bytes] = {}
    for span in receiver.spans():
        assert spans.setdefault(span.span_id, span.SerializeToString()) == span.SerializeToString()
    assert len(spans) == SCENARIO_SPANS and len(receiver.spans()) == SCENARIO_SPANS + 3
    assert positions.get("otlp") == store.max_position()
