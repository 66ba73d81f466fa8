"""One read path: `lineage runs` and one monitor poll on a store of many runs and one long run.

It records `--runs` short runs (10 steps and a checkpoint each, finished) and one run of
`--steps` steps, catches the read models up (timed, printed), then times, on the caught-up
store: `lineage runs` in-process (`main(["runs"])`, output discarded: opening the tracker, the
query, the table of the newest 100 runs), `lineage runs --all` (every run: a 1,000-row table),
`lineage runs` as a new process (with, beside it, the interpreter starting and importing the
CLI and nothing else), `Tracker.runs()` (every run), one `LocalRunStatusSource.poll()` (what the
monitor does each interval), `runs show LONG_RUN` and `Tracker.resolve(prefix)`. Each is the
median of `--repeat` calls. Then it logs `--more` steps to the long run and times the same calls again
(after the catch-up): the "after/before" ratios show whether a query grows with the number of
steps. SQLite by default, `--postgres` for PostgreSQL.
Targets: **`lineage runs` and a monitor poll <= 300 ms each; after/before <= 1.5**.
"""

from __future__ import annotations

import contextlib
import io
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Report, add_options, bench_parser, open_tracker, single_store, temp_store

QUERY_TARGET_MS = 300.0


def record(tracker: Any, runs: int, steps: int, directory: Path) -> Any:
    """``runs`` short finished runs, then one long open run of ``steps`` steps; its handle."""
    for index in range(runs):
        with tracker.start_run(f"short-{index}", wait=False) as run:
            for step in range(10):
                run.log_step(step, {"loss": 1.0 / (step + 1)})
            checkpoint = directory / f"short-{index}.bin"
            checkpoint.write_bytes(f"weights {index}".encode())
            run.save_checkpoint(checkpoint, step=9)
    long_run = tracker.start_run("long")
    add_steps(long_run, 0, steps)
    return long_run


def add_steps(run: Any, start: int, count: int) -> None:
    for step in range(start, start + count):
        run.log_step(step, {"loss": 1.0, "lr": 1e-4, "grad_norm": 0.5}, epoch=step // 10_000)
    run.flush()


def median_ms(call: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def cli(db: str, *argv: str) -> Callable[[], None]:
    from lineage.cli.main import main

    def call() -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            code = main(["--db", db, *argv])
        if code != 0:
            raise RuntimeError(f"lineage {' '.join(argv)} exited {code}")

    return call


RUN_CLI = "import sys; from lineage.cli.main import main; sys.exit(main(sys.argv[1:]))"


def process(*argv: str) -> Callable[[], None]:
    def call() -> None:
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)

    return call


def measure(report: Report, url: str, tracker: Any, long_id: Any, repeat: int) -> dict[str, float]:
    from lineage import LocalRunStatusSource

    source = LocalRunStatusSource(tracker, stale_after_s=300)
    prefix = str(long_id)[:8]
    python = [sys.executable, "-c"]
    calls = {
        "lineage runs": cli(url, "runs"),
        "lineage runs --all": cli(url, "runs", "--all"),
        "new process: lineage runs": process(*python, RUN_CLI, "--db", url, "runs"),
        "new process: import only": process(*python, "import lineage.cli.main"),
        "Tracker.runs()": tracker.runs,
        "monitor poll": source.poll,
        "runs show LONG": cli(url, "runs", "show", str(long_id)),
        "resolve(prefix)": lambda: tracker.resolve(prefix, "run"),
    }
    found = {}
    for name, call in calls.items():
        target = ("<=", QUERY_TARGET_MS) if name in ("lineage runs", "monitor poll") else None
        found[name] = median_ms(call, repeat)
        report.figure(name, found[name], "ms", target=target)
    return found


def catch_up(report: Report, tracker: Any, steps_label: str) -> None:
    started = time.perf_counter()
    tracker.views.runner.catch_up()
    seconds = time.perf_counter() - started
    report.figure(f"catch-up ({steps_label})", seconds, "s", fmt="{:,.2f}")


def main() -> None:
    parser = bench_parser(__doc__ or "", postgres_default=False, steps=100_000,
                          steps_help="steps of the long run first")
    add_options(parser, runs=(1000, "short runs"),
                more=(900_000, "steps added to the long run before the second measurement "
                               "(with the default --steps: 1,000,000 in all)"),
                repeat=(5, "calls per figure (median)"))
    args = parser.parse_args()
    report = Report.start("read path: runs and monitor poll vs steps")
    with temp_store(single_store(args), args, report, "record") as store, \
            tempfile.TemporaryDirectory(prefix="lineage-read-path-") as files:
        tracker = open_tracker(store.url, args)
        directory = Path(files)  # the checkpoints' bytes; never the working directory
        started = time.perf_counter()
        long_run = record(tracker, args.runs, args.steps, directory)
        report.figure("recorded", time.perf_counter() - started, "s", fmt="{:,.1f}",
                      note=f"{args.runs:,} runs + one of {args.steps:,} steps")
        catch_up(report, tracker, f"{args.steps:,} steps")
        report.section(f"queries, long run at {args.steps:,} steps")
        before = measure(report, store.url, tracker, long_run.id, args.repeat)
        add_steps(long_run, args.steps, args.more)
        report.section("catch-up after the added steps")
        catch_up(report, tracker, f"+{args.more:,} steps")
        total = args.steps + args.more
        report.section(f"queries, long run at {total:,} steps")
        after = measure(report, store.url, tracker, long_run.id, args.repeat)
        report.section("growth with the number of steps (after / before)")
        for name in before:
            target = ("<=", 1.5) if name in ("lineage runs", "monitor poll") else None
            report.figure(name, after[name] / before[name], "x", fmt="{:,.2f}", target=target)
        long_run.finish()
        tracker.close()
    report.finish(args.json)


if __name__ == "__main__":
    main()
