"""A SQLite store whose write lock another connection holds (a backup, a stuck writer, a
``sqlite3`` shell left in a transaction). Invariants as for a full disk: no holes, nothing lost
while the lock is released in time, a lock held past ``retry_for_s`` reported as
``database is locked`` with its count, and the run that lost steps takes no more."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import lineage
from lineage.errors import LOCKED, StepGapError
from tests.faults.helpers import FIGURES, check_prefix, stored_steps, wait_until

MakeTracker = Callable[..., Any]


@contextmanager
def write_lock(path: Path) -> Iterator[threading.Event]:
    """Hold ``path``'s write lock from another connection until the event yielded is set (or
    the block ends)."""
    release = threading.Event()
    taken = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("BEGIN IMMEDIATE")
            taken.set()
            release.wait(300)
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    taken.wait(30)
    FIGURES["faults_injected"] += 1
    FIGURES["sqlite_locks_held"] += 1
    try:
        yield release
    finally:
        release.set()
        holder.join(30)


def started(make_tracker: MakeTracker, path: Path, logged: list[int], **settings: Any) -> Any:
    tracker = make_tracker(str(path), export_otlp=False, lock_timeout_s=0.2, **settings)
    run = tracker.start_run("beside a lock")
    for step in range(100):
        run.log_step(step, {"loss": 1.0})
        logged.append(step)
    tracker.flush()
    return tracker, run


def test_a_lock_released_in_time_loses_nothing(tmp_path: Path,
                                               make_tracker: MakeTracker) -> None:
    path = tmp_path / "lineage.db"
    logged: list[int] = []
    tracker, run = started(make_tracker, path, logged, retry_for_s=120)
    with write_lock(path) as release:
        step = 100
        while step < 600 or not release.is_set():  # training goes on, without flush
            run.log_step(step, {"loss": 1.0 / step})
            logged.append(step)
            step += 1
            if tracker.writer.stats.store_retries >= 3:
                release.set()
            time.sleep(0.001)
    tracker.flush()  # nothing to report
    check_prefix(stored_steps(tracker.store, run.id), logged, scenario="sqlite locked transient",
                 transient=True)
    assert tracker.writer.stats.lost_events == 0 and tracker.writer.stats.store_retries >= 3


def test_a_lock_held_past_the_window_is_reported_as_locked(tmp_path: Path,
                                                           make_tracker: MakeTracker) -> None:
    path = tmp_path / "lineage.db"
    logged: list[int] = []
    tracker, run = started(make_tracker, path, logged, retry_for_s=1.0)
    with write_lock(path):
        for step in range(100, 300):
            run.log_step(step, {"loss": 1.0})
            logged.append(step)
        wait_until(lambda: tracker.writer.stats.store_retries >= 1, "the lock to be hit")
        with pytest.raises(lineage.WriterError) as error:
            tracker.flush()  # waits for the give-up, then reports
        assert error.value.reason == LOCKED and LOCKED in str(error.value)
        stored = stored_steps(tracker.store, run.id)
        assert error.value.lost == len(logged) - len(stored) > 0
        check_prefix(stored, logged, scenario="sqlite locked persistent", transient=False)
        with pytest.raises(StepGapError, match=LOCKED):
            run.log_step(300, {"loss": 0.1})
    run.finish("failed", reason="lost steps to a lock").wait(30)  # the lock is gone: go on
    other = tracker.start_run("after the lock")
    other.log_step(0, {"loss": 1.0})
    tracker.flush()
    assert stored_steps(tracker.store, run.id) == stored
    assert stored_steps(tracker.store, other.id) == [0]
