"""``lineage migrate`` on a store written before step blocks: speed, and sizes before and after.

Builds a legacy store (``--steps`` 200,000 steps, one ``StepRecorded`` row per step written
with the library's mapper, and one event-id row each) the way the old writer filled it:
``--runs`` 4 runs logged side by side in appends of ``--batch`` 1,000 steps of one run sharing
one ``recorded_at``, 3 metrics a step, an evaluation every 5,000 steps and a checkpoint every
20,000 per run. Its read models are caught up, then it is migrated as ``lineage migrate`` does:
compact (timed: steps/s = legacy steps / compaction time), rebuild the read models, vacuum.
Sizes are the SQLite file (after a WAL checkpoint) or the PostgreSQL schema's tables and
indexes, events and read models together, before and after.

Target (issue 10): <= 200 bytes per step on disk, events and read models, after the migration.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import (
    ROOT,
    Report,
    add_options,
    bench_parser,
    metric_series,
    open_tracker,
    stores_wanted,
    temp_store,
)

sys.path.insert(0, str(ROOT))

from tests.legacy_steps import LegacySteps, Step

EVAL_EVERY = 5_000
CHECKPOINT_EVERY = 20_000


def build_legacy(url: str, args: Any) -> int:
    """Fill ``url`` with the legacy store described in the module doc; returns the steps."""
    series = metric_series(args.batch)
    start = datetime.now(UTC) - timedelta(days=1)
    folder = Path(tempfile.mkdtemp(prefix="lineage_bench_ckpt_"))
    with open_tracker(url, args) as tracker:
        legacy = LegacySteps(tracker)
        runs = [tracker.start_run(f"legacy-{n}") for n in range(args.runs)]
        per_run = args.steps // args.runs
        done = 0
        for first in range(1, per_run + 1, args.batch):
            for run in runs:
                count = min(args.batch, per_run - first + 1)
                moment = start + timedelta(seconds=done / 1000)
                legacy.append([Step(run.id, first + i, series[i]) for i in range(count)], moment)
                done += count
                last = first + count - 1
                if last % EVAL_EVERY == 0:
                    run.log_eval(last, {"accuracy": last / per_run}).wait(60)
                if last % CHECKPOINT_EVERY == 0:
                    path = folder / f"{run.id.hex[:8]}-{last}.bin"
                    path.write_bytes(b"weights")
                    run.save_checkpoint(path, step=last).wait(60)
                tracker.flush()
        for run in runs:
            run.finish().wait(60)
        tracker.views.runner.catch_up()
    return done


def measure(report: Report, url: str, args: Any) -> None:
    from lineage.bootstrap import open_step_migration

    started = time.perf_counter()
    steps = build_legacy(url, args)
    report.figure("legacy store built", time.perf_counter() - started, "s")
    with open_step_migration(url) as migration:
        migration.vacuum()  # a fair "before": no free pages, no WAL
        before = migration.size_bytes()
        started = time.perf_counter()
        done = migration.compact()
        compact_s = time.perf_counter() - started
        started = time.perf_counter()
        projected = migration.refresh()
        refresh_s = time.perf_counter() - started
        started = time.perf_counter()
        migration.vacuum()
        vacuum_s = time.perf_counter() - started
        after = migration.size_bytes()
    report.figure("legacy steps migrated", done.steps, fmt="{:,}")
    report.figure("blocks written", done.blocks, fmt="{:,}")
    report.figure("rows left legacy", done.rows_left, fmt="{:,}")
    report.figure("compaction", compact_s, "s", fmt="{:,.2f}")
    report.figure("migration speed", done.steps / compact_s, "steps/s", fmt="{:,.0f}")
    report.figure("read-model rebuild", refresh_s, "s", fmt="{:,.2f}",
                  note=f"{projected:,} rows projected")
    report.figure("vacuum", vacuum_s, "s", fmt="{:,.2f}")
    report.figure("size before", before / 1e6, "MB", fmt="{:,.1f}")
    report.figure("size after", after / 1e6, "MB", fmt="{:,.1f}")
    report.figure("bytes per step before", before / steps, "B", fmt="{:,.0f}")
    report.figure("bytes per step after", after / steps, "B", fmt="{:,.0f}",
                  target=("<=", 200))


def main() -> None:
    parser = bench_parser(__doc__, postgres_default=None, steps=200_000, steps_help="legacy steps")
    add_options(parser, runs=(4, "runs logged side by side"),
                batch=(1_000, "steps per legacy append, as the old writer's batch"))
    args = parser.parse_args()
    report = Report.start("bench/migrate.py: lineage migrate on a one-row-per-step store")
    for kind in stores_wanted(args, report):
        with temp_store(kind, args, report, section=f"{kind}: migrate") as store:
            measure(report, store.url, args)
    report.finish(args.json)


if __name__ == "__main__":
    main()
