"""Projection catch-up throughput: every read model at once, from position 0.

Fills a store through the public API, flushes, then times ``ProjectionRunner.catch_up()``
from position 0 into empty read models (traces and spans, registry, edges, audit, step
metrics). Two workloads:

- the mix (default): ``--runs`` 20 runs logged side by side, ``--events`` ~200,000 events in
  all: mostly ``log_step`` with 3 metrics, a checkpoint with a remote ``tinker://`` uri every
  1,000 steps, an evaluation every 500, one run that fails with an OOM, one flagged corrupted
  and recovered into a resumed run. Events/s = events (each step one event) / catch-up time.
- ``--one-run``: ONE run of ``--steps`` (1,000,000) steps with 3 metrics, stored in blocks of
  about a thousand steps. Steps/s and seconds for the whole catch-up.

It also splits the time into reading the log, decoding, each projection's ``apply`` and the
rest (commit, positions, connections), and prints per-batch costs. When a target is missed (or
with ``--profile``) it rebuilds once more under cProfile and prints the top costs.

``--poison N`` (the mix) appends N hostile step rows spread through the log, by turns a step
stored one to a row in the older JSON layout (through the library's mapper) with step 2**63,
which traces and step metrics cannot store, and a step block whose bytes are corrupt, which
no read model can decode: each makes its batch fail and be redone in savepoints, the row
quarantined (``lineage.projections.quarantine``); compare with ``--poison 0`` for the cost of
that path.

Targets: the mix: SQLite >= 30,000 events/s, PostgreSQL >= 15,000 events/s; one run of
1,000,000 steps: catch-up <= 5 s.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from common import (
    Report,
    add_options,
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
ONE_RUN_TARGET_S = 5.0  # catch-up of a 1,000,000-step run
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
        self.poisoned = 0

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
        """Append a step row no read model can store: by turns a legacy one-step row with step
        2**63 and a block with corrupt bytes, each on a step stream of its own."""
        from lineage.codec.step_block import STEPS_TOPIC
        from lineage.domain.steps import StepRecorded

        self.tracker.flush()
        self.poisoned += 1
        run_id = next(iter(self.runs.values())).id
        if self.poisoned % 2:
            now = datetime.now(UTC)
            event = StepRecorded(  # type: ignore[call-arg]
                originator_id=uuid.uuid4(), originator_version=1, timestamp=now, run_id=run_id,
                step=2**63, epoch=None, metrics={"loss": 1.0}, durations=None, tokens=None,
                resources=None, event_id=uuid.uuid4(), occurred_at=now, occurred_at_raw=None,
                source="bench", tenant_id="bench", actor="bench")
            stored = self.tracker.mapper.to_stored_event(event)
        else:
            stored = StoredEvent(uuid.uuid4(), 1, STEPS_TOPIC, b"B" + b"\x00 corrupt" * 8)
        self.tracker.store.append([stored], [uuid.uuid4().hex])

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
    """An open tracker on ``url`` with the workload (the mix, or ``--one-run``) recorded and
    flushed."""
    tracker = open_tracker(url, args)
    start = time.perf_counter()
    if args.one_run:
        record_one_run(tracker, args.steps)
    else:
        Workload(tracker, args.runs, args.events, args.poison).record()
    elapsed = time.perf_counter() - start
    report.figure("notifications stored", tracker.store.max_position(), "", fmt="{:,}",
                  note=f"recorded through the API in {elapsed:.1f} s")
    return tracker


def record_one_run(tracker: Any, steps: int) -> None:
    series = metric_series(10_000)
    run = tracker.start_run("one-run", job=JOB)
    for step in range(1, steps + 1):
        run.log_step(step, series[step % 10_000], epoch=step // 10_000)
    run.finish("completed")
    tracker.flush()


def count_events(store: Any) -> tuple[int, int]:
    """(events, steps) in the log: each step one event, each other notification one."""
    from lineage.projections.batching import steps_in

    events = steps = 0
    start = 1
    while page := store.read_log(start, 1000):
        for note in page:
            count = steps_in(note)
            steps += count
            events += count or 1
        start = page[-1].id + 1
    return events, steps


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


def catch_up(report: Report, runner: Any, events: int) -> float:
    """Time one catch-up from position 0 (``events``: steps and other events in the log);
    print the figures; returns the seconds it took."""
    marks: list[float] = []
    with instrumented(runner) as phases:
        start = time.perf_counter()
        applied = runner.catch_up(lambda at, head: marks.append(time.perf_counter()))
        elapsed = time.perf_counter() - start
    report.figure("catch-up time", elapsed, "s", fmt="{:,.2f}",
                  note=f"{applied:,} notifications, {events:,} events; batches of at most "
                       f"{runner.batch_size:,} notifications, ~{runner.batch_steps:,} steps")
    batches = sorted(b - a for a, b in zip([start, *marks], marks, strict=False))
    report.figure("batches", len(batches), "", fmt="{:,}")
    for p in (50, 90):
        report.figure(f"batch time p{p}", percentile(batches, p) * 1e3, "ms")
    report.figure("batch time max", batches[-1] * 1e3, "ms")
    report.figure("per event", elapsed / events * 1e6, "µs")
    print_phases(report, phases, elapsed, events)
    return elapsed


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


def measure(report: Report, kind: str, url: str, args: argparse.Namespace) -> None:
    tracker = fill(report, url, args)
    try:
        events, steps = count_events(tracker.store)
        with read_models(url, tracker.store, tracker.mapper) as views:
            runner = views.runner
            runner.batch_size = args.projection_batch
            runner.batch_steps = args.projection_steps
            for projection in runner.projections:  # the fill may have caught some up (resume_run)
                runner._reset(projection)
            elapsed = catch_up(report, runner, events)
            if args.one_run:
                missed = elapsed > ONE_RUN_TARGET_S
                report.figure("catch-up steps/s", steps / elapsed, "steps/s", fmt="{:,.0f}")
                report.figure("catch-up of the run", elapsed, "s", fmt="{:,.2f}",
                              target=("<=", ONE_RUN_TARGET_S), note=f"{steps:,} steps")
            else:
                missed = events / elapsed < TARGETS[kind]
                report.figure("catch-up events/s", events / elapsed, "ev/s", fmt="{:,.0f}",
                              target=(">=", TARGETS[kind]))
            report.figure("quarantined", len(runner.quarantined()), "", fmt="{:,}",
                          note="(read model, event) pairs skipped")
            if args.profile or (missed and args.profile is None):
                profile_rebuild(report, runner, args.top)
    finally:
        tracker.close()


def main() -> None:
    from lineage.projections.batching import BATCH, BATCH_STEPS

    parser = bench_parser(__doc__, postgres_default=None, steps=1_000_000,
                          steps_help="steps of the --one-run run")
    add_options(parser, events=(200_000, "events to record, roughly"),
                runs=(20, "runs logged side by side"),
                one_run=(False, "one run of --steps steps instead of the mix"),
                projection_batch=(BATCH, "ProjectionRunner batch_size, its default"),
                projection_steps=(BATCH_STEPS, "ProjectionRunner batch_steps, its default"))
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=None,
                        help="cProfile a rebuild (default: only when a target is missed)")
    parser.add_argument("--top", type=int, default=25, help="profile lines to print (25)")
    parser.add_argument("--poison", type=int, default=0,
                        help="hostile step rows to spread through the log (0; the mix only)")
    args = parser.parse_args()

    workload = f"one run of {args.steps:,} steps" if args.one_run else "the mix"
    report = Report.start(f"bench/projections.py: projection catch-up, all read models ({workload})")
    for kind in stores_wanted(args, report):
        with temp_store(kind, args, report, section=f"{kind}: catch-up from 0") as store:
            measure(report, kind, store.url, args)
    report.finish(args.json)


if __name__ == "__main__":
    main()
