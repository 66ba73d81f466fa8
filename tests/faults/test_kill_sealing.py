"""Fault injection for sealing (issue 14): a process appending steps and a process sealing
the same store are SIGKILLed at random moments, cycle after cycle; then ``verify`` finds no
damage (zero false positives), every seal is good, and sealing resumes where the last committed
seal left off (each row sealed once: the seals' sizes only grow, and cover every row)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from lineage.adapters.signing import generate_key
from lineage.bootstrap_proof import open_sealer
from lineage.domain.seals import SEAL_STREAM

pytestmark = pytest.mark.slow

CYCLES = 3

WRITER = textwrap.dedent("""
    import sys, lineage
    tracker = lineage.Tracker(sys.argv[1], batch_interval_s=0.002, export_otlp=False)
    step = 0
    while True:
        with tracker.start_run("killed") as run:
            for _ in range(3000):
                run.log_step(step, {"loss": 1.0})
                step += 1
                if step % 500 == 0:
                    tracker.flush()
                    print(step, flush=True)
""")

SEALER = textwrap.dedent("""
    import sys
    from lineage.bootstrap import open_store
    from lineage.bootstrap_proof import open_sealer
    store = open_store(sys.argv[1])
    sealer = open_sealer(store, key=sys.argv[2], every_events=1, every_s=0.01)
    print("sealing", flush=True)
    while True:
        sealer.seal()
""")


def _spawn(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env=env)
    assert child.stdout is not None and child.stdout.readline(), "the child did not start"
    return child


def test_kill_9_during_appends_and_sealing_leaves_no_false_positive(
        durable_url: str, tmp_path: Path, make_tracker: Any) -> None:
    key = tmp_path / "seal.pem"
    public = generate_key(key)
    rng = random.Random(os.environ.get("LINEAGE_FAULT_SEED", "14"))
    for _ in range(CYCLES):
        writer = _spawn(WRITER, durable_url)
        sealer = _spawn(SEALER, durable_url, str(key))
        time.sleep(rng.uniform(0.2, 0.8))
        first, second = rng.sample([writer, sealer], 2)
        first.send_signal(signal.SIGKILL)
        time.sleep(rng.uniform(0.0, 0.3))
        second.send_signal(signal.SIGKILL)
        for child in (writer, sealer):
            child.wait(10)
    tracker = make_tracker(durable_url, export_otlp=False)
    report = tracker.verify(public_key=public)
    assert report.ok, report.problems
    assert report.seals >= CYCLES and report.sealed > 0
    seals = tracker.store.read_stream(SEAL_STREAM)
    assert [seal.originator_version for seal in seals] == list(range(1, len(seals) + 1))
    # resuming: one more seal (none when the killed sealer had sealed the writer's last rows)
    # covers every row but itself, and the log still checks out
    open_sealer(tracker.store, key=str(key)).seal()
    report = tracker.verify(public_key=public)
    assert report.ok and report.sealed == report.rows - 1
