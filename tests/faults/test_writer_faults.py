"""The writer against a store that fails on command (DESIGN §4 invariants): no holes, nothing
silent, no call blocked past the give-up without an error that names the cause."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

import lineage
from lineage.errors import DISK_FULL, READ_ONLY, UNREACHABLE, StepGapError, StoreError
from tests.faults.helpers import (
    FIGURES,
    FlakyStore,
    Timed,
    check_prefix,
    stored_steps,
    train_until_refused,
    wait_until,
)

MakeTracker = Callable[..., Any]
DISK_FULL_ERROR = StoreError("could not append to memory://: database or disk is full", DISK_FULL)


def flaky_tracker(make_tracker: MakeTracker, **settings: Any) -> tuple[Any, FlakyStore]:
    store = FlakyStore()
    settings.setdefault("retry_for_s", 0.5)
    return make_tracker("memory://", store=store, **settings), store


def log_while(run: Any, logged: list[int], condition: Callable[[], bool], start: int = 0,
              limit: int = 200_000) -> int:
    """Log steps while ``condition()`` holds (checked every 100 steps); the next step number."""
    step = start
    while step < start + limit:
        run.log_step(step, {"loss": 1.0 / (step + 1)})
        logged.append(step)
        step += 1
        if step % 100 == 0 and not condition():
            return step
    raise AssertionError("the condition never changed")


def heal_when(store: FlakyStore, condition: Callable[[], bool]) -> threading.Thread:
    """Clear the store's failure from another thread once ``condition()`` holds (the training
    thread may be blocked on a full queue meanwhile)."""
    def heal() -> None:
        wait_until(condition, "the faults to heal")
        store.failure = None

    healer = threading.Thread(target=heal, daemon=True)
    healer.start()
    return healer


@pytest.mark.parametrize("reads_fail", [False, True], ids=["appends-fail", "reads-fail-too"])
def test_a_transient_store_failure_loses_nothing_and_leaves_no_hole(
        make_tracker: MakeTracker, reads_fail: bool) -> None:
    tracker, store = flaky_tracker(make_tracker, retry_for_s=60, batch_size=50, queue_size=500)
    run = tracker.start_run("transient")
    logged: list[int] = []
    step = log_while(run, logged, lambda: len(logged) < 300)
    tracker.flush()
    store.fail_reads = reads_fail
    store.failure = DISK_FULL_ERROR
    FIGURES["faults_injected"] += 1
    healer = heal_when(store, lambda: store.faults >= 5)
    log_while(run, logged, lambda: len(logged) < 3000, start=step)  # blocks, then goes on
    healer.join()
    tracker.flush()  # nothing to report
    check_prefix(stored_steps(store, run.id), logged, scenario="memory transient", transient=True)
    assert tracker.writer.stats.store_retries >= 4 and tracker.writer.stats.give_ups == 0


def test_a_persistent_failure_is_reported_by_flush_with_the_cause_and_the_count(
        make_tracker: MakeTracker) -> None:
    tracker, store = flaky_tracker(make_tracker)
    run = tracker.start_run("persistent")
    logged: list[int] = []
    log_while(run, logged, lambda: len(logged) < 200)
    tracker.flush()
    store.failure = DISK_FULL_ERROR
    FIGURES["faults_injected"] += 1
    log_while(run, logged, lambda: len(logged) < 500, start=200)
    with pytest.raises(lineage.WriterError) as error:
        tracker.flush()  # waits for the give-up, then reports
    stored = stored_steps(store, run.id)
    assert error.value.reason == DISK_FULL and "disk full" in str(error.value)
    assert error.value.lost == len(logged) - len(stored) == 300
    check_prefix(stored, logged, scenario="memory persistent", transient=False)
    store.failure = None
    with pytest.raises(StepGapError, match=r"from step 200 on were not committed \(disk full"):
        run.log_step(500, {"loss": 0.1})
    tracker.flush()  # reported once
    run.finish("failed", reason="lost steps").wait(30)  # commands on the run still go on
    assert stored_steps(store, run.id) == stored and tracker.run(run.id).status == "failed"


def test_a_caller_blocked_on_a_full_queue_gets_the_error_at_the_give_up(
        make_tracker: MakeTracker) -> None:
    tracker, store = flaky_tracker(make_tracker, queue_size=20, retry_for_s=0.5)
    run = tracker.start_run("blocked")
    tracker.flush()
    store.failure = StoreError("could not connect: connection refused", UNREACHABLE)
    FIGURES["faults_injected"] += 1
    logged: list[int] = []
    error = train_until_refused(Timed(run.log_step, "memory, full queue, retry_for_s=0.5"), 0,
                                logged)
    assert isinstance(error, lineage.WriterError) and error.reason == UNREACHABLE
    assert error.lost == len(logged)  # every step queued before the give-up, none stored
    check_prefix(stored_steps(store, run.id), logged, scenario="memory blocked",
                 transient=False)
    with pytest.raises(StepGapError, match="unreachable server"):
        run.log_step(10**6, {"loss": 1.0})


def test_after_a_give_up_the_next_call_raises_the_report_once_and_other_runs_go_on(
        make_tracker: MakeTracker) -> None:
    tracker, store = flaky_tracker(make_tracker)
    lost_run, other = tracker.start_run("loses steps"), tracker.start_run("other")
    tracker.flush()
    store.failure = DISK_FULL_ERROR
    lost_run.log_step(0, {"loss": 1.0})
    wait_until(lambda: tracker.writer.stats.give_ups == 1, "the give-up")
    store.failure = None
    # a background helper (heartbeats, retention) does not take the report...
    tracker.recorder.submit("noop", lambda uow: None, tracker.recorder.envelope(),
                            background=True).wait(30)
    with pytest.raises(lineage.WriterError) as error:  # ...the training code's next call does
        other.log_step(0, {"loss": 1.0})
    assert error.value.lost == 1 and error.value.reason == DISK_FULL
    other.log_step(0, {"loss": 1.0})  # once: the same call now goes through
    other.log_eval(0, {"accuracy": 0.5}).wait(30)
    tracker.flush()
    assert stored_steps(store, other.id) == [0] and stored_steps(store, lost_run.id) == []
    with pytest.raises(StepGapError):
        lost_run.log_step(1, {"loss": 1.0})


def test_a_command_submitted_after_a_give_up_raises_the_report_and_is_not_queued(
        make_tracker: MakeTracker) -> None:
    tracker, store = flaky_tracker(make_tracker)
    run = tracker.start_run("r")
    tracker.flush()
    store.failure = DISK_FULL_ERROR
    waited = run.log_eval(1, {"accuracy": 0.5})
    run.log_eval(2, {"accuracy": 0.6})  # nobody waits on this one
    with pytest.raises(StoreError, match=r"gave up after the store failed for .*disk full"):
        waited.wait(60)  # its caller is told by its handle...
    store.failure = None
    with pytest.raises(lineage.WriterError) as error:
        run.log_eval(3, {"accuracy": 0.7})  # ...the other one by the next call
    assert error.value.lost == 1 and error.value.reason == DISK_FULL
    run.log_eval(4, {"accuracy": 0.8}).wait(30)
    tracker.flush()
    assert tracker.run(run.id).evaluations == 1


def test_a_step_refused_by_the_domain_leaves_no_hole(make_tracker: MakeTracker) -> None:
    store = FlakyStore()
    a = make_tracker("memory://", store=store)
    b = make_tracker("memory://", store=store)
    run = a.start_run("finished elsewhere")
    stale = b.run_handle(run.id)
    stale.log_step(0, {"loss": 1.0})
    b.flush()  # B caches the run as running
    run.finish("completed").wait(30)
    stale.log_step(1, {"loss": 0.9})  # refused on B's writer thread: the run ended
    with pytest.raises(lineage.WriterError):
        b.flush()
    with pytest.raises(StepGapError, match="from step 1 on"):
        stale.log_step(2, {"loss": 0.8})
    assert stored_steps(store, run.id) == [0]


def test_a_commit_whose_answer_was_lost_is_not_stored_twice(make_tracker: MakeTracker) -> None:
    tracker, store = flaky_tracker(make_tracker)
    run = tracker.start_run("ambiguous")
    tracker.flush()
    store.commit_then_fail = StoreError("server closed the connection unexpectedly", UNREACHABLE)
    FIGURES["faults_injected"] += 1
    logged = list(range(50))
    for step in logged:
        run.log_step(step, {"loss": 1.0})
    tracker.flush()
    check_prefix(stored_steps(store, run.id), logged, scenario="lost commit answer",
                 transient=True)


def test_an_unexpected_writer_error_is_reported_and_leaves_no_hole(
        make_tracker: MakeTracker) -> None:
    tracker, store = flaky_tracker(make_tracker)
    run = tracker.start_run("bug")
    tracker.flush()
    store.crash_with = RuntimeError("a bug in an adapter")
    run.log_step(0, {"loss": 1.0})
    wait_until(lambda: tracker.writer.stats.lost_events == 1, "the failed batch")
    with pytest.raises(lineage.WriterError, match="a bug in an adapter"):
        run.log_step(1, {"loss": 1.0})
    with pytest.raises(StepGapError):
        run.log_step(1, {"loss": 1.0})
    assert stored_steps(store, run.id) == []


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
        make_tracker: MakeTracker, caplog: pytest.LogCaptureFixture) -> None:
    tracker, store = flaky_tracker(make_tracker, retry_for_s=60)
    run = tracker.start_run("quiet")
    tracker.flush()
    caplog.set_level(logging.WARNING, logger="lineage")
    store.failure = DISK_FULL_ERROR
    run.log_step(0, {"loss": 1.0})
    wait_until(lambda: store.faults >= 4, "several retries")
    store.failure = None
    tracker.flush()
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines
    assert "the store is failing (disk full)" in lines[0] and "store is back" in lines[1]


def test_store_errors_are_classified_in_words() -> None:
    import errno
    import sqlite3

    import psycopg

    from lineage.adapters.errors import store_error

    wrapped = RuntimeError("the library's wrapper")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert [store_error(error, "the store", "append to").kind for error in (
        sqlite3.OperationalError("database or disk is full"),
        sqlite3.OperationalError("attempt to write a readonly database"),
        wrapped, OSError(errno.EROFS, "Read-only file system"),
        psycopg.errors.DiskFull("could not extend file"),
        psycopg.errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"),
        psycopg.OperationalError("connection refused"),
        psycopg.errors.AdminShutdown("terminating connection"),
        RuntimeError("something else"),
    )] == [DISK_FULL, READ_ONLY, DISK_FULL, READ_ONLY, DISK_FULL, READ_ONLY, UNREACHABLE,
           UNREACHABLE, None]
