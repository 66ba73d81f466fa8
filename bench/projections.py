"""Projection catch-up throughput: every read model at once, from position 0.

Fills a store through the public API with a realistic mix (``--runs`` 20 runs logged side by
side, ``--events`` ~200,000 events in all: mostly ``log_step`` with 3 metrics, a checkpoint
with a remote ``tinker://`` uri every 1,000 steps, an evaluation every 500, one run that fails
with an OOM, one flagged corrupted and recovered into a resumed run), flushes, then times
``ProjectionRunner.catch_up()`` from position 0 into empty read models (traces and spans,
registry, edges, audit, step metrics). Events/s = notifications applied / catch-up time.

It also splits the time into reading the log, decoding, each projection's ``apply`` and the
rest (commit, positions, connections), and prints per-batch costs. When a target is missed (or
with ``--profile``) it rebuilds once more under cProfile and prints the top costs.

``--poison N`` appends N hostile step events (step 2**63, past validation) spread through the
log: each makes its batch fail and be redone in savepoints, the event quarantined
(``lineage.projections.quarantine``); compare with ``--poison 0`` for the cost of that path.

Targets: SQLite >= 30,000 events/s, PostgreSQL >= 15,000 events/s.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from common import (
    Report,
    bench_parser,
    metric_series,
    open_tracker,
    percentile,
    read_models,
    stores_wanted,
    temp_store,
)
from eventsourcing.persistence import StoredEvent

TARGETS = {"sqlite": 30_000, "postgresql": 15_000}  # events/s
CHECKPOINT_EVERY = 1_000
EVAL_EVERY = 500
JOB = {"model": "meta-llama/Llama-3.1-8B", "adapter": {"type": "lora", "rank": 16},
       "learning": {"lr": 3e-4, "batch_size": 64}}


# -- the workload ------------------------------------------------------------------------------


class Workload:
    """``runs`` runs logged round-robin; run 3 dies of an OOM, run 11 is corrupted and resumed."""

    def __init__(self, tracker: Any, runs: int, events: int, poison: int = 0) -> None:
        self.tracker = tracker
        self.steps = max(int(events / runs / 1.005), 10)  # ~5 other events per 1,000 steps
        self.series = metric_series(10_000)
        dataset = tracker.register_artifact("hf://datasets/org/sft-mix", type="dataset",
                                            checksum="sha256:" + "ab" * 32)
        base = tracker.register_artifact("hf://meta-llama/Llama-3.1-8B", type="model")
        self.runs = {index: tracker.start_run(f"sft-{index}", job=JOB, inputs=[dataset, base])
                     for index in range(runs)}
        self.latest: dict[int, Any] = {}
        self.poison_every = self.steps // (poison + 1) if poison else 0

    def record(self) -> None:
        fail_at, corrupt_at = self.steps * 6 // 10, self.steps // 2
        for step in range(1, self.steps + 1):
            for index in list(self.runs):
                self._step(index, step)
            if step == fail_at and 3 in self.runs:
                self._fail(3, step)
            if step == corrupt_at and 11 in self.latest:  # it has a checkpoint to resume from
                self._recover(11, step)
            if self.poison_every and step % self.poison_every == 0:
                self._poison()
        for run in self.runs.values():
            run.finish("completed")
        self.tracker.flush()

    def _step(self, index: int, step: int) -> None:
        run = self.runs[index]
        run.log_step(step, self.series[step % 10_000], epoch=step // 5_000)
        if step % CHECKPOINT_EVERY == 0:
            self.latest[index] = run.save_checkpoint(
                f"tinker://{run.id}/weights/step-{step}", step=step, format="safetensors",
                includes_optimizer=True)
        if step % EVAL_EVERY == 0:
            run.log_eval(step, {"val_loss": self.series[step % 10_000]["loss"] * 1.1},
                         dataset="val")

    def _poison(self) -> None:
        """Append a step event no read model can store (step 2**63) on a stream of its own."""
        self.tracker.flush()
        store = self.tracker.store
        recent = store.read_log(max(store.max_position() - 200, 1), 200)
        last = [note for note in recent if note.topic.endswith(":StepRecorded")][-1]
        state = json.loads(last.state)
        state.update(step=2**63, event_id={"_type_": "uuid_hex", "_data_": uuid.uuid4().hex})
        store.append([StoredEvent(uuid.uuid4(), 1, last.topic, json.dumps(state).encode())],
                     [str(uuid.uuid4())])

    def _fail(self, index: int, step: int) -> None:
        run = self.runs.pop(index)
        run.record_failure("OOM", "CUDA out of memory", retryable=False, step=step)
        run.finish("failed", reason="OOM")

    def _recover(self, index: int, step: int) -> None:
        run, checkpoint = self.runs[index], self.latest[index].wait()
        run.record_failure("backend_corrupted", "flagged by the service", signal="tinker.corrupted",
                           corrupted=True, retryable=True, step=step)
        run.begin_recovery("latest").wait()
        run.select_recovery_checkpoint(checkpoint, step=checkpoint.step, reason="latest").wait()
        resumed = self.tracker.resume_run(run, checkpoint)
        run.complete_recovery(resumed, checkpoint).wait()
        self.runs[index] = resumed


def fill(report: Report, url: str, args: argparse.Namespace) -> Any:
    """An open tracker on ``url`` with the workload recorded and flushed."""
    tracker = open_tracker(url, args)
    start = time.perf_counter()
    Workload(tracker, args.runs, args.events, args.poison).record()
    elapsed = time.perf_counter() - start
    head = tracker.store.max_position()
    report.figure("events stored", head, "", fmt="{:,}",
                  note=f"recorded through the API in {elapsed:.1f} s")
    return tracker


# -- timing catch-up ---------------------------------------------------------------------------


class Phases:
    """Seconds spent per phase of the runner's loop, from thin wrappers (no profiler)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def timed(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start

        return wrapper


class TimedStore:
    """The event store with ``read_log`` timed; everything else passes through."""

    def __init__(self, store: Any, phases: Phases) -> None:
        self._store = store
        self.read_log = phases.timed("read_log", store.read_log)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@contextmanager
def instrumented(runner: Any) -> Iterator[Phases]:
    """Time read_log, decode and each projection's apply for the duration of the block."""
    from lineage.projections import runner as runner_module

    phases, decode, store = Phases(), runner_module.decode_each, runner.store
    runner.store = TimedStore(store, phases)
    runner_module.decode_each = phases.timed("decode", decode)  # type: ignore[attr-defined]
    for projection in runner.projections:
        projection.apply = phases.timed(f"apply {projection.name}", projection.apply)
    try:
        yield phases
    finally:
        runner.store, runner_module.decode_each = store, decode  # type: ignore[attr-defined]
        for projection in runner.projections:
            del projection.apply


def catch_up(report: Report, runner: Any, target: float) -> float:
    """Time one catch-up from position 0; print the figures; returns events/s."""
    marks: list[float] = []
    with instrumented(runner) as phases:
        start = time.perf_counter()
        applied = runner.catch_up(lambda at, head: marks.append(time.perf_counter()))
        elapsed = time.perf_counter() - start
    rate = applied / elapsed
    report.figure("catch-up events/s", rate, "ev/s", fmt="{:,.0f}", target=(">=", target))
    report.figure("catch-up time", elapsed, "s", fmt="{:,.2f}",
                  note=f"{applied:,} events, batch_size {runner.batch_size:,}")
    batches = sorted(b - a for a, b in zip([start, *marks], marks, strict=False))
    report.figure("batches", len(batches), "", fmt="{:,}")
    for p in (50, 90):
        report.figure(f"batch time p{p}", percentile(batches, p) * 1e3, "ms")
    report.figure("batch time max", batches[-1] * 1e3, "ms")
    report.figure("per event", elapsed / applied * 1e6, "µs")
    print_phases(report, phases, elapsed, applied)
    return rate


def print_phases(report: Report, phases: Phases, elapsed: float, applied: int) -> None:
    accounted = sum(phases.seconds.values())
    rest = {"commit, positions, rest": elapsed - accounted}
    for name, seconds in {**phases.seconds, **rest}.items():
        report.figure(f"  {name}", seconds / applied * 1e6, "µs/event",
                      fmt="{:,.2f}", note=f"{seconds / elapsed:.0%}")


def profile_rebuild(report: Report, runner: Any, top: int) -> None:
    """Rebuild every read model from position 0 under cProfile; print the top costs."""
    report.note("cProfile of a full rebuild (rates under the profiler are ~2x lower)")
    profile = cProfile.Profile()
    profile.enable()
    runner.rebuild()
    profile.disable()
    stats = pstats.Stats(profile)
    for key in ("tottime", "cumulative"):
        print(f"# projection profile, top {top} by {key}")
        stats.sort_stats(key).print_stats(top)


# -- main --------------------------------------------------------------------------------------


def measure(report: Report, url: str, args: argparse.Namespace, target: float) -> None:
    tracker = fill(report, url, args)
    try:
        with read_models(url, tracker.store, tracker.mapper) as views:
            runner = views.runner
            runner.batch_size = args.projection_batch
            rate = catch_up(report, runner, target)
            report.figure("quarantined", len(runner.quarantined()), "", fmt="{:,}",
                          note="(read model, event) pairs skipped")
            if args.profile or (rate < target and args.profile is None):
                profile_rebuild(report, runner, args.top)
    finally:
        tracker.close()


def main() -> None:
    parser = bench_parser(__doc__, postgres_default=None)
    parser.add_argument("--events", type=int, default=200_000, help="events to record (~200,000)")
    parser.add_argument("--runs", type=int, default=20, help="runs logged side by side (20)")
    parser.add_argument("--projection-batch", type=int, default=2_000,
                        help="ProjectionRunner batch_size (2,000, the default)")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=None,
                        help="cProfile a rebuild (default: only when a target is missed)")
    parser.add_argument("--top", type=int, default=25, help="profile lines to print (25)")
    parser.add_argument("--poison", type=int, default=0,
                        help="hostile step events to spread through the log (0)")
    args = parser.parse_args()

    report = Report.start("bench/projections.py: projection catch-up throughput (all read models)")
    for kind in stores_wanted(args, report):
        with temp_store(kind, args, report, section=f"{kind}: catch-up from 0") as store:
            measure(report, store.url, args, TARGETS[kind])
    report.finish(args.json)


if __name__ == "__main__":
    main()
