"""``lineage trace RUN --json`` of a long run: wall time and peak RSS of the CLI process.

Records one run of ``--steps`` (100,000) steps with 3 metrics, 5 checkpoints (remote
``tinker://`` uris) and 10 evaluations through the API into a temp SQLite file, catches the
projections up once (``ProjectionRunner.catch_up()``, timed), then runs

    .venv/bin/lineage --db DB trace RUN --json > /dev/null

as a subprocess twice (the second with every cache warm). Each invocation is started from a
fresh helper process that reports the wall time and ``getrusage(RUSAGE_CHILDREN).ru_maxrss``,
so the peak RSS is the CLI's alone. It also runs the command once on a copy of the database
taken BEFORE the catch-up (the embedded path: the CLI catches the projections up itself), and
once into a pipe to check the JSON and count its spans (untimed).

Targets (caught-up projections): wall time <= 5 s, peak RSS <= 300 MB.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import Report, metric_series, open_tracker, read_models, sqlite_store

WALL_TARGET_S = 5.0
RSS_TARGET_MB = 300.0
LINEAGE = Path(sys.executable).with_name("lineage")

HELPER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)
wall = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"code": code, "wall_s": wall, "peak_rss_mb": peak / 1024}))
"""


def record(path: str, args: argparse.Namespace) -> str:
    """One long run with a few checkpoints and evaluations; returns its id."""
    series = metric_series(10_000)
    tracker = open_tracker(path, args)
    try:
        data = tracker.register_artifact("hf://datasets/org/sft-mix", type="dataset",
                                         checksum="sha256:" + "ab" * 32)
        run = tracker.start_run("sft-long", job={"model": "llama", "adapter": {"rank": 16}},
                                inputs=[data])
        for step in range(1, args.steps + 1):
            run.log_step(step, series[step % 10_000], epoch=step // 10_000)
            if step % max(args.steps // 5, 1) == 0:
                run.save_checkpoint(f"tinker://{run.id}/weights/step-{step}", step=step,
                                    format="safetensors", includes_optimizer=True)
            if step % max(args.steps // 10, 1) == 0:
                run.log_eval(step, {"val_loss": series[step % 10_000]["loss"]}, dataset="val")
        run.finish("completed").wait()
        return str(run.id)
    finally:
        tracker.close()


def copy_database(source: str, target: str) -> None:
    """A consistent copy (WAL included) through SQLite's backup API."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def catch_up(path: str) -> tuple[int, float]:
    from lineage.bootstrap import open_store

    store = open_store(path, create=False)
    try:
        with read_models(path, store) as views:
            start = time.perf_counter()
            applied = views.runner.catch_up()
            return applied, time.perf_counter() - start
    finally:
        store.close()


def command(path: str, run_id: str) -> list[str]:
    return [str(LINEAGE), "--db", path, "trace", run_id, "--json"]


def invoke(path: str, run_id: str) -> dict[str, Any]:
    """Run the CLI from a fresh helper process: wall time and the CLI's peak RSS."""
    done = subprocess.run([sys.executable, "-c", HELPER, *command(path, run_id)],
                          capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    if result["code"] != 0:
        raise SystemExit(f"lineage trace failed with exit code {result['code']}")
    return result


def print_invocation(report: Report, label: str, result: dict[str, Any], *, target: bool) -> None:
    report.figure(f"{label}: wall", result["wall_s"], "s", fmt="{:,.2f}",
                  target=("<=", WALL_TARGET_S) if target else None)
    report.figure(f"{label}: peak RSS", result["peak_rss_mb"], "MB",
                  target=("<=", RSS_TARGET_MB) if target else None)


def check_output(report: Report, path: str, run_id: str) -> None:
    done = subprocess.run(command(path, run_id), capture_output=True, check=True)
    graph = json.loads(done.stdout)
    steps = sum(span["attributes"].get("count", 0) for span in graph["spans"]
                if span["kind"] == "steps")
    report.figure("JSON size", len(done.stdout) / 2**20, "MiB", fmt="{:,.2f}")
    report.figure("spans", len(graph["spans"]), "", fmt="{:,}",
                  note=f"steps rolled up into them: {steps:,}")


def measure(report: Report, path: str, args: argparse.Namespace) -> None:
    start = time.perf_counter()
    run_id = record(path, args)
    report.figure("recorded", time.perf_counter() - start, "s", fmt="{:,.1f}",
                  note=f"{args.steps:,} steps + 5 checkpoints + 10 evaluations, run {run_id}")
    fresh = str(Path(path).with_name("not_caught_up.db"))
    copy_database(path, fresh)
    applied, seconds = catch_up(path)
    report.figure("catch-up (once, in-process)", seconds, "s", fmt="{:,.2f}",
                  note=f"{applied:,} events, {applied / seconds:,.0f} ev/s")
    report.section("lineage trace RUN --json > /dev/null (projections caught up)")
    print_invocation(report, "1st invocation", invoke(path, run_id), target=True)
    print_invocation(report, "2nd invocation", invoke(path, run_id), target=True)
    check_output(report, path, run_id)
    report.section("same, projections NOT caught up (the CLI catches up itself)")
    print_invocation(report, "1st invocation", invoke(fresh, run_id), target=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100_000, help="steps in the run (100,000)")
    parser.add_argument("--dir", default=None, help="where to create the temp SQLite directory")
    parser.add_argument("--keep", action="store_true", help="keep the SQLite files")
    parser.add_argument("--json", action="store_true", help="also print a JSON dump at the end")
    args = parser.parse_args()

    report = Report.start("bench/trace_json.py: lineage trace RUN --json of a long run (SQLite)")
    report.section("setup")
    with sqlite_store(args.dir, args.keep) as path:
        measure(report, path, args)
    report.finish(args.json)


if __name__ == "__main__":
    main()
