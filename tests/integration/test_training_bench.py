"""bench/training_overhead.py runs (a few tiny rounds; its figures are not asserted on), and the
interval it prints beside each median is the median's bootstrap interval."""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from overhead_figures import median_interval  # noqa: E402


def bench(*options: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "training_overhead.py"),
                           "--pairs", "2", "--steps", "20", "--every", "10", "--batch", "8",
                           "--hidden", "16", *options],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_bench_runs_both_kinds_of_save_and_prints_each_figure_with_its_spread() -> None:
    out = bench()
    assert "keep_last 1" in out and "(mid-interval)" in out
    for kind in ("sync saves", "background saves"):
        assert f"-- cpu: {kind}" in out
    walls = [line for line in out.splitlines() if line.startswith("overhead, wall")]
    assert len(walls) == 2 and all("median 90 % CI" in line for line in walls)
    # where each kind's process CPU went: the tracker's threads, per save and per commit
    writers = [line for line in out.splitlines() if line.startswith("CPU of lineage-writer")]
    assert len(writers) == 2 and all("ms a commit" in line for line in writers)
    assert "CPU of lineage-checkpoint-saves" in out  # the background kind's saves thread


def test_a_threads_cpu_is_counted_under_its_name() -> None:
    import threading
    import time

    from thread_cpu import spent, thread_cpu

    burnt, done = threading.Event(), threading.Event()

    def burn() -> None:
        end = time.thread_time() + 0.05
        while time.thread_time() < end:
            pass
        burnt.set()
        done.wait(60)  # alive while read: a thread that ended has no /proc entry

    before = thread_cpu()
    worker = threading.Thread(target=burn, name="lineage-burner")
    worker.start()
    assert burnt.wait(60)
    during = thread_cpu()
    done.set()
    worker.join()
    assert spent(before, during)["thread:lineage-burner"] >= 0.04
    assert before["MainThread"] > 0


def test_the_bench_compares_writer_batch_intervals_side_by_side() -> None:
    out = bench("--intervals", "0.05,0.5")
    assert "-- cpu: background, batch_interval_s 0.05 saves" in out
    assert "-- cpu: background, batch_interval_s 0.5 saves" in out
    assert "sync saves" not in out


def test_the_median_interval_holds_the_median_and_is_repeatable() -> None:
    values = [0.5, 1.0, 1.2, 0.8, 3.0, -0.4, 0.9, 1.1, 0.7, 1.4]
    low, high = median_interval(values)
    assert min(values) <= low <= statistics.median(values) <= high <= max(values)
    assert median_interval(values) == (low, high)  # a fixed seed
    assert median_interval([2.0] * 5) == (2.0, 2.0)


@pytest.mark.parametrize("kinds", [2, 3, 5])
def test_each_kind_of_run_follows_each_other_kind_equally_often(kinds: int) -> None:
    from collections import Counter
    from itertools import pairwise

    from training_overhead import balanced_orders

    names = [f"kind{i}" for i in range(kinds)]
    orders = balanced_orders(names)
    assert all(sorted(order) == names for order in orders)
    follows = Counter((a, b) for order in orders for a, b in pairwise(order))
    assert len(follows) == kinds * (kinds - 1) and len(set(follows.values())) == 1
