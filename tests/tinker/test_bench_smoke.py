"""bench/tinker_overhead.py runs (a handful of calls; its figures are not asserted on)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_overhead_bench_runs_and_prints_its_table() -> None:
    done = subprocess.run([sys.executable, "-W", "ignore", str(ROOT / "bench" / "tinker_overhead.py"),
                           "--calls", "4", "--window", "2"], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TINKER_TELEMETRY": "0"}, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    for op in ("forward_backward", "optim_step", "sample"):
        assert any(line.startswith(op) for line in done.stdout.splitlines())
    assert "recorder errors: 0" in done.stdout
