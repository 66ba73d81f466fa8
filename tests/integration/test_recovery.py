"""The recovery executor (``tracker.recover``) end to end, on every store.

Checkpoints are real files; the user's resume function is a recorder; sleeps are recorded, never
waited.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import lineage
from lineage import LocalRunStatusSource
from lineage.application.handles import ArtifactRef
from lineage.application.views import ArtifactView, LostSteps
from lineage.domain import Artifact, Run
from lineage.errors import ValidationError

RETRY = lineage.RetryPolicy(max_attempts=3, backoff="exponential", initial_delay_s=5,
                            max_delay_s=60)


class Resume:
    """A resume function that records its calls and fails as told."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls: list[tuple[ArtifactView, lineage.RunHandle]] = []

    def __call__(self, checkpoint: ArtifactView, new_run: lineage.RunHandle) -> None:
        self.calls.append((checkpoint, new_run))
        if self.failures:
            raise self.failures.pop(0)


def corrupted_run(tracker: lineage.Tracker, folder: Path, *, last: int = 47,
                  checkpoints: tuple[int, ...] = (20, 40), optimizer: bool = True,
                  evals: dict[int, float] | None = None) -> tuple[lineage.RunHandle,
                                                                  list[ArtifactRef]]:
    """Checkpoints at ``checkpoints``, steps up to ``last``, then the backend flags it."""
    run = tracker.start_run("sft", job={"checkpoint_policy": {
        "strategy": "steps", "save_every": 20, "best_metric": "val_loss"}})
    refs = []
    for step in range(1, last + 1):
        run.log_step(step, {"loss": 1.0 / step})
        if step in checkpoints:
            path = folder / f"{run.id.hex[:8]}-{step}.safetensors"
            path.write_bytes(f"weights and optimizer of {run.id} at {step}".encode())
            refs.append(run.save_checkpoint(path, step=step, includes_optimizer=optimizer))
        if evals and step in evals:
            run.log_eval(step, {"val_loss": evals[step]})
    run.record_failure("backend_corrupted", "the service flagged the session", corrupted=True,
                       signal="tinker.corrupted", retryable=True, step=last)
    return run, refs


def kinds(tracker: lineage.Tracker, run_id: Any) -> list[str]:
    return [type(e).__name__ for e in tracker.run_events(run_id, steps=False)]


def events_of(tracker: lineage.Tracker, stream: Any, kind: type) -> list[Any]:
    events = [tracker.mapper.to_domain_event(s) for s in tracker.store.read_stream(stream)]
    return [event for event in events if isinstance(event, kind)]


def local(ref: ArtifactRef) -> Path:
    return Path(ref.uri.removeprefix("file://"))


def test_corrupted_at_47_resumes_from_40_with_the_optimizer_and_marks_41_to_47_lost(
        any_url: str, make_tracker: Callable[..., Any], tmp_path: Path) -> None:
    tracker = make_tracker(any_url)
    run, (_, forty) = corrupted_run(tracker, tmp_path)
    resume, slept = Resume(), []

    result = tracker.recover(run.id, strategy="latest", restore_optimizer=True, retry=RETRY,
                             resume=resume, sleep=slept.append)

    assert (result.status, result.recovered, result.optimizer_restored) == ("recovered", True,
                                                                            True)
    assert result.checkpoint is not None and result.checkpoint.id == forty.id
    assert result.lost_steps == LostSteps(41, 47, 7)
    assert result.rejected == () and slept == [] and len(result.attempts) == 1
    ((checkpoint, new_run),) = resume.calls
    assert (checkpoint.step, new_run) == (40, result.new_run)
    old, new = tracker.run(run.id), tracker.run(new_run.id)
    assert (old.job_status, old.superseded_by, old.lost_steps) == ("superseded", new.id,
                                                                   LostSteps(41, 47, 7))
    assert (new.job_status, new.resumed_from, new.start_step) == ("pending", run.id, 40)
    assert kinds(tracker, run.id)[-6:] == ["FailureDetected", "RecoveryStarted",
                                           "RecoveryCheckpointSelected", "StepsLost",
                                           "RecoveryCompleted", "Finished"]
    (selected,) = events_of(tracker, run.id, Run.RecoveryCheckpointSelected)
    assert selected.step == 40 and "sha256 matches" in selected.reason
    (link,) = events_of(tracker, new.id, Run.ResumedFrom)
    assert (link.previous_run_id, link.checkpoint_id, link.step, link.optimizer_restored) == (
        run.id, forty.id, 40, True)
    (verified,) = events_of(tracker, forty.id, Artifact.Verified)
    assert verified.ok is True
    with new_run:  # the trainer goes on in the new run
        for step in range(41, 50):
            new_run.log_step(step, {"loss": 0.01})
    assert tracker.run(new_run.id).job_status == "completed"


@pytest.mark.parametrize(("damage", "why"), [("delete", "is missing"),
                                             ("corrupt", "is corrupted")])
def test_a_missing_or_corrupted_latest_checkpoint_falls_back_to_the_previous_one(
        any_url: str, make_tracker: Callable[..., Any], tmp_path: Path, damage: str,
        why: str) -> None:
    tracker = make_tracker(any_url)
    run, (twenty, forty) = corrupted_run(tracker, tmp_path)
    tracker.flush()
    if damage == "delete":
        local(forty).unlink()
    else:
        local(forty).write_bytes(b"half-written garbage")

    result = tracker.recover(run, resume=Resume())

    assert result.recovered and result.checkpoint is not None
    assert result.checkpoint.id == twenty.id and result.lost_steps == LostSteps(21, 47, 27)
    ((rejected_id, step, reason),) = [(r.checkpoint_id, r.step, r.reason)
                                      for r in result.rejected]
    assert (rejected_id, step) == (forty.id, 40) and why in reason
    (recorded,) = events_of(tracker, run.id, Run.RecoveryCheckpointRejected)
    assert (recorded.checkpoint_id, recorded.step, recorded.attempt) == (forty.id, 40, 1)
    assert why in recorded.reason
    verdicts = [e.ok for e in events_of(tracker, forty.id, Artifact.Verified)]
    assert verdicts == [False]
    assert tracker.artifact(forty.id).last_verified_ok is False


def test_weights_only_checkpoints_fail_clearly_unless_weights_only_is_allowed(
        any_url: str, make_tracker: Callable[..., Any], tmp_path: Path) -> None:
    tracker = make_tracker(any_url)
    run, (_, forty) = corrupted_run(tracker, tmp_path, optimizer=False)
    resume = Resume()

    refused = tracker.recover(run, restore_optimizer=True, resume=resume)

    assert refused.status == "no_checkpoint" and resume.calls == []
    assert "holds weights only (no optimizer state) and restore_optimizer=True" in refused.message
    assert [r.step for r in refused.rejected] == [40, 20]
    (failed,) = events_of(tracker, run.id, Run.RecoveryFailed)
    assert failed.error_type == "NoValidCheckpoint"
    view = tracker.run(run.id)
    assert view.job_status == "corrupted" and "recovery failed: NoValidCheckpoint" in (
        view.status_reason or "")

    allowed = tracker.recover(run, restore_optimizer=True, allow_weights_only=True, resume=resume)

    assert allowed.recovered and allowed.checkpoint is not None
    assert (allowed.checkpoint.id, allowed.optimizer_restored) == (forty.id, False)
    (link,) = events_of(tracker, allowed.new_run.id, Run.ResumedFrom)  # type: ignore[union-attr]
    assert link.optimizer_restored is False
    (selected,) = events_of(tracker, run.id, Run.RecoveryCheckpointSelected)
    assert selected.attempt == 2 and "weights only" in selected.reason


def test_retryable_failures_are_retried_with_backoff_until_exhausted(
        any_url: str, make_tracker: Callable[..., Any], tmp_path: Path) -> None:
    tracker = make_tracker(any_url)
    run, _ = corrupted_run(tracker, tmp_path)
    resume, slept = Resume(*(TimeoutError("backend slow") for _ in range(3))), []

    result = tracker.recover(run, retry=RETRY, resume=resume, sleep=slept.append)

    assert result.status == "exhausted" and slept == [5, 10]
    assert [(a.number, a.retryable, a.delay_s) for a in result.attempts] == [
        (1, True, 5), (2, True, 10), (3, True, None)]
    assert all(a.error == "TimeoutError: backend slow" for a in result.attempts)
    history = kinds(tracker, run.id)
    assert history.count("RecoveryStarted") == 3 and history.count("RecoveryFailed") == 3
    assert history[-1] == "RecoveryExhausted"
    for attempt in result.attempts:  # each attempt's new run ended failed, linked to the old
        tried = tracker.run(attempt.new_run_id)
        assert (tried.job_status, tried.resumed_from) == ("failed", run.id)
    view = tracker.run(run.id)
    assert (view.job_status, view.superseded_by) == ("corrupted", None)
    assert "recovery exhausted after 3 attempt(s): TimeoutError: backend slow" in (
        view.status_reason or "")


def test_a_retry_that_succeeds_and_an_error_that_is_not_retryable(
        any_url: str, make_tracker: Callable[..., Any], tmp_path: Path) -> None:
    tracker = make_tracker(any_url)
    flaky, _ = corrupted_run(tracker, tmp_path)
    slept: list[float] = []

    recovered = tracker.recover(flaky, retry=RETRY, resume=Resume(ConnectionResetError()),
                                sleep=slept.append)

    assert recovered.recovered and len(recovered.attempts) == 2 and slept == [5]
    assert kinds(tracker, flaky.id).count("RecoveryStarted") == 2

    broken, _ = corrupted_run(tracker, tmp_path)
    failed = tracker.recover(broken, retry=RETRY, resume=Resume(ValueError("shape mismatch")),
                             sleep=slept.append)

    assert failed.status == "failed" and len(failed.attempts) == 1 and slept == [5]
    assert "not retryable: ValueError: shape mismatch" in failed.message


def test_the_job_spec_retry_policy_is_the_default(make_tracker: Callable[..., Any],
                                                  tmp_path: Path) -> None:
    tracker = make_tracker("memory://")
    run = tracker.start_run("sft", job={"retry_policy": {"max_attempts": 2, "initial_delay_s": 7}})
    path = tmp_path / "c.bin"
    path.write_bytes(b"c")
    run.save_checkpoint(path, step=0, includes_optimizer=True)
    run.record_failure("crash", corrupted=True)
    slept: list[float] = []

    result = tracker.recover(run, resume=Resume(TimeoutError(), TimeoutError()), sleep=slept.append)

    assert result.status == "exhausted" and slept == [7]


def test_two_executors_racing_exactly_one_recovers(durable_url: str,
                                                   make_tracker: Callable[..., Any],
                                                   tmp_path: Path) -> None:
    writer = make_tracker(durable_url)
    run, _ = corrupted_run(writer, tmp_path)
    writer.flush()
    executors = [make_tracker(durable_url) for _ in range(4)]  # as if four processes
    start, others_done = threading.Barrier(len(executors)), threading.Event()
    results: list[Any] = [None] * len(executors)

    def resume(checkpoint: ArtifactView, new_run: lineage.RunHandle) -> None:
        assert others_done.wait(60), "the other executors never returned"

    def race(index: int) -> None:
        start.wait()
        results[index] = executors[index].recover(run.id, resume=resume)
        if results[index].status != "recovered" and sum(r is not None for r in results) == 3:
            others_done.set()

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(executors))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    statuses = sorted(result.status for result in results)
    assert statuses == ["already_recovering"] * 3 + ["recovered"]
    losers = [r for r in results if not r.recovered]
    assert all("is already recovering" in r.message for r in losers)
    view = executors[0].run(run.id)
    assert view.recovery_attempts == 1 and view.job_status == "superseded"
    assert len([v for v in executors[0].runs() if v.resumed_from == run.id]) == 1


def test_strategies_best_and_one_checkpoint(any_url: str, make_tracker: Callable[..., Any],
                                            tmp_path: Path) -> None:
    tracker = make_tracker(any_url)
    run, (twenty, _) = corrupted_run(tracker, tmp_path, evals={20: 0.3, 40: 0.6})
    tracker.flush()
    assert tracker.run(run.id).best_checkpoint == twenty.id

    best = tracker.recover(run, strategy="best", resume=Resume())
    assert best.checkpoint is not None and best.checkpoint.id == twenty.id

    again, again_refs = corrupted_run(tracker, tmp_path)
    chosen = tracker.recover(again, strategy=again_refs[0], resume=Resume())  # a ref: step 20
    assert chosen.checkpoint is not None and chosen.checkpoint.step == 20

    missing, refs = corrupted_run(tracker, tmp_path)
    tracker.flush()
    local(refs[0]).unlink()
    refused = tracker.recover(missing, strategy=str(refs[0].id), resume=Resume())
    assert refused.status == "no_checkpoint"  # one checkpoint asked for: no fallback
    assert [r.step for r in refused.rejected] == [20]


def test_a_resumed_run_that_crashes_before_its_first_checkpoint_resumes_from_the_same_one(
        any_url: str, make_tracker: Callable[..., Any], tmp_path: Path) -> None:
    tracker = make_tracker(any_url)
    first, (_, forty) = corrupted_run(tracker, tmp_path)
    second = tracker.recover(first, resume=Resume()).new_run
    assert second is not None
    for step in range(41, 46):
        second.log_step(step, {"loss": 0.5})
    second.record_failure("ProcessLost", "worker gone", retryable=True, step=45)

    result = tracker.recover(second, resume=Resume())

    assert result.checkpoint is not None and result.checkpoint.id == forty.id
    assert result.lost_steps == LostSteps(41, 45, 5)


def test_what_is_refused_is_a_result_and_bad_arguments_store_nothing(
        any_url: str, make_tracker: Callable[..., Any], tmp_path: Path) -> None:
    tracker = make_tracker(any_url)
    healthy = tracker.start_run("healthy")
    healthy.log_step(1, {"loss": 1.0})
    assert tracker.recover(healthy).status == "no_failure"

    run, _ = corrupted_run(tracker, tmp_path)
    before = kinds(tracker, run.id)
    for bad, field in ((dict(strategy="newest"), "strategy"), (dict(resume="train.py"), "resume"),
                       (dict(retry={"max_attempts": 0}), "retry.max_attempts")):
        with pytest.raises(ValidationError) as caught:
            tracker.recover(run, **bad)
        assert caught.value.field == field
    assert kinds(tracker, run.id) == before

    first = tracker.recover(run, resume=Resume())
    second = tracker.recover(run, resume=Resume())
    assert second.status == "already_recovered" and str(first.new_run.id) in second.message  # type: ignore[union-attr]


def test_checkpoints_retention_retired_are_not_fallbacks(
        any_url: str, make_tracker: Callable[..., Any], tmp_path: Path) -> None:
    tracker = make_tracker(any_url)
    run = tracker.start_run("sft", job={"checkpoint_policy": {
        "strategy": "steps", "save_every": 10, "keep_last": 1}})
    refs = []
    for step in range(1, 41):
        run.log_step(step, {"loss": 1.0})
        if run.should_checkpoint(step):
            path = tmp_path / f"{step}.bin"
            path.write_bytes(str(step).encode())
            refs.append(run.save_checkpoint(path, step=step, includes_optimizer=True))
    run.record_failure("crash", corrupted=True)
    tracker.flush()
    local(refs[-1]).unlink()  # the only live checkpoint is gone

    result = tracker.recover(run, resume=Resume())

    assert result.status == "no_checkpoint"
    assert [(r.step, r.reason.split(" ")[0]) for r in result.rejected] == [(40, "file")]
    latest_retired = tracker.recover(run, strategy=str(refs[0].id), resume=Resume())
    assert [r.reason for r in latest_retired.rejected] == ["is retired (its bytes were deleted)"]


def test_a_completed_run_is_not_recovered_and_nothing_is_written(
        any_url: str, make_tracker: Callable[..., Any], tmp_path: Path) -> None:
    tracker = make_tracker(any_url)
    run, _ = corrupted_run(tracker, tmp_path)  # a failure recorded, then ...
    run.finish("completed").wait()  # ... the run completed after all
    tracker.flush()
    before = tracker.store.max_position()
    result = tracker.recover(run, resume=Resume())
    assert result.status == "finished" and "completed" in result.message and not result.recovered
    tracker.flush()
    assert tracker.store.max_position() == before
    view = tracker.run(run.id)
    assert view.status == "completed" and not view.recovering and view.recovery_attempts == 0
    assert LocalRunStatusSource(tracker).poll() == []  # the monitor leaves it alone too


def test_lineage_recover_on_a_completed_run_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lineage.cli.main import main

    db = str(tmp_path / "done.db")
    with lineage.Tracker(db) as tracker:
        with tracker.start_run("done") as run:
            run.log_step(1, {"loss": 1.0})
        before = tracker.store.max_position()
    code = main(["--db", db, "recover", str(run.id), "--reason", "looks wrong", "--json"])
    out = capsys.readouterr().out
    assert code == 1 and '"finished"' in out
    with lineage.Tracker(db) as tracker:
        assert tracker.store.max_position() == before
        assert tracker.run(run.id).job_status == "completed"
