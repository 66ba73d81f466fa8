"""Recovery leases (lineage.application.recovery_lease): a recovery whose executor died is taken
over once its lease expired; a live executor renews its lease; a slow executor whose attempt
was taken over records nothing more. Time is a FakeClock, except where renewals are awaited."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import lineage
from lineage import LocalRunStatusSource, RecoveryMonitor
from lineage.application.views import ArtifactView
from lineage.domain import Run
from lineage.errors import ValidationError
from lineage.testing import FakeClock
from tests.integration.test_recovery import Resume, corrupted_run, events_of, kinds

DEAD = "node-7/train.py pid 4242 deadbeef"


def test_a_recovery_whose_executor_died_is_taken_over_after_its_lease_expired(
        any_url: str, make_tracker: Callable[..., Any], tmp_path: Path) -> None:
    clock = FakeClock()
    tracker = make_tracker(any_url, clock=clock)
    run, (_, forty) = corrupted_run(tracker, tmp_path)
    assert run.begin_recovery("latest", holder=DEAD, lease_s=60).wait() == 1
    orphan = tracker.resume_run(run.id, forty)  # then it died before handing it to a trainer
    tracker.flush()
    before = tracker.store.max_position()

    held = tracker.recover(run.id, resume=Resume())
    assert held.status == "already_recovering" and DEAD in held.message
    source = LocalRunStatusSource(tracker, clock=clock)
    assert source.poll() == []  # the lease holds: nothing for the monitor either
    tracker.flush()
    assert tracker.store.max_position() == before  # refused: nothing written

    clock.advance(61)
    (signal,) = source.poll()
    assert (signal.signal, signal.error_type, signal.already_recorded) == (
        "recovery.lease_expired", "RecoveryLeaseExpired", True)
    (action,), errors = RecoveryMonitor(tracker, [source], sleep=lambda _: None).poll_once()

    assert errors == [] and action.result is not None and action.result.recovered
    assert action.result.checkpoint is not None and action.result.checkpoint.id == forty.id
    assert kinds(tracker, run.id)[-8:] == [
        "FailureDetected", "RecoveryStarted", "RecoveryFailed", "RecoveryStarted",
        "RecoveryCheckpointSelected", "StepsLost", "RecoveryCompleted", "Finished"]
    first, second = events_of(tracker, run.id, Run.RecoveryStarted)
    (takeover,) = events_of(tracker, run.id, Run.RecoveryFailed)
    assert (first.attempt, first.holder, second.attempt) == (1, DEAD, 2)
    assert second.holder != DEAD and second.lease_until > clock()
    assert (takeover.attempt, takeover.error_type) == (1, "RecoveryLeaseExpired")
    assert DEAD in takeover.message and f"taken over by {second.holder}" in takeover.message
    audit = [row["summary"] for row in tracker.audit(subject=run.id)]
    assert any("RecoveryLeaseExpired" in summary for summary in audit)  # an auditor sees it
    view = tracker.run(run.id)
    assert (view.job_status, view.recovering, view.recovery_attempts) == ("superseded", False, 2)
    assert view.recovery_holder is None and view.recovery_lease_until is None
    assert source.poll() == []
    left = tracker.run(orphan.id)  # the dead executor's run is not left pending forever
    assert left.job_status == "failed" and "attempt 1" in (left.status_reason or "")


def test_an_executor_renews_its_lease_while_it_works(
        durable_url: str, make_tracker: Callable[..., Any], tmp_path: Path) -> None:
    tracker = make_tracker(durable_url)
    run, _ = corrupted_run(tracker, tmp_path)
    seen: list[Any] = []

    def resume(checkpoint: ArtifactView, new_run: lineage.RunHandle) -> None:
        deadline = time.monotonic() + 60  # a long resume: wait until the lease was renewed
        while not (renewed := events_of(tracker, run.id, Run.RecoveryLeaseRenewed)):
            assert time.monotonic() < deadline, "the executor never renewed its lease"
            time.sleep(0.05)
        seen.append(tracker.run(run.id))
        seen.extend(renewed)

    result = tracker.recover(run.id, resume=resume, lease_s=0.9)

    assert result.recovered
    view, renewal, *_ = seen
    (started,) = events_of(tracker, run.id, Run.RecoveryStarted)
    assert (renewal.attempt, renewal.holder) == (1, started.holder)
    assert renewal.lease_until > started.lease_until
    assert view.recovering and view.recovery_holder == started.holder
    assert view.recovery_lease_until is not None and view.recovery_lease_until >= renewal.lease_until


def test_a_slow_executor_whose_attempt_was_taken_over_records_nothing_more(
        any_url: str, make_tracker: Callable[..., Any], tmp_path: Path) -> None:
    clock = FakeClock()
    tracker = make_tracker(any_url, clock=clock)
    run, _ = corrupted_run(tracker, tmp_path)
    taker: list[Any] = []

    def slow_resume(checkpoint: ArtifactView, new_run: lineage.RunHandle) -> None:
        clock.advance(61)  # this executor stalls past its lease; another one takes over
        taker.append(tracker.recover(run.id, resume=Resume(), lease_s=60))

    slow = tracker.recover(run.id, resume=slow_resume, lease_s=60)

    (took,) = taker
    assert took.recovered and slow.status == "taken_over" and not slow.recovered
    assert "taken over" in slow.message
    history = kinds(tracker, run.id)
    assert history.count("RecoveryCompleted") == 1 and history.count("StepsLost") == 1
    assert tracker.run(run.id).superseded_by == took.new_run.id
    (slow_attempt,) = slow.attempts
    orphan = [v for v in tracker.runs() if v.resumed_from == run.id and v.id != took.new_run.id]
    assert [v.status for v in orphan] == ["failed"]  # ended by the taker (or by itself)
    assert "taken over" in (orphan[0].status_reason or "")
    assert slow_attempt.number == 1 and "RecoveryLeaseExpired" in (slow_attempt.error or "")


def test_a_bad_lease_is_refused_before_anything_is_written(
        make_tracker: Callable[..., Any], tmp_path: Path) -> None:
    tracker = make_tracker("memory://")
    run, _ = corrupted_run(tracker, tmp_path)
    tracker.flush()
    before = tracker.store.max_position()
    for bad in (0, -1, "soon", True):
        with pytest.raises(ValidationError, match="lease_s"):
            tracker.recover(run.id, lease_s=bad)
        with pytest.raises(ValidationError, match="lease_s"):
            run.begin_recovery("latest", lease_s=bad)
    tracker.flush()
    assert tracker.store.max_position() == before
