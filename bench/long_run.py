"""A long run: ingest stays flat, every process stays small, reads stay fast, bytes stay few.

Logs ``--steps`` steps (1,000,000; the issue's run is ``--steps 10000000``) to one run, as
fast as the training thread can, in blocks of ``--block`` steps (a tenth of the run). Each
block is timed from its first ``log_step`` to ``flush()`` returning (so it is committed); one
line per block (time, steps/s, process CPU, 1-minute load, RSS, store size). Then, each in its
own process, started from a fresh helper that reports its wall time and peak RSS
(``getrusage(RUSAGE_CHILDREN)``):

1. catching every read model up (``open_read_models(...).runner.catch_up()``, timed inside);
2. ``lineage --db URL trace RUN --json > /dev/null``;
3. ``Tracker(url).metric_history(run, "loss")`` (the call timed inside), and the downsampled
   history when this branch has it (a Tracker method named ``*downsampl*``, or a
   ``metric_history`` keyword ``buckets``/``points``/``max_points``), asked for 1,000 points.

Last, the on-disk bytes per step of the events and the read models together: SQLite, the file
+ WAL after ``PRAGMA wal_checkpoint(TRUNCATE)`` (split per table with ``dbstat``); PostgreSQL,
``pg_total_relation_size`` (heap, TOAST, indexes) summed over the schema's tables.

Targets: last block / first <= 1.15; peak RSS < 300 MB for every process; catch-up of 1M steps
<= 5 s (scaled with the run); trace and metric_history <= 10 s, downsampled <= 1 s;
<= 200 bytes per step on disk.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import (
    Report,
    Store,
    add_options,
    add_writer_profile_option,
    bench_parser,
    disk_usage,
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
BYTES_TARGET = 200.0
CATCH_UP_S_PER_MILLION = 5.0
READ_TARGET_S = 10.0
DOWNSAMPLED_TARGET_S = 1.0
LINEAGE = Path(sys.executable).with_name("lineage")

# Runs argv as its child, its address space capped (the machine is shared: a runaway read
# fails with MemoryError instead of taking every helper's memory); prints the child's wall
# time, peak RSS and (unless told to discard it) its stdout. RUSAGE_CHILDREN of this fresh
# helper is the child's alone.
HELPER = """
import json, resource, subprocess, sys, time
discard = sys.argv[1] == "discard"
cap = int(sys.argv[2]) * 2**20
limit = lambda: resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
start = time.perf_counter()
done = subprocess.run(sys.argv[3:], stdout=subprocess.DEVNULL if discard else subprocess.PIPE,
                      text=True, preexec_fn=limit)
wall = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"code": done.returncode, "wall_s": wall, "peak_rss_mb": peak,
                  "stdout": "" if discard else done.stdout}))
"""

CATCH_UP = """
import json, sys, time
from lineage.bootstrap import open_read_models, open_store
from lineage.codec.mapper import make_mapper
store = open_store(sys.argv[1], create=False)
views = open_read_models(sys.argv[1], store, make_mapper(), catch_up=False)
start = time.perf_counter()
applied = views.runner.catch_up()
print(json.dumps({"seconds": time.perf_counter() - start, "applied": applied}))
views.close()
store.close()
"""

METRIC_HISTORY = """
import inspect, json, sys, time
import lineage
url, run_id, which = sys.argv[1:4]
out = {}
with lineage.Tracker(url, source="bench", actor="bench", tenant_id="bench") as tracker:
    tracker.flush()
    if which == "full":
        start = time.perf_counter()
        history = tracker.metric_history(run_id, "loss")
        out = {"seconds": time.perf_counter() - start, "points": len(history)}
    else:
        names = [n for n in dir(tracker) if "downsampl" in n.lower() and not n.startswith("_")]
        keywords = [k for k in ("buckets", "points", "max_points")
                    if k in inspect.signature(tracker.metric_history).parameters]
        if names:
            call, how = (lambda: getattr(tracker, names[0])(run_id, "loss", 1000)), names[0]
        elif keywords:
            call = lambda: tracker.metric_history(run_id, "loss", **{keywords[0]: 1000})
            how = f"metric_history({keywords[0]}=1000)"
        else:
            call = how = None
        if call is not None:
            start = time.perf_counter()
            result = call()
            out = {"seconds": time.perf_counter() - start, "points": len(result), "how": how}
print(json.dumps(out))
"""


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


# -- ingest ------------------------------------------------------------------------------------


def ingest(report: Report, store: Store, args: argparse.Namespace) -> str:
    """Log the run block by block; print the block lines and the ingest figures; its id."""
    series = metric_series(10_000)
    tracker = open_tracker(store.url, args)
    blocks: list[float] = []
    cpu_blocks: list[float] = []
    try:
        run = tracker.start_run("bench-long-run")
        tracker.flush()
        before = writer_stats(tracker)
        log_step = run.log_step
        step = 0
        print(f"{'block':>5} {'steps':>12} {'seconds':>8} {'steps/s':>9} {'cpu s':>6} "
              f"{'load1':>5} {'rss MB':>7} {'db MB':>7}", flush=True)
        while step < args.steps:
            end = min(step + args.block, args.steps)
            start, cpu_start = time.perf_counter(), cpu_seconds()
            for i in range(step, end):
                log_step(i, series[i % 10_000], epoch=i // 100_000)
            tracker.flush()
            seconds = time.perf_counter() - start
            blocks.append(seconds)
            cpu_blocks.append(cpu_seconds() - cpu_start)
            size = store_size_mb(store.path)
            print(f"{len(blocks):>5} {end:>12,} {seconds:>8.2f} {(end - step) / seconds:>9,.0f} "
                  f"{cpu_blocks[-1]:>6.2f} {os.getloadavg()[0]:>5.2f} {current_rss_mb():>7.1f} "
                  f"{'' if size is None else f'{size:7.0f}'}", flush=True)
            step = end
        stats = stats_delta(writer_stats(tracker), before)
        run_id = str(run.id)
    finally:
        tracker.close()

    report.section("ingest")
    report.sections["ingest"]["block_seconds"] = [round(s, 3) for s in blocks]
    report.sections["ingest"]["block_cpu_seconds"] = [round(s, 3) for s in cpu_blocks]
    total = sum(blocks)
    report.figure("steps", args.steps, "", fmt="{:,}", note=f"run {run_id}")
    report.figure("total (sum of blocks)", total, "s", fmt="{:,.1f}")
    report.figure("overall steps/s", args.steps / total, "steps/s", fmt="{:,.0f}")
    report.figure("first / last block", f"{blocks[0]:.2f} / {blocks[-1]:.2f}", "s",
                  note=f"fastest {min(blocks):.2f}, slowest {max(blocks):.2f}")
    report.figure("last / first", blocks[-1] / blocks[0], "", fmt="{:.3f}",
                  target=("<=", RATIO_TARGET))
    report.figure("cpu last / first", cpu_blocks[-1] / cpu_blocks[0], "", fmt="{:.3f}",
                  note="process CPU (user+sys); flat CPU with slower wall = waiting")
    report.figure("ingest peak RSS", peak_rss_mb(), "MB", target=("<", RSS_TARGET_MB),
                  note="ru_maxrss of this (the training) process")
    print_writer_stats(report, stats, over="the run", steps=args.steps)
    return run_id


# -- reads, each in its own process ------------------------------------------------------------


def in_process(argv: list[str], args: argparse.Namespace, *, discard: bool) -> dict[str, Any]:
    """Run ``argv`` from a fresh helper: its wall time, peak RSS and (parsed) JSON output."""
    timeout = args.timeout
    try:
        done = subprocess.run([sys.executable, "-c", HELPER, "discard" if discard else "keep",
                               str(args.memory_cap_mb), *argv], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"code": "timeout", "wall_s": timeout, "peak_rss_mb": float("nan"), "out": {}}
    if done.returncode != 0 or not done.stdout.strip():
        return {"code": done.returncode, "wall_s": float("nan"), "peak_rss_mb": float("nan"),
                "out": {}, "stderr": done.stderr[-2000:]}
    result: dict[str, Any] = json.loads(done.stdout)
    result["stderr"] = done.stderr.strip().splitlines()[-1:] if done.stderr.strip() else ""
    text = result.pop("stdout").strip()
    result["out"] = json.loads(text.splitlines()[-1]) if text else {}
    return result


def print_process(report: Report, label: str, result: dict[str, Any], *,
                  inner: tuple[str, float] | None = None, wall: float | None = None) -> None:
    """A process's figures: ``inner`` (what the child timed itself, its target in s), its
    wall time (``wall``: a target for it) and its peak RSS."""
    if result["code"] != 0:
        report.note(f"{label}: FAILED ({result['code']}) {result.get('stderr', '')}")
    if inner is not None and "seconds" in result["out"]:
        report.figure(f"{label}: {inner[0]}", result["out"]["seconds"], "s", fmt="{:,.2f}",
                      target=("<=", inner[1]))
    report.figure(f"{label}: process wall", result["wall_s"], "s", fmt="{:,.2f}",
                  target=None if wall is None else ("<=", wall))
    report.figure(f"{label}: peak RSS", result["peak_rss_mb"], "MB",
                  target=("<", RSS_TARGET_MB))


def reads(report: Report, store: Store, run_id: str, args: argparse.Namespace) -> None:
    """Catch-up, then (when it succeeded: each would catch up itself) trace and histories."""
    report.section("reads (each in its own process)")
    python = [sys.executable, "-c"]
    catch_up_target = CATCH_UP_S_PER_MILLION * max(args.steps / 1e6, 1.0)
    result = in_process([*python, CATCH_UP, store.url], args, discard=False)
    print_process(report, "catch-up", result, inner=("catch_up()", catch_up_target))
    if "applied" not in result["out"]:
        report.note("catch-up failed: trace and metric history skipped (each would catch up "
                    "the read models itself); the bytes below lack the read models")
        return
    report.note(f"catch-up applied {result['out']['applied']:,} notifications "
                f"({args.steps / max(result['out']['seconds'], 1e-9):,.0f} steps/s); target "
                f"{CATCH_UP_S_PER_MILLION:g} s per million steps")
    result = in_process([str(LINEAGE), "--db", store.url, "trace", run_id, "--json"], args,
                        discard=True)
    print_process(report, "trace --json", result, wall=READ_TARGET_S)
    result = in_process([*python, METRIC_HISTORY, store.url, run_id, "full"], args,
                        discard=False)
    print_process(report, "metric_history", result, inner=("the call", READ_TARGET_S))
    if result["out"].get("points") not in (None, args.steps):
        report.note(f"metric_history gave {result['out']['points']:,} points, not {args.steps:,}")
    result = in_process([*python, METRIC_HISTORY, store.url, run_id, "downsampled"], args,
                        discard=False)
    if result["code"] == 0 and not result["out"]:
        report.note("downsampled metric history: not in this branch (skipped)")
        return
    print_process(report, "downsampled", result, inner=("the call", DOWNSAMPLED_TARGET_S))
    if "how" in result["out"]:
        report.note(f"downsampled via {result['out']['how']}: {result['out']['points']:,} points")


# -- bytes on disk -----------------------------------------------------------------------------


def sizes(report: Report, store: Store, steps: int) -> None:
    report.section("on disk (events + read models)")
    usage = disk_usage(store)
    events = sum(size for name, size in usage["tables"].items() if name in EVENT_TABLES)
    models = sum(size for name, size in usage["tables"].items() if name not in EVENT_TABLES)
    report.figure("total", usage["total"] / 2**20, "MB", note=usage["how"])
    report.figure("bytes per step", usage["total"] / steps, "bytes", target=("<=", BYTES_TARGET))
    if usage["tables"]:
        report.figure("  events", events / steps, "bytes/step", note=", ".join(EVENT_TABLES))
        report.figure("  read models", models / steps, "bytes/step")
        top = sorted(usage["tables"].items(), key=lambda item: -item[1])[:6]
        report.note("largest: " + ", ".join(f"{name} {size / 2**20:,.1f} MB"
                                            for name, size in top))


EVENT_TABLES = ("stored_events", "lineage_event_ids")


def main() -> None:
    parser = bench_parser(__doc__, postgres_default=False, steps=1_000_000)
    add_options(parser, block=(0, "steps per timed block; 0: a tenth of --steps"),
                no_reads=(False, "ingest only: no catch-up, trace or metric history"),
                timeout=(900.0, "seconds each read process may take"),
                memory_cap_mb=(4096, "address-space cap of each read process, MB"))
    add_writer_profile_option(parser)
    args = parser.parse_args()
    args.block = args.block or max(args.steps // 10, 1)

    report = Report.start(f"bench/long_run.py: a {args.steps:,}-step run")
    with writer_profile(report, args.profile), \
            temp_store(single_store(args), args, report) as store:
        started = time.perf_counter()
        run_id = ingest(report, store, args)
        if not args.no_reads:
            reads(report, store, run_id, args)
        sizes(report, store, args.steps)
        report.figure("whole benchmark", time.perf_counter() - started, "s", fmt="{:,.0f}")
    report.finish(args.json)


if __name__ == "__main__":
    main()
