"""``lineage trace RUN`` of a long run: wall time and peak RSS of the CLI process.

Records one run of ``--steps`` (1,000,000) steps with 3 metrics, 5 checkpoints (remote
``tinker://`` uris) and 10 evaluations through the API into a temp SQLite file, takes two
copies of the database as ingest left it (projections not caught up), catches the projections
up once in-process (timed), then runs, each from a fresh helper process that reports the wall
time, the CPU time and ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` (so they are the CLI's alone):

- ``.venv/bin/lineage --db DB trace RUN --json > /dev/null`` twice (the second with every cache
  warm), projections caught up; then once into a pipe to check the JSON and count its spans
  (untimed);
- on the first copy, ``lineage trace RUN`` (the tree for people) right after ingest: the CLI
  catches the projections up itself, then queries;
- on the second copy, the same with ``--json`` (no target).

Targets: ``--json`` caught up: wall <= 10 s and peak RSS <= 300 MB (set for a 10,000,000-step
run: ``--steps 10000000``, about 10 minutes on 2 cores); ``lineage trace RUN`` right after
ingest: wall <= 6 s (set for 1,000,000 steps, shown when ``--steps`` is at most that).
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

from common import Report, add_options, metric_series, open_tracker, read_models, sqlite_store

WALL_TARGET_S = 10.0  # --json, caught up (10,000,000 steps)
RSS_TARGET_MB = 300.0
AFTER_INGEST_TARGET_S = 6.0  # the tree, catch-up included (1,000,000 steps)
AFTER_INGEST_STEPS = 1_000_000
LINEAGE = Path(sys.executable).with_name("lineage")

HELPER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)
wall = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"code": code, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
                  "peak_rss_mb": usage.ru_maxrss / 1024}))
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


def command(path: str, run_id: str, *, json_out: bool = True) -> list[str]:
    return [str(LINEAGE), "--db", path, "trace", run_id, *(["--json"] if json_out else [])]


def invoke(path: str, run_id: str, *, json_out: bool = True) -> dict[str, Any]:
    """Run the CLI from a fresh helper process: wall time and the CLI's peak RSS."""
    done = subprocess.run([sys.executable, "-c", HELPER,
                           *command(path, run_id, json_out=json_out)],
                          capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    if result["code"] != 0:
        raise SystemExit(f"lineage trace failed with exit code {result['code']}")
    return result


def print_invocation(report: Report, label: str, result: dict[str, Any], *,
                     wall: float | None = None, rss: float | None = None) -> None:
    report.figure(f"{label}: wall", result["wall_s"], "s", fmt="{:,.2f}",
                  target=("<=", wall) if wall is not None else None,
                  note=f"CPU {result['cpu_s']:.2f} s")
    report.figure(f"{label}: peak RSS", result["peak_rss_mb"], "MB",
                  target=("<=", rss) if rss is not None else None)


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
    fresh = [str(Path(path).with_name(f"not_caught_up_{n}.db")) for n in (1, 2)]
    for copy in fresh:
        copy_database(path, copy)
    applied, seconds = catch_up(path)
    report.figure("catch-up (once, in-process)", seconds, "s", fmt="{:,.2f}",
                  note=f"{applied:,} notifications, {args.steps / seconds:,.0f} steps/s")
    report.section("lineage trace RUN --json > /dev/null (projections caught up)")
    for label in ("1st invocation", "2nd invocation"):
        print_invocation(report, label, invoke(path, run_id), wall=WALL_TARGET_S,
                         rss=RSS_TARGET_MB)
    check_output(report, path, run_id)
    report.section("right after ingest: the CLI catches the projections up, then queries")
    small = args.steps <= AFTER_INGEST_STEPS
    print_invocation(report, "lineage trace RUN", invoke(fresh[0], run_id, json_out=False),
                     wall=AFTER_INGEST_TARGET_S if small else None)
    print_invocation(report, "lineage trace RUN --json", invoke(fresh[1], run_id))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_options(parser, steps=(1_000_000, "steps in the run"))
    parser.add_argument("--dir", default=None, help="where to create the temp SQLite directory")
    parser.add_argument("--keep", action="store_true", help="keep the SQLite files")
    parser.add_argument("--json", action="store_true", help="also print a JSON dump at the end")
    args = parser.parse_args()

    report = Report.start("bench/trace_json.py: lineage trace RUN of a long run (SQLite)")
    report.section("setup")
    with sqlite_store(args.dir, args.keep) as path:
        measure(report, path, args)
    report.finish(args.json)


if __name__ == "__main__":
    main()
