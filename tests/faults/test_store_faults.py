"""A SQLite store on a real 3 MiB tmpfs that fills up or turns read-only mid-run (the
``small_fs`` fixture; where mounting is not permitted, the same SQLite errors are injected at
the adapter and the figures say so). Invariants: no holes, nothing lost to a transient fault,
a persistent one reported with its cause and count, no call blocked past the give-up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import lineage
from lineage.errors import DISK_FULL, READ_ONLY, StepGapError
from tests.faults.conftest import SmallFilesystem
from tests.faults.helpers import (
    FIGURES,
    Timed,
    check_prefix,
    stored_steps,
    train_until_refused,
    train_while_mending,
)

MakeTracker = Callable[..., Any]
FAULT_KINDS = pytest.mark.parametrize("kind", [DISK_FULL, READ_ONLY])


def open_on(fs: SmallFilesystem, make_tracker: MakeTracker, **settings: Any) -> Any:
    tracker = make_tracker(str(fs.path / "lineage.db"), export_otlp=False, **settings)
    fs.attach(tracker.store)
    return tracker


def broken_after_300_steps(fs: SmallFilesystem, make_tracker: MakeTracker, kind: str,
                           **settings: Any) -> tuple[Any, Any, list[int]]:
    """A tracker on ``fs`` with a run of 300 committed steps; then the store breaks (``kind``).
    Returns the tracker, the run and the steps logged."""
    tracker = open_on(fs, make_tracker, **settings)
    run = tracker.start_run("on a small disk")
    logged = list(range(300))
    for step in logged:
        run.log_step(step, {"loss": 1.0 / (step + 1)})
    tracker.flush()
    break_store(fs, kind)
    return tracker, run, logged


def break_store(fs: SmallFilesystem, kind: str) -> None:
    if kind == DISK_FULL:
        fs.fill()
    else:
        fs.read_only()


def mend_store(fs: SmallFilesystem, kind: str) -> None:
    if kind == DISK_FULL:
        fs.free()
    else:
        fs.writable()


@FAULT_KINDS
def test_a_transient_fault_loses_nothing_and_leaves_no_hole(
        small_fs: SmallFilesystem, make_tracker: MakeTracker, kind: str) -> None:
    tracker, run, logged = broken_after_300_steps(small_fs, make_tracker, kind, retry_for_s=120)
    train_while_mending(tracker, run, logged, lambda: mend_store(small_fs, kind), after_retries=3,
                        first=300, until=1000, pause_s=0.001)
    tracker.flush()  # nothing to report
    check_prefix(stored_steps(tracker.store, run.id), logged, scenario=f"sqlite {kind} transient",
                 transient=True)
    assert tracker.writer.stats.give_ups == 0 and tracker.writer.stats.lost_events == 0
    tracker.close()


@FAULT_KINDS
def test_a_persistent_fault_is_reported_with_its_cause_and_count(
        small_fs: SmallFilesystem, make_tracker: MakeTracker, kind: str) -> None:
    tracker, run, logged = broken_after_300_steps(small_fs, make_tracker, kind, retry_for_s=1.0)
    for step in range(300, 600):
        run.log_step(step, {"loss": 1.0 / (step + 1)})
        logged.append(step)
    with pytest.raises(lineage.WriterError) as error:
        tracker.flush()  # waits for the give-up, then reports
    stored = stored_steps(tracker.store, run.id)
    assert error.value.reason == kind and kind in str(error.value)
    assert error.value.lost == len(logged) - len(stored) > 0
    check_prefix(stored, logged, scenario=f"sqlite {kind} persistent", transient=False)
    with pytest.raises(StepGapError, match=kind):
        run.log_step(600, {"loss": 0.1})

    mend_store(small_fs, kind)  # the store is back: other runs and commands go on
    run.finish("failed", reason="lost steps to the store").wait(30)
    other = tracker.start_run("after the fault")
    other.log_step(0, {"loss": 1.0})
    tracker.close()  # nothing left to report
    store = reopened(small_fs)
    assert stored_steps(store, run.id) == stored and stored_steps(store, other.id) == [0]
    store.close()


def reopened(fs: SmallFilesystem) -> Any:
    from lineage.bootstrap import open_store

    return open_store(str(fs.path / "lineage.db"))


@FAULT_KINDS
def test_a_training_loop_blocked_on_a_full_queue_gets_the_cause_at_the_give_up(
        small_fs: SmallFilesystem, make_tracker: MakeTracker, kind: str) -> None:
    tracker, run, logged = broken_after_300_steps(small_fs, make_tracker, kind, retry_for_s=1.0,
                                                  queue_size=50)
    error = train_until_refused(Timed(run.log_step, f"sqlite {kind}, full queue, retry_for_s=1"),
                                300, logged)
    assert isinstance(error, lineage.WriterError) and error.reason == kind
    stored = stored_steps(tracker.store, run.id)
    assert error.lost == len(logged) - len(stored)
    check_prefix(stored, logged, scenario=f"sqlite {kind} blocked", transient=False)
    mend_store(small_fs, kind)
    tracker.close()
    FIGURES["log_step_calls_blocked_then_failed"] += 1
