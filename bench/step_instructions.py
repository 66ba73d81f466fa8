"""Instructions per step under callgrind: deterministic where wall clock on a shared box is not.

Runs ``valgrind --tool=callgrind`` on this same file in four child modes and subtracts:

- ``setup``: open a SQLite tracker, start a run, flush, exit (the fixed cost);
- ``calls``: the same, then ``--steps`` ``log_step`` calls while the writer is held back (a
  queue and batch larger than the steps, a batch interval of an hour) and the garbage
  collector is off (it would traverse the ever longer queue): what the training thread pays
  per call, with the bench loop's own few instructions;
- ``ingest``: the same calls with the default writer settings, then ``flush()``: everything a
  step costs the process (both threads share the GIL, so this bounds durable ingest);
- ``loop``: the same loop calling an empty method with ``log_step``'s signature instead (the
  collector off): the floor, what the loop and the call itself cost, which no change to
  ``log_step``'s body can remove.

It prints instructions per step for ``log_step`` (calls - setup) and for the whole ingest
(ingest - setup), and the rest (the writer thread and the collector: the difference). Each
child runs with ``PYTHONHASHSEED=0`` and exits with ``os._exit`` right after its work, so
teardown is not counted; the four run side by side. Needs ``valgrind`` on PATH. About a
minute of CPU per child for the default 20,000 steps (callgrind runs Python ~50x slower).
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))


def child(mode: str, steps: int, folder: str) -> None:
    sys.path.insert(0, HERE)
    from common import metric_series

    from lineage import Tracker

    held = mode == "calls"
    tracker = Tracker(f"sqlite:///{folder}/steps.db", source="bench", actor="bench",
                      tenant_id="bench", queue_size=steps + 10 if held else None,
                      batch_size=steps + 10 if held else None,
                      batch_interval_s=3600.0 if held else None)
    run = tracker.start_run("bench-instructions")
    tracker.flush()
    series = metric_series(10_000)
    log_step = run.log_step
    if mode == "calls":
        gc.disable()
    if mode == "loop":
        gc.disable()
        log_step = _Empty().log_step
    if mode != "setup":
        for i in range(steps):
            log_step(i, series[i % 10_000], epoch=i // 100_000)
    if mode == "ingest":
        tracker.flush()
    os._exit(0)


class _Empty:
    def log_step(self, step: int, metrics: dict[str, float] | None = None, *,
                 epoch: int | None = None, durations: dict[str, float] | None = None,
                 tokens: int | None = None, resources: dict[str, float] | None = None,
                 occurred_at: object = None, event_id: object = None) -> None:
        """``RunHandle.log_step``'s signature, doing nothing (the ``loop`` child)."""


def instructions(mode: str, steps: int) -> int:
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "callgrind.out")
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        sys.executable, os.path.abspath(__file__), "--child", mode,
                        "--steps", str(steps), "--folder", folder],
                       check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": "0"})
        with open(out) as handle:
            for line in handle:
                found = re.match(r"(?:summary|totals): (\d+)", line)
                if found:
                    return int(found.group(1))
    raise RuntimeError(f"no totals in callgrind output for {mode}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20_000, help="steps per child (20,000)")
    parser.add_argument("--child", choices=("setup", "calls", "ingest", "loop"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps, args.folder)
        return
    started = time.perf_counter()
    modes = ("setup", "calls", "ingest", "loop")
    with ThreadPoolExecutor(len(modes)) as pool:
        counts = dict(zip(modes, pool.map(instructions, modes, [args.steps] * len(modes)),
                          strict=True))
    per_call = (counts["calls"] - counts["setup"]) / args.steps
    per_step = (counts["ingest"] - counts["setup"]) / args.steps
    floor = (counts["loop"] - counts["setup"]) / args.steps
    print(f"bench/step_instructions.py: {args.steps:,} steps, SQLite, callgrind "
          f"({time.perf_counter() - started:.0f} s)")
    print(f"  log_step (training thread)  {per_call:10,.0f} instructions/step")
    print(f"    of which loop + bare call {floor:10,.0f} instructions/step   (an empty method, "
          "same signature)")
    print(f"  ingest (both threads)       {per_step:10,.0f} instructions/step")
    print(f"  writer + collector (rest)   {per_step - per_call:10,.0f} instructions/step")


if __name__ == "__main__":
    main()
