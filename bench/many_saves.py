"""A run that saves thousands of checkpoints under retention: each save costs the same at the end.

One run with a ``keep_last`` policy (``--keep-last`` 1) saves ``--saves`` checkpoints (small
real files, unique bytes, so each is hashed, registered, retired and deleted) one after the
other, with ``--steps-per-save`` steps logged before each (a training loop's shape); the writer
batches as it would in a loop. After each fifth of the saves ``flush()`` waits for the writer
and retention, so each fifth's figures hold every save, retirement and deletion it set off:
process CPU (all threads) and wall time per save. The figure that matters is the last fifth
over the first: retention reads a run's live checkpoints, not all it ever saved, so this stays
near 1 (5.9x over 3,000 saves when each save's retention loaded every checkpoint the run had
saved).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import Report, add_options, bench_parser, open_tracker, single_store, temp_store

FIFTHS = 5
FLAT = 1.5  # last fifth / first fifth: a cost that grows with the run's saves shows far above


def bench(report: Report, args: argparse.Namespace, url: str, folder: Path) -> None:
    with open_tracker(url, args) as tracker:
        run = tracker.start_run("many-saves", job={"checkpoint_policy": {
            "strategy": "steps", "save_every": args.steps_per_save,
            "keep_last": args.keep_last}})
        per_fifth = args.saves // FIFTHS
        cpu_ms, wall_ms = [], []
        step = 0
        for fifth in range(FIFTHS):
            cpu, wall = time.process_time(), time.perf_counter()
            for index in range(fifth * per_fifth, (fifth + 1) * per_fifth):
                for _ in range(args.steps_per_save):
                    step += 1
                    run.log_step(step, {"loss": 1.0 / step})
                path = folder / f"checkpoint-{index}.bin"
                path.write_bytes(b"checkpoint %d" % index)
                run.save_checkpoint(path, step=step)
            tracker.flush()
            cpu_ms.append((time.process_time() - cpu) * 1000 / per_fifth)
            wall_ms.append((time.perf_counter() - wall) * 1000 / per_fifth)
            report.figure(f"saves {fifth * per_fifth:,}-{(fifth + 1) * per_fifth:,}",
                          cpu_ms[-1], "ms/save", fmt="{:,.3f}",
                          note=f"process CPU, all threads; wall {wall_ms[-1]:,.3f} ms/save")
        run.finish()
        live = sum(1 for path in folder.iterdir() if path.name.startswith("checkpoint-"))
    report.figure("last fifth / first", cpu_ms[-1] / cpu_ms[0], "x", fmt="{:,.2f}",
                  target=("<=", FLAT), note=f"process CPU; wall {wall_ms[-1] / wall_ms[0]:,.2f}x")
    report.note(f"{live} checkpoint file(s) left on disk (keep_last {args.keep_last})")


def main() -> None:
    parser = bench_parser(__doc__, postgres_default=False)
    add_options(parser, saves=(5000, "checkpoints saved by the run"),
                steps_per_save=(10, "steps logged before each save"),
                keep_last=(1, "the policy's keep_last"))
    args = parser.parse_args()
    report = Report.start("bench/many_saves.py: a save's cost over a run's many saves")
    with temp_store(single_store(args), args, report) as store, \
            tempfile.TemporaryDirectory(prefix="lineage_bench_saves_") as folder:
        report.section(f"{store.kind}: {args.saves:,} saves, keep_last {args.keep_last}")
        bench(report, args, store.url, Path(folder))
    report.finish(args.json)


if __name__ == "__main__":
    main()
