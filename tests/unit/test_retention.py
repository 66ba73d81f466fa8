"""Retention's pure plan, the Artifact rules it relies on, and job status, by value."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import pytest

from lineage.application.job_status import job_status
from lineage.application.policies import CheckpointPolicy
from lineage.application.retention import CheckpointWatch, Held, plan_retention
from lineage.domain import Artifact, Run
from lineage.domain.envelope import Envelope
from lineage.errors import InvariantError

NOW = datetime(2025, 1, 1, tzinfo=UTC)
KEEP_2 = CheckpointPolicy(strategy="steps", save_every=10, keep_last=2)


def envelope() -> Envelope:
    return Envelope(uuid4(), NOW, None, "host/test", "default", "tester")


def ids(count: int) -> list[UUID]:
    return [UUID(int=index + 1) for index in range(count)]


def held(steps: list[int], *, pinned: tuple[int, ...] = (), dead: tuple[int, ...] = ()) -> list[Held]:
    return [Held(UUID(int=index + 1), step, index, index not in dead,
                 ("alias:run:best",) if index in pinned else ())
            for index, step in enumerate(steps)]


@pytest.mark.parametrize(("policy", "checkpoints", "retired"), [
    (KEEP_2, held([10, 20, 30, 40]), [1, 2]),
    (KEEP_2, held([10, 20]), []),
    (KEEP_2, held([]), []),
    (KEEP_2, held([10, 20, 30, 40], pinned=(0,)), [2]),  # the best is kept, in addition
    (KEEP_2, held([10, 20, 30, 40], pinned=(3,)), [1, 2]),  # a pin among the newest: no extra
    (KEEP_2, held([10, 20, 30, 40], dead=(2,)), [1]),  # retired ones do not count as kept
    (KEEP_2, held([30, 10, 40, 20]), [2, 4]),  # newest by step, not by save order
    (KEEP_2, held([10, 20, 20]), [1]),  # same step twice: the later save is newer
    (CheckpointPolicy(strategy="steps", save_every=10), held([10, 20, 30]), []),  # keep all
    (CheckpointPolicy(strategy="last", keep_last=1), held([10, 20, 30]), [1, 2]),
])
def test_plan_retention(policy: CheckpointPolicy, checkpoints: list[Held],
                        retired: list[int]) -> None:
    plan = plan_retention(policy, checkpoints)
    assert [artifact_id.int for artifact_id, _ in plan] == retired
    assert all("keep_last=" in reason for _, reason in plan)


def checkpoint() -> Artifact:
    fields: dict[str, Any] = {
        "type": "checkpoint", "uri": "file:///c.bin", "name": None, "size": 1,
        "checksum_algorithm": "sha256", "checksum": "0" * 64, "format": None, "run_id": None,
        "step": 1, "parents": [], "includes_optimizer": True, "metadata": {}}
    artifact = Artifact.register(uuid4(), fields, envelope(), NOW)
    artifact.collect_events()
    return artifact


def test_the_watch_keeps_the_checkpoints_of_the_runs_asked_for_last() -> None:
    watch = CheckpointWatch(limit=2)
    first, second, third = uuid4(), uuid4(), uuid4()
    watch.of(first).taken = 1
    watch.of(second).taken = 2
    assert watch.of(first).taken == 1  # asked for again: now the most recent
    watch.of(third)  # a third run: the one asked for longest ago is forgotten
    assert watch.of(second).taken == 0
    assert watch.of(first).taken == 0  # pushed out in turn by second: taken in anew


def test_a_pinned_artifact_refuses_retirement_by_policy_but_not_by_hand() -> None:
    artifact = checkpoint()
    artifact.pin("resumed:r2", "run r2 resumed from it", envelope(), NOW)

    with pytest.raises(InvariantError, match="run r2 resumed from it"):
        artifact.retire("keep_last=2", "checkpoint_policy(...)", envelope(), NOW)
    artifact.retire("cleaning up by hand", None, envelope(), NOW)

    assert artifact.status == "retired"


def test_pins_are_idempotent_and_unpinning_frees_it() -> None:
    artifact = checkpoint()
    artifact.pin("alias:run:best", "alias 'best'", envelope(), NOW)
    artifact.pin("alias:run:best", "alias 'best'", envelope(), NOW)
    assert len(artifact.collect_events()) == 1
    artifact.unpin("alias:run:best", envelope(), NOW)
    artifact.unpin("alias:run:best", envelope(), NOW)
    assert len(artifact.collect_events()) == 1
    artifact.retire("keep_last=2", "policy", envelope(), NOW)
    assert artifact.status == "retired"


def test_deletion_is_recorded_once_and_only_after_retirement() -> None:
    artifact = checkpoint()
    with pytest.raises(InvariantError, match="only a retired artifact"):
        artifact.record_deletion("deleted", "x", envelope(), NOW)
    artifact.retire("keep_last=1", "policy", envelope(), NOW)
    assert artifact.needs_deletion
    artifact.record_deletion("failed", "disk busy", envelope(), NOW)
    assert artifact.needs_deletion  # a failed deletion is tried again
    artifact.record_deletion("deleted", "deleted /c.bin", envelope(), NOW)
    artifact.record_deletion("already_gone", "again", envelope(), NOW)  # no-op
    assert (artifact.deletion, artifact.needs_deletion) == ("deleted", False)
    with pytest.raises(InvariantError, match="unknown deletion outcome"):
        artifact.record_deletion("shredded", "", envelope(), NOW)


def run_state(**state: Any) -> Any:
    base = {"superseded_by": None, "status": "running", "finished_reason": None,
            "corrupted": False, "failures": 0, "last_failure": None, "recovering": False,
            "recovery_exhausted": False, "recovery_attempts": 0, "last_recovery_error": None,
            "checkpoints": [], "resumed_from": None, "lost_steps": None}
    return SimpleNamespace(**{**base, **state})


@pytest.mark.parametrize(("state", "steps", "expected"), [
    ({}, 0, ("pending", "run started; no step recorded yet")),
    ({"resumed_from": uuid4()}, 0, ("pending", "resumed run started; no step recorded yet")),
    ({}, 5, ("running", None)),
    ({"checkpoints": [(uuid4(), 0)]}, 0, ("running", None)),
    ({"status": "completed"}, 5, ("completed", None)),
    ({"status": "cancelled", "finished_reason": "KeyboardInterrupt"}, 5,
     ("cancelled", "KeyboardInterrupt")),
    ({"status": "failed", "finished_reason": "ValueError: x", "failures": 1}, 5,
     ("failed", "ValueError: x")),
    ({"failures": 1, "last_failure": "ProcessLost: gone"}, 5, ("failed", "ProcessLost: gone")),
    ({"failures": 1, "corrupted": True, "last_failure": "backend_corrupted"}, 5,
     ("corrupted", "backend_corrupted")),
    ({"status": "completed", "failures": 1, "corrupted": True, "last_failure": "flagged"}, 5,
     ("corrupted", "flagged")),  # flagged corrupted after it completed
    ({"failures": 1, "corrupted": True, "last_failure": "c", "recovering": True,
      "recovery_attempts": 2}, 5, ("corrupted", "c; recovery attempt 2 in progress")),
    ({"failures": 1, "last_failure": "f", "recovery_exhausted": True, "recovery_attempts": 3,
      "last_recovery_error": "TimeoutError: slow"}, 5,
     ("failed", "f; recovery exhausted after 3 attempt(s): TimeoutError: slow")),
    ({"status": "superseded", "superseded_by": UUID(int=7), "corrupted": True,
      "finished_reason": "resumed as R", "lost_steps": (41, 47, 7)}, 47,
     ("superseded", "resumed as R; steps 41-47 lost (7)")),
])
def test_job_status(state: dict[str, Any], steps: int, expected: tuple[str, str | None]) -> None:
    assert job_status(run_state(**state), steps) == expected


def test_job_status_of_a_real_run_aggregate() -> None:
    run = Run.start(uuid4(), "x", {}, {}, 0, envelope(), NOW)
    assert job_status(run, 0)[0] == "pending"
    run.detect_failure("tinker.corrupted", "backend_corrupted", "", True, True, 3, envelope(), NOW)
    assert job_status(run, 3) == ("corrupted", "backend_corrupted")
