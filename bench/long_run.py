"""A long run: does ingest stay flat and memory bounded as the store grows?

Logs ``--steps`` steps (1,000,000) to one run in blocks of ``--block`` (100,000). Each block
is timed from its first ``log_step`` to ``flush()`` returning (so the block is committed), as
fast as the training thread can log. Reports each block's time and rate, the ratio of the last
block's time to the first's, and the process's peak RSS (``ru_maxrss``).

Targets: last block within 15 % of the first (ratio <= 1.15); peak RSS < 300 MB.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

from common import (
    Report,
    add_writer_profile_option,
    bench_parser,
    metric_series,
    open_tracker,
    peak_rss_mb,
    print_writer_stats,
    single_store,
    stats_delta,
    temp_store,
    writer_profile,
    writer_stats,
)

RATIO_TARGET = 1.15
RSS_TARGET_MB = 300.0


def current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def store_size_mb(path: str | None) -> float | None:
    if path is None:
        return None
    return sum(os.path.getsize(path + suffix) for suffix in ("", "-wal")
               if os.path.exists(path + suffix)) / 2**20


def long_run(report: Report, url: str, args: argparse.Namespace, path: str | None) -> None:
    series = metric_series(10_000)
    tracker = open_tracker(url, args)
    blocks: list[float] = []
    cpu_blocks: list[float] = []
    try:
        run = tracker.start_run("bench-long-run")
        tracker.flush()
        before = writer_stats(tracker)
        log_step = run.log_step
        step = 0
        print(f"{'block':>5} {'steps':>10} {'seconds':>8} {'ev/s':>9} {'cpu s':>6} "
              f"{'load1':>5} {'rss MB':>7} {'db MB':>7}", flush=True)
        while step < args.steps:
            end = min(step + args.block, args.steps)
            start, cpu_start = time.perf_counter(), cpu_seconds()
            for i in range(step, end):
                log_step(i, series[i % 10_000], epoch=i // 100_000)
            tracker.flush()
            seconds = time.perf_counter() - start
            cpu = cpu_seconds() - cpu_start
            blocks.append(seconds)
            cpu_blocks.append(cpu)
            size = store_size_mb(path)
            print(f"{len(blocks):>5} {end:>10,} {seconds:>8.2f} {(end - step) / seconds:>9,.0f} "
                  f"{cpu:>6.2f} {os.getloadavg()[0]:>5.2f} {current_rss_mb():>7.1f} "
                  f"{'' if size is None else f'{size:7.0f}'}",
                  flush=True)
            step = end
        stats = stats_delta(writer_stats(tracker), before)
    finally:
        tracker.close()

    report.section("long run")
    report.sections["long run"]["block_seconds"] = [round(s, 3) for s in blocks]
    report.sections["long run"]["block_cpu_seconds"] = [round(s, 3) for s in cpu_blocks]
    total = sum(blocks)
    report.figure("steps", args.steps, "", fmt="{:,}")
    report.figure("total (sum of blocks)", total, "s", fmt="{:,.2f}")
    report.figure("overall events/s", args.steps / total, "ev/s", fmt="{:,.0f}")
    report.figure("first block", blocks[0], "s", fmt="{:,.2f}")
    report.figure("last block", blocks[-1], "s", fmt="{:,.2f}")
    report.figure("fastest / slowest block", f"{min(blocks):.2f} / {max(blocks):.2f}", "s")
    report.figure("last / first", blocks[-1] / blocks[0], "", fmt="{:.3f}",
                  target=("<=", RATIO_TARGET))
    report.figure("cpu last / first", cpu_blocks[-1] / cpu_blocks[0], "", fmt="{:.3f}",
                  note="process CPU (user+sys); flat CPU with slower wall = waiting")
    report.figure("peak RSS (ru_maxrss)", peak_rss_mb(), "MB", target=("<", RSS_TARGET_MB))
    if path is not None:
        report.figure("store size", store_size_mb(path), "MB", note="db + wal")
    print_writer_stats(report, stats, over="the run")


def main() -> None:
    parser = bench_parser(__doc__, postgres_default=False)
    parser.add_argument("--steps", type=int, default=1_000_000, help="steps (1,000,000)")
    parser.add_argument("--block", type=int, default=100_000, help="steps per block (100,000)")
    add_writer_profile_option(parser)
    args = parser.parse_args()

    report = Report.start("bench/long_run.py: 1M-step run, block times and memory")
    with writer_profile(report, args.profile), \
            temp_store(single_store(args), args, report) as store:
        long_run(report, store.url, args, store.path)
    report.finish(args.json)


if __name__ == "__main__":
    main()
