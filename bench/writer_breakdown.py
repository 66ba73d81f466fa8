"""Where the writer's time goes per step: building the block vs the store append.

Calls the writer's own methods directly, on the main thread, on prepared batches of
``StepRecord`` tuples (the writer thread sits idle with an empty queue meanwhile), so nothing
competes for the GIL and no profiler distorts the figures. One batch of one run's steps is one
stored block (``lineage.codec.step_block``):

- ``_build``: aggregate lookup, the step stream's version, transposing the records into columns
  (``step_log.columns``), ``encode_block`` (packing + zlib), the block id, the merge;
- a split of ``_build``: ``columns`` alone and ``encode_block`` alone, on the same records;
- ``store.append``: the adapter and the database (one row per block, one transaction, durable
  commit).

No targets: it explains ``bench/ingest.py`` (steps/s ~ 1e6 / (build + append) us per step,
minus what the training thread's ``log_step`` takes from the writer for the GIL).
"""

from __future__ import annotations

import argparse
import struct
import time
import uuid
from typing import Any

from common import (
    Report,
    bench_parser,
    metric_series,
    open_tracker,
    single_store,
    temp_store,
)


def records(run_id: uuid.UUID, first: int, count: int, series: list[dict[str, float]]) -> list:
    """Steps as ``log_step`` queues the common one: the run's key, the floats packed beside
    one names tuple."""
    from lineage.application.step_log import StepRecord

    now, key, names = time.time_ns(), run_id.int, tuple(series[0])
    pack = struct.Struct(f"{len(names)}d").pack
    return [StepRecord(key, step, names, pack(*series[step % len(series)].values()),
                       step // 100_000, None, None, None, now + step * 1000, None, None, None)
            for step in range(first, first + count)]


def time_split(sample: list[Any], batches: int) -> tuple[int, int, int]:
    """ns spent in ``columns`` and ``encode_block`` over ``batches`` repeats of ``sample``;
    and the block's size."""
    from lineage.application.step_log import columns
    from lineage.codec.step_block import Origin, encode_block

    origin = Origin(time.time_ns() // 1000, "bench", "bench", "bench")
    block_id = uuid.uuid4().bytes
    columns_ns = encode_ns = 0
    size = 0
    for _ in range(batches):
        start = time.perf_counter_ns()
        transposed = columns(sample)
        middle = time.perf_counter_ns()
        size = len(encode_block(uuid.UUID(int=sample[0].run_key), 1, block_id, origin, transposed))
        columns_ns += middle - start
        encode_ns += time.perf_counter_ns() - middle
    return columns_ns, encode_ns, size


def breakdown(report: Report, url: str, args: argparse.Namespace, label: str) -> None:
    series = metric_series(10_000)
    tracker = open_tracker(url, args)
    build_ns = append_ns = 0
    try:
        run = tracker.start_run(f"bench-breakdown-{label}")
        tracker.flush()
        writer = tracker.writer
        size, batches = args.batch, args.batches
        for b in range(batches):
            batch = records(run.id, b * size, size, series)
            start = time.perf_counter_ns()
            uow, rejected = writer._build(batch, True)
            built = time.perf_counter_ns()
            writer.store.append(uow.stored, uow.hex_ids)
            build_ns += built - start
            append_ns += time.perf_counter_ns() - built
            if rejected:
                raise SystemExit(f"the writer refused steps: {rejected}")
        columns_ns, encode_ns, block_bytes = time_split(records(run.id, 0, size, series), batches)
    finally:
        tracker.close()

    steps = size * batches
    per = lambda ns: ns / steps / 1000  # noqa: E731
    report.section(f"{label}: writer cost per step ({batches} batches of {size} steps)")
    report.figure("_build (all)", per(build_ns), "us/step", fmt="{:.3f}")
    report.figure("  columns (transpose)", per(columns_ns), "us/step", fmt="{:.3f}")
    report.figure("  encode_block", per(encode_ns), "us/step", fmt="{:.3f}",
                  note=f"{block_bytes:,} bytes per block, {block_bytes / size:.1f} per step")
    report.figure("  rest of _build", per(build_ns - columns_ns - encode_ns), "us/step",
                  fmt="{:.3f}", note="aggregate lookup, versions, block id, merge")
    report.figure("store.append", per(append_ns), "us/step", fmt="{:.3f}",
                  note=f"{append_ns / batches / 1e6:.2f} ms per block incl. commit")
    report.figure("total", per(build_ns + append_ns), "us/step", fmt="{:.3f}")
    report.figure("single-thread ceiling", steps / ((build_ns + append_ns) / 1e9), "steps/s",
                  fmt="{:,.0f}", note="no training thread competing for the GIL")


def main() -> None:
    parser = bench_parser(__doc__, postgres_default=False)
    parser.add_argument("--batches", type=int, default=60, help="batches (60)")
    parser.add_argument("--batch", type=int, default=5000,
                        help="steps per batch (5,000: the writer's default batch_size)")
    args = parser.parse_args()
    report = Report.start("bench/writer_breakdown.py: writer cost per step")
    with temp_store(single_store(args), args, report) as store:
        breakdown(report, store.url, args, store.kind)
    report.finish(args.json)


if __name__ == "__main__":
    main()
