"""Where the writer's time goes per step event: building/encoding vs the store append.

Calls the writer's own methods directly, on the main thread, on prepared batches of
``StepRecord`` tuples (the writer thread sits idle with an empty queue meanwhile), so nothing
competes for the GIL and no profiler distorts the figures:

- ``_build``: aggregate lookup, version counter, event id, ``encode_step`` (the JSON state);
- ``store.append``: the adapter and the database (one transaction, durable commit);
- a split of ``_build``: ``encode_step`` alone, and id generation alone.

No targets: it explains ``bench/ingest.py`` (events/s ~ 1e6 / (build + append) us, minus what the
training thread takes from the writer for the GIL).
"""

from __future__ import annotations

import argparse
import time
import uuid

from common import (
    Report,
    bench_parser,
    metric_series,
    open_tracker,
    single_store,
    temp_store,
)


def records(run_id: uuid.UUID, first: int, count: int, series: list[dict[str, float]]) -> list:
    from lineage.application.step_log import StepRecord

    now = time.time_ns()
    return [StepRecord(run_id, step, series[step % len(series)], 0, None, None, None,
                       now + step * 1000, None, None, None) for step in range(first, first + count)]


def breakdown(report: Report, url: str, args: argparse.Namespace, label: str) -> None:
    from lineage.application.step_log import random_hex_ids as _random_hex_ids
    from lineage.codec.steps import encode_step

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
            uow, rejected = writer._build(batch)
            built = time.perf_counter_ns()
            writer.store.append(uow.stored, uow.hex_ids)
            build_ns += built - start
            append_ns += time.perf_counter_ns() - built
            assert not rejected
        sample = records(run.id, 0, size, series)
        tail, now_iso, hex_id = writer.steps.tail, "2026-01-01T00:00:00.000000+00:00", "0" * 32
        start = time.perf_counter_ns()
        for _ in range(batches):
            for record in sample:
                encode_step(record, hex_id, now_iso, now_iso, tail)
        encode_ns = time.perf_counter_ns() - start
        start = time.perf_counter_ns()
        for _ in range(batches):
            for _ in _random_hex_ids(size):
                pass
        ids_ns = time.perf_counter_ns() - start
    finally:
        tracker.close()

    events = size * batches
    per = lambda ns: ns / events / 1000  # noqa: E731
    report.section(f"{label}: writer cost per step event ({batches} batches of {size})")
    report.figure("_build (all)", per(build_ns), "us/event", fmt="{:.2f}")
    report.figure("  encode_step", per(encode_ns), "us/event", fmt="{:.2f}")
    report.figure("  event ids", per(ids_ns), "us/event", fmt="{:.2f}")
    report.figure("  rest of _build", per(build_ns - encode_ns - ids_ns), "us/event",
                  fmt="{:.2f}", note="aggregate lookup, versions, timestamps, merge")
    report.figure("store.append", per(append_ns), "us/event", fmt="{:.2f}",
                  note=f"{append_ns / batches / 1e6:.2f} ms per batch incl. commit")
    report.figure("total", per(build_ns + append_ns), "us/event", fmt="{:.2f}")
    report.figure("single-thread ceiling", events / ((build_ns + append_ns) / 1e9), "ev/s",
                  fmt="{:,.0f}", note="no training thread competing for the GIL")


def main() -> None:
    parser = bench_parser(__doc__, postgres_default=False)
    parser.add_argument("--batches", type=int, default=200, help="batches (200)")
    parser.add_argument("--batch", type=int, default=1000, help="events per batch (1,000)")
    args = parser.parse_args()
    report = Report.start("bench/writer_breakdown.py: writer cost per step event")
    with temp_store(single_store(args), args, report) as store:
        breakdown(report, store.url, args, store.kind)
    report.finish(args.json)


if __name__ == "__main__":
    main()
