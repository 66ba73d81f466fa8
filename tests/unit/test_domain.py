"""Domain invariants, on the aggregates directly (no store, no writer)."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from lineage.codec.mapper import make_mapper
from lineage.domain import Alias, Artifact, Run
from lineage.domain.envelope import Envelope
from lineage.errors import ArtifactRetiredError, InvariantError, RunFinishedError

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def env() -> Envelope:
    return Envelope(uuid4(), NOW, None, "test", "default", "tester")


def new_run(start_step: int = 0) -> Run:
    return Run.start(uuid4(), "sft", {"model": "m"}, {}, start_step, env(), NOW)


def new_artifact() -> Artifact:
    fields = {"type": "checkpoint", "uri": "tinker://run/ckpt-1", "name": None, "size": None,
              "checksum_algorithm": None, "checksum": None, "format": "safetensors",
              "run_id": None, "step": 10, "parents": [], "includes_optimizer": True, "metadata": {}}
    return Artifact.register(uuid4(), fields, env(), NOW)


def test_a_finished_run_refuses_changes() -> None:
    run = new_run()
    run.finish("completed", None, None, env(), NOW)
    for change in (
        lambda: run.record_evaluation(1, {"val_loss": 1.0}, None, None, env(), NOW),
        lambda: run.save_checkpoint(uuid4(), "x", 1, None, False, env(), NOW),
        lambda: run.use_input(uuid4(), "x", "dataset", env(), NOW),
        lambda: run.finish("failed", None, None, env(), NOW),
    ):
        with pytest.raises(RunFinishedError):
            change()


def test_finishing_twice_the_same_way_is_a_no_op() -> None:
    run = new_run()
    run.finish("completed", None, None, env(), NOW)
    run.finish("completed", None, None, env(), NOW)
    assert len(run.collect_events()) == 2


def test_a_failed_run_may_become_superseded() -> None:
    run = new_run()
    run.finish("failed", "boom", None, env(), NOW)
    successor = uuid4()
    run.finish("superseded", None, successor, env(), NOW)
    assert run.status == "superseded"


def test_a_checkpoint_step_must_be_within_the_run() -> None:
    run = new_run(start_step=40)
    with pytest.raises(InvariantError, match="before run"):
        run.save_checkpoint(uuid4(), "x", 39, None, False, env(), NOW)
    run.save_checkpoint(uuid4(), "x", 40, None, False, env(), NOW)


def test_recovery_lifecycle_and_exactly_one_recovery_at_a_time() -> None:
    run = new_run()
    with pytest.raises(InvariantError, match="no failure"):
        run.start_recovery("latest", env(), NOW)
    run.detect_failure("tinker.corrupted", "backend_corrupted", "", True, True, 47, env(), NOW)
    assert run.corrupted
    assert run.start_recovery("latest", env(), NOW) == 1
    with pytest.raises(InvariantError, match="already recovering"):
        run.start_recovery("latest", env(), NOW)
    run.fail_recovery("timeout", "resume timed out", env(), NOW)
    assert run.start_recovery("latest", env(), NOW) == 2
    checkpoint, successor = uuid4(), uuid4()
    run.select_recovery_checkpoint(checkpoint, 40, "latest", env(), NOW)
    run.complete_recovery(successor, checkpoint, env(), NOW)
    assert run.superseded_by == successor and not run.recovering
    with pytest.raises(InvariantError, match="already recovered"):
        run.start_recovery("latest", env(), NOW)


def test_resumed_run_links_once() -> None:
    run = new_run(start_step=40)
    previous, checkpoint = uuid4(), uuid4()
    run.resume_from(previous, checkpoint, 40, True, env(), NOW)
    assert run.resumed_from == previous
    with pytest.raises(InvariantError):
        run.resume_from(previous, checkpoint, 40, True, env(), NOW)


def test_no_alias_on_a_retired_artifact() -> None:
    artifact = new_artifact()
    artifact.retire("keep_last", "steps", env(), NOW)
    with pytest.raises(ArtifactRetiredError):
        artifact.require_live("alias 'best'")


def test_protected_alias_does_not_move_without_force() -> None:
    first, second = uuid4(), uuid4()
    alias = Alias.create(uuid4(), "registry", "production", env(), NOW)
    alias.move(first, True, False, env(), NOW)
    with pytest.raises(InvariantError, match="protected"):
        alias.move(second, False, False, env(), NOW)
    alias.move(second, False, True, env(), NOW)
    assert alias.artifact_id == second


def test_events_round_trip_through_the_mapper_with_their_envelope() -> None:
    mapper = make_mapper()
    run = new_run()
    run.detect_failure("sigkill", "crash", "worker lost", False, False, None, env(), NOW)
    events = run.collect_events()
    decoded = [mapper.to_domain_event(mapper.to_stored_event(e)) for e in events]
    assert decoded == events
    assert all(isinstance(e.event_id, UUID) and e.recorded_at == NOW for e in decoded)


def test_a_stored_expired_event_still_decodes_and_replays() -> None:
    mapper = make_mapper()
    artifact = new_artifact()
    artifact.trigger_event(Artifact.Expired, reason="ttl", timestamp=NOW, **env().fields())
    stored = [mapper.to_stored_event(e) for e in artifact.collect_events()]

    assert stored[-1].topic == "lineage.domain.artifact:Artifact.Expired"
    replayed = None
    for event in (mapper.to_domain_event(s) for s in stored):
        replayed = event.mutate(replayed)
    assert replayed is not None and replayed.status == "expired"
    assert not hasattr(Artifact, "expire")  # nothing records it any more
