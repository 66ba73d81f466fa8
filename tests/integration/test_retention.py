"""Retention and best tracking through the public API, on every store.

Checkpoints are real files under tmp_path; ``tracker.flush()`` waits for the retention the
committed saves set off (retire events, deletions, their outcomes).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import lineage
from lineage.adapters.storage import LocalArtifactStorage
from lineage.application.handles import ArtifactRef
from lineage.application.policies import CheckpointPolicy
from lineage.application.retention import RunCheckpoints, retire_outside_policy
from lineage.domain import Artifact
from lineage.errors import ValidationError

KEEP_2 = CheckpointPolicy(strategy="steps", save_every=10, keep_last=2)
KEEP_1_BEST = CheckpointPolicy(strategy="steps", save_every=10, keep_last=1,
                               best_metric="val_loss", best_mode="min")


def save(run: lineage.RunHandle, folder: Path, step: int, *, content: bytes | None = None,
         name: str | None = None) -> ArtifactRef:
    """Log ``step`` and save a checkpoint file for it (unique bytes unless ``content``)."""
    run.log_step(step, {"loss": 1.0 / step})
    path = folder / (name or f"{run.id.hex[:8]}-{step}.bin")
    path.write_bytes(content if content is not None else f"{run.id}:{step}".encode())
    return run.save_checkpoint(path, step=step, includes_optimizer=True)


def states(tracker: lineage.Tracker, refs: list[ArtifactRef]) -> list[str]:
    return [tracker.artifact(ref.id).status for ref in refs]


def artifact_events(tracker: lineage.Tracker, ref: ArtifactRef, kind: type) -> list[Any]:
    events = [tracker.mapper.to_domain_event(s) for s in tracker.store.read_stream(ref.id)]
    return [event for event in events if isinstance(event, kind)]


def test_keep_last_retires_older_checkpoints_then_deletes_their_files(
        any_url: str, make_tracker: Callable[..., Any], tmp_path: Path) -> None:
    tracker = make_tracker(any_url)
    run = tracker.start_run("sft", job={"checkpoint_policy": KEEP_2})
    refs = [save(run, tmp_path, step) for step in (10, 20, 30, 40)]
    tracker.flush()

    assert states(tracker, refs) == ["retired", "retired", "live", "live"]
    for ref in refs:
        view = tracker.artifact(ref.id)
        assert Path(ref.uri.removeprefix("file://")).exists() == (view.status == "live")
        assert view.deletion == (None if view.status == "live" else "deleted")
    (retired,) = artifact_events(tracker, refs[0], Artifact.Retired)
    assert retired.reason == "keep_last=2: 2 newer checkpoint(s) kept"
    assert retired.policy == "checkpoint_policy(steps/10, keep_last=2)"
    assert tracker.retention.errors == []


def test_the_best_checkpoint_is_kept_until_a_better_one_and_its_alias_history_is_recorded(
        sqlite_url: str, make_tracker: Callable[..., Any], tmp_path: Path) -> None:
    tracker = make_tracker(sqlite_url)
    run = tracker.start_run("sft", job={"checkpoint_policy": KEEP_1_BEST})
    first = save(run, tmp_path, 10)
    assert run.log_eval(10, {"val_loss": 0.5}).wait() == first.id  # resolves to the new best
    refs = [first]
    for step, value in ((20, float("nan")), (30, 0.5), (40, 0.7)):  # NaN, a tie, worse
        refs.append(save(run, tmp_path, step))
        assert run.log_eval(step, {"val_loss": value}).wait() is None
    tracker.flush()
    assert states(tracker, refs) == ["live", "retired", "retired", "live"]
    assert "alias 'best'" in next(iter(tracker.artifact(first.id).pins.values()))

    refs.append(save(run, tmp_path, 50))
    assert run.log_eval(50, {"val_loss": 0.4}).wait() == refs[-1].id
    refs.append(save(run, tmp_path, 60))
    tracker.flush()

    assert states(tracker, refs) == ["retired", "retired", "retired", "retired", "live", "live"]
    view = tracker.run(run.id)
    assert (view.best_checkpoint, view.best_value) == (refs[4].id, 0.4)
    history = tracker.alias_history("best", scope=str(run.id))
    assert [h["artifact_id"] for h in history] == [str(first.id), str(refs[4].id)]
    kinds = [type(e).__name__ for e in tracker.run_events(run.id, steps=False)]
    assert kinds.count("BestCheckpointChanged") == 2 and kinds.count("EvaluationRecorded") == 5


def test_an_evaluation_moves_best_onto_the_latest_checkpoint_at_or_before_its_step(
        any_url: str, make_tracker: Callable[..., Any], tmp_path: Path) -> None:
    tracker = make_tracker(any_url)
    run = tracker.start_run("sft", job={"checkpoint_policy": {
        "strategy": "steps", "save_every": 10, "best_metric": "acc", "best_mode": "max"}})
    run.log_step(5, {"loss": 1.0})
    assert run.log_eval(5, {"acc": 0.1}).wait() is None  # nothing saved yet: nothing to point at
    ten, twenty = save(run, tmp_path, 10), save(run, tmp_path, 20)

    assert run.log_eval(15, {"acc": 0.5}).wait() == ten.id
    assert run.log_eval(25, {"acc": 0.6, "loss": 3.0}).wait() == twenty.id
    assert tracker.run(run.id).best_value == 0.6


def test_protected_aliases_derived_and_resumed_from_checkpoints_are_never_retired(
        any_url: str, make_tracker: Callable[..., Any], tmp_path: Path) -> None:
    tracker = make_tracker(any_url)
    policy = CheckpointPolicy(strategy="steps", save_every=10, keep_last=1)
    run = tracker.start_run("sft", job={"checkpoint_policy": policy})
    # each reason to keep is recorded while its checkpoint is the newest (so still live)
    refs = [save(run, tmp_path, 10).wait()]
    tracker.move_alias(refs[0], "production", protected=True).wait()
    refs.append(save(run, tmp_path, 20).wait())
    model = tmp_path / "merged.bin"
    model.write_bytes(b"merged model")
    tracker.register_artifact(model, type="model", parents=[refs[1]])
    refs.append(save(run, tmp_path, 30).wait())
    other = tracker.resume_run(run.id, refs[2], name="branch")
    refs += [save(run, tmp_path, step) for step in (40, 50)]
    tracker.flush()

    assert states(tracker, refs) == ["live", "live", "live", "retired", "live"]
    reasons = [" / ".join(tracker.artifact(ref.id).pins.values()) for ref in refs[:3]]
    assert "protected alias 'production' in registry" in reasons[0]
    assert "model" in reasons[1] and "derives from it" in reasons[1]
    assert f"run {other.id} resumed from it" in reasons[2]

    # moving the protected alias away frees the old checkpoint: the next save retires it
    tracker.move_alias(refs[4], "production", protected=True, force=True).wait()
    refs.append(save(run, tmp_path, 60))
    tracker.flush()
    assert states(tracker, refs) == ["retired", "live", "live", "retired", "live", "live"]


def test_a_remote_checkpoint_is_only_marked_retired(
        any_url: str, make_tracker: Callable[..., Any]) -> None:
    tracker = make_tracker(any_url)
    run = tracker.start_run("sft", job={"checkpoint_policy": {
        "strategy": "steps", "save_every": 1, "keep_last": 1}})
    refs = []
    for step in (1, 2):
        run.log_step(step, {"loss": 1.0})
        digest = hashlib.sha256(str(step).encode()).hexdigest()
        refs.append(run.save_checkpoint(f"tinker://run-1/weights/{step}", step=step,
                                        checksum=f"sha256:{digest}"))
    tracker.flush()

    view = tracker.artifact(refs[0].id)
    assert (view.status, view.deletion) == ("retired", "remote")
    (recorded,) = artifact_events(tracker, refs[0], Artifact.DeletionRecorded)
    assert "never deletes remote bytes" in recorded.detail


def test_a_path_reused_for_a_newer_checkpoint_keeps_the_newer_bytes(
        any_url: str, make_tracker: Callable[..., Any], tmp_path: Path) -> None:
    tracker = make_tracker(any_url)
    run = tracker.start_run("sft", job={"checkpoint_policy": {
        "strategy": "steps", "save_every": 10, "keep_last": 1}})
    first = save(run, tmp_path, 10, content=b"v1", name="latest.bin")
    tracker.flush()
    second = save(run, tmp_path, 20, content=b"v2", name="latest.bin")
    tracker.flush()

    assert tracker.artifact(first.id).deletion == "content_changed"
    assert tracker.artifact(second.id).status == "live"
    assert (tmp_path / "latest.bin").read_bytes() == b"v2"


def test_retention_looks_again_only_at_the_live_checkpoints_once_the_rest_is_stored(
        sqlite_url: str, make_tracker: Callable[..., Any], tmp_path: Path) -> None:
    """A long run's retention reads its live checkpoints, not every one it saved: those stored
    as retired are let go (RunCheckpoints) and never loaded again; the pinned best is looked
    at each time; what is not stored yet (the same command) is looked at but not learnt."""
    keep_1 = CheckpointPolicy(strategy="steps", save_every=10, keep_last=1,
                              best_metric="val_loss", best_mode="min")
    tracker = make_tracker(sqlite_url)
    run = tracker.start_run("sft", job={"checkpoint_policy": keep_1.to_dict() | {
        "keep_last": None}})  # retention driven by hand below
    refs = [save(run, tmp_path, step) for step in (10, 20, 30, 40, 50, 60)]
    assert run.log_eval(10, {"val_loss": 0.1}).wait() == refs[0].id  # the best: pinned
    known = RunCheckpoints()

    def retire(times: int = 1, before: Any = None) -> tuple[list[Any], set[Any]]:
        looked: set[Any] = set()

        def handler(uow: Any) -> list[Any]:
            if before is not None:
                before(uow)
            find = uow.find_artifact
            uow.find_artifact = lambda artifact_id: looked.add(artifact_id) or find(artifact_id)
            return [r.artifact_id for _ in range(times)
                    for r in retire_outside_policy(uow, run.id, keep_1, known)]

        return tracker.submit("retire", handler, tracker.envelope()).wait(), looked

    ids = [ref.id for ref in refs]
    retired, looked = retire(times=2)  # twice in one command: nothing stored before its end
    assert retired == ids[1:5] and looked == set(ids)
    assert known.taken == 6 and set(known.open) == set(ids)
    assert retire() == ([], set(ids))  # stored now: the four retired ones are let go
    assert set(known.open) == {ids[0], ids[5]}
    assert retire() == ([], {ids[0], ids[5]})  # the pinned best and the newest, nothing else

    refs.append(save(run, tmp_path, 70))
    refs[-1].wait()

    def evaluate(uow: Any) -> None:  # the run changes in this command: not all stored
        uow.run(run.id).record_evaluation(70, {"val_loss": 0.9}, None, None, uow.envelope(),
                                          uow.timestamp)

    assert retire(before=evaluate) == ([ids[5]], {ids[0], ids[5], refs[6].id})
    assert known.taken == 6  # the new checkpoint looked at, not taken in
    assert retire() == ([], {ids[0], ids[5], refs[6].id}) and known.taken == 7
    assert retire() == ([], {ids[0], refs[6].id})
    assert states(tracker, refs) == ["live", *["retired"] * 5, "live"]


def test_a_crash_between_retire_and_delete_is_repaired_on_the_next_start(
        durable_url: str, make_tracker: Callable[..., Any], tmp_path: Path) -> None:
    policy = CheckpointPolicy(strategy="steps", save_every=10, keep_last=1)
    tracker = make_tracker(durable_url)
    run = tracker.start_run("sft", job={"checkpoint_policy": policy.to_dict() | {
        "keep_last": None}})  # this process saves without retention...
    refs = [save(run, tmp_path, step) for step in (10, 20, 30)]
    tracker.flush()
    # ...then retires as retention does, and "dies" before deleting anything
    retired = tracker.submit("retire", lambda uow: retire_outside_policy(uow, run.id, policy),
                             tracker.envelope()).wait()
    tracker.close()
    assert [r.artifact_id for r in retired] == [refs[0].id, refs[1].id]
    paths = [Path(ref.uri.removeprefix("file://")) for ref in refs]
    assert all(path.exists() for path in paths)
    paths[1].unlink()  # and someone already removed one of the files by hand

    restarted = make_tracker(durable_url)
    restarted.start_run("next", job={"checkpoint_policy": policy})  # starts the repair
    restarted.flush()

    assert [restarted.artifact(ref.id).deletion for ref in refs] == ["deleted", "already_gone",
                                                                     None]
    assert [path.exists() for path in paths] == [False, False, True]
    assert restarted.repair_retention() == []  # idempotent: nothing left to do
    assert restarted.retention.errors == []


def save_then_crash(tracker: lineage.Tracker, run: lineage.RunHandle, folder: Path,
                    step: int) -> ArtifactRef:
    """A save committed as ``save_checkpoint`` commits it, by a process killed before its
    retention ran: the state a SIGKILL between the commit and the ``Retired`` event leaves."""
    path = folder / f"{run.id.hex[:8]}-{step}.bin"
    path.write_bytes(f"{run.id}:{step}".encode())
    ref = tracker.register_artifact(path, type="checkpoint", run=run, step=step,
                                    includes_optimizer=True)

    def saved(uow: Any) -> None:
        uow.run(run.id).save_checkpoint(ref.id, ref.uri, step, None, True, uow.envelope(),
                                        uow.timestamp)

    tracker.submit("save", saved, tracker.envelope()).wait()
    return ref


def keep_2_run_saved_without_retiring(tracker: Any, folder: Path,
                                      saves: tuple[int, ...]) -> tuple[Any, list[Any]]:
    """A keep_last=2 run with a checkpoint saved at each of ``saves``, each save crashing before
    its retirements (``save_then_crash``)."""
    run = tracker.start_run("sft", job={"checkpoint_policy": KEEP_2})
    for step in range(1, saves[-1] + 1):
        run.log_step(step, {"loss": 1.0 / step})
    return run, [save_then_crash(tracker, run, folder, step) for step in saves]


def test_a_crash_between_a_save_and_its_retirement_is_repaired_on_the_next_start(
        durable_url: str, make_tracker: Callable[..., Any], tmp_path: Path) -> None:
    crashed = make_tracker(durable_url)
    run, refs = keep_2_run_saved_without_retiring(crashed, tmp_path, (10, 20, 30, 40, 50))
    crashed.move_alias(refs[0], "keep-me", protected=True).wait()  # pinned: never retired
    other = crashed.start_run("no policy")  # a run without keep_last keeps everything
    other.log_step(10, {"loss": 1.0})
    kept = save_then_crash(crashed, other, tmp_path, 10)
    crashed.close()
    assert states(make_tracker(durable_url), refs) == ["live"] * 5  # the gap

    restarted = make_tracker(durable_url)
    handle = restarted.run_handle(run.id)  # the next start of that run repairs it
    restarted.flush()

    assert states(restarted, refs) == ["live", "retired", "retired", "live", "live"]
    assert [Path(ref.uri.removeprefix("file://")).exists() for ref in refs] == [
        True, False, False, True, True]
    (retired,) = artifact_events(restarted, refs[1], Artifact.Retired)
    assert retired.reason == "keep_last=2: 2 newer checkpoint(s) kept"
    assert restarted.artifact(kept.id).status == "live"
    before = restarted.store.max_position()
    assert restarted.repair_retention() == []  # idempotent: nothing left to do, nothing written
    restarted.flush()
    assert restarted.store.max_position() == before and restarted.retention.errors == []
    assert handle.policy == KEEP_2


def test_repair_retention_enforces_keep_last_by_itself(
        any_url: str, make_tracker: Callable[..., Any], tmp_path: Path) -> None:
    tracker = make_tracker(any_url)
    _, refs = keep_2_run_saved_without_retiring(tracker, tmp_path, (10, 20, 30))

    outcomes = tracker.repair_retention()

    assert [(artifact_id, deletion.outcome) for artifact_id, deletion in outcomes] == [
        (refs[0].id, "deleted")]
    tracker.flush()
    assert states(tracker, refs) == ["retired", "live", "live"]
    assert tracker.repair_retention() == []


def test_retention_never_raises_into_training(any_url: str, make_tracker: Callable[..., Any],
                                              tmp_path: Path) -> None:
    class BrokenStorage(LocalArtifactStorage):
        def delete(self, uri: str, expected: Any = None) -> Any:
            raise RuntimeError("the storage adapter broke")

    tracker = make_tracker(any_url, storage=BrokenStorage())
    run = tracker.start_run("sft", job={"checkpoint_policy": KEEP_2})
    refs = [save(run, tmp_path, step) for step in (10, 20, 30)]
    tracker.flush()

    view = tracker.artifact(refs[0].id)
    assert (view.status, view.deletion) == ("retired", "failed")  # retried by the next repair
    assert Path(refs[0].uri.removeprefix("file://")).exists()


def test_should_checkpoint_follows_the_runs_policy(make_tracker: Callable[..., Any]) -> None:
    tracker = make_tracker("memory://")
    steps = tracker.start_run("a", job={"checkpoint_policy": {"strategy": "steps",
                                                              "save_every": 3}})
    assert [s for s in range(1, 10) if steps.should_checkpoint(s)] == [3, 6, 9]
    assert steps.should_checkpoint(10, final=True)

    epochs = tracker.start_run("b", job={"checkpoint_policy": {"strategy": "epoch"}})
    per_step = [(step, step // 4) for step in range(1, 13)]  # 4 steps per epoch
    assert [s for s, e in per_step if epochs.should_checkpoint(s, epoch=e)] == [4, 8, 12]

    best = tracker.start_run("c", job={"checkpoint_policy": CheckpointPolicy(
        strategy="best", best_metric="val_loss")})
    values = [0.9, 0.8, 0.85, float("nan"), 0.8, 0.7]
    assert [best.should_checkpoint(s, metrics={"val_loss": v})
            for s, v in enumerate(values)] == [True, True, False, False, False, True]

    plain = tracker.start_run("d")
    with pytest.raises(ValidationError) as caught:
        plain.should_checkpoint(1)
    assert caught.value.field == "job.checkpoint_policy"


def test_saves_default_to_the_policy_format(make_tracker: Callable[..., Any],
                                            tmp_path: Path) -> None:
    tracker = make_tracker("memory://")
    run = tracker.start_run("sft", job={"checkpoint_policy": {"strategy": "last", "format": "gguf"}})
    ref = save(run, tmp_path, 1)
    tracker.flush()
    assert tracker.artifact(ref.id).format == "gguf"


@pytest.mark.parametrize(("given", "raw"), [
    (1_700_000_000_123_456_789, "1700000000123456789"),  # epoch nanoseconds
    (1_700_000_000.123456, "1700000000.123456"),  # epoch seconds
    ("2023-11-14T22:13:20.123456", "2023-11-14T22:13:20.123456"),  # naive: taken as UTC
    ("2023-11-14T23:13:20.123456+01:00", "2023-11-14T23:13:20.123456+01:00"),
])
def test_evaluation_and_best_events_normalise_the_time_given(
        make_tracker: Callable[..., Any], tmp_path: Path, given: Any, raw: str) -> None:
    tracker = make_tracker("memory://")
    run = tracker.start_run("sft", job={"checkpoint_policy": KEEP_1_BEST})
    save(run, tmp_path, 10)
    run.log_eval(10, {"val_loss": 0.5}, occurred_at=given).wait()

    events = [e for e in tracker.run_events(run.id, steps=False)
              if type(e).__name__ in ("EvaluationRecorded", "BestCheckpointChanged")]
    assert len(events) == 2
    for event in events:
        assert event.occurred_at.isoformat() == "2023-11-14T22:13:20.123456+00:00"
        assert event.occurred_at_raw == raw


def test_closing_right_after_a_save_still_applies_retention(
        sqlite_url: str, make_tracker: Callable[..., Any], tmp_path: Path) -> None:
    tracker = make_tracker(sqlite_url)
    run = tracker.start_run("sft", job={"checkpoint_policy": KEEP_2})
    refs = [save(run, tmp_path, step) for step in (10, 20, 30)]
    tracker.close()  # no flush first

    with lineage.Tracker(sqlite_url) as reopened:
        assert states(reopened, refs) == ["retired", "live", "live"]
        assert reopened.artifact(refs[0].id).deletion == "deleted"


def test_retention_after_a_save_commits_with_the_writers_batches_and_flush_settles_it(
        durable_url: str, make_tracker: Callable[..., Any], tmp_path: Path) -> None:
    tracker = make_tracker(durable_url, batch_interval_s=3600)  # commits only when asked
    run = tracker.start_run("patient", job={"checkpoint_policy": KEEP_2})
    refs = [save(run, tmp_path, step) for step in (10, 20)]
    tracker.flush()
    refs.append(save(run, tmp_path, 30))
    refs[-1].wait()  # committed: retention retires step 10, its write queued, not waited for
    commits = tracker.writer.stats.committed_batches
    deadline = time.monotonic() + 60
    while tracker.writer.queued == 0:
        assert time.monotonic() < deadline, "retention never queued its retirement"
        time.sleep(0.01)
    assert tracker.writer.stats.committed_batches == commits  # no commit of its own
    first = Path(refs[0].uri.removeprefix("file://"))
    assert first.exists()  # not deleted before its retirement commits
    tracker.flush()  # commits the retirement, then the deletion's outcome: stage after stage
    assert states(tracker, refs) == ["retired", "live", "live"]
    assert not first.exists() and tracker.artifact(refs[0].id).deletion == "deleted"

    refs.append(save(run, tmp_path, 40))
    refs[-1].wait()
    tracker.close()  # settles the retention the last save set off before it stops
    reopened = make_tracker(durable_url)
    assert states(reopened, refs) == ["retired", "retired", "live", "live"]
    assert reopened.artifact(refs[1].id).deletion == "deleted"
    assert not Path(refs[1].uri.removeprefix("file://")).exists()
    assert tracker.retention.errors == []
