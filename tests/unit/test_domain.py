"""Domain invariants, on the aggregates directly (no store, no writer)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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
        lambda: run.detect_failure("tinker.corrupted", "late", "", True, True, 1, env(), NOW),
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


LEASE = NOW + timedelta(minutes=2)


def test_recovery_lifecycle_and_exactly_one_recovery_at_a_time() -> None:
    run = new_run()
    with pytest.raises(InvariantError, match="no failure"):
        run.start_recovery("latest", "a", LEASE, env(), NOW)
    run.detect_failure("tinker.corrupted", "backend_corrupted", "", True, True, 47, env(), NOW)
    assert run.corrupted
    assert run.start_recovery("latest", "a", LEASE, env(), NOW) == 1
    with pytest.raises(InvariantError, match="already recovering"):
        run.start_recovery("latest", "b", LEASE, env(), NOW)
    run.fail_recovery("timeout", "resume timed out", env(), NOW)
    assert run.start_recovery("latest", "a", LEASE, env(), NOW) == 2
    checkpoint, successor = uuid4(), uuid4()
    run.select_recovery_checkpoint(checkpoint, 40, "latest", env(), NOW)
    run.complete_recovery(successor, checkpoint, env(), NOW)
    assert run.superseded_by == successor and not run.recovering
    with pytest.raises(InvariantError, match="already recovered"):
        run.start_recovery("latest", "a", LEASE, env(), NOW)


def recovering_run() -> Run:
    run = new_run()
    run.detect_failure("heartbeat.lost", "ProcessLost", "", True, False, 47, env(), NOW)
    assert run.start_recovery("latest", "dead executor", LEASE, env(), NOW) == 1
    return run


def test_a_lease_holds_until_it_expires_and_renewing_extends_it() -> None:
    run = recovering_run()
    before = LEASE - timedelta(seconds=1)
    assert not run.lease_expired(before) and run.lease_expired(LEASE)
    with pytest.raises(InvariantError, match="held by dead executor until"):
        run.take_over_recovery("taker", env(), before)
    run.renew_recovery_lease(1, "dead executor", LEASE + timedelta(minutes=2), env(), before)
    assert not run.lease_expired(LEASE)
    with pytest.raises(InvariantError, match="attempt 2 was taken over"):
        run.renew_recovery_lease(2, "someone", LEASE, env(), before)


def test_an_expired_attempt_is_taken_over_and_its_executor_is_fenced_off() -> None:
    run = recovering_run()
    run.take_over_recovery("taker", env(), LEASE)
    assert run.start_recovery("latest", "taker", LEASE + timedelta(minutes=2), env(), LEASE) == 2
    failed, started = run.collect_events()[-2:]
    assert isinstance(failed, Run.RecoveryFailed) and failed.attempt == 1
    assert failed.error_type == "RecoveryLeaseExpired"
    assert "dead executor" in failed.message and "taken over by taker" in failed.message
    assert isinstance(started, Run.RecoveryStarted) and started.holder == "taker"
    checkpoint = uuid4()
    for stale in (  # the first executor, only slow, comes back: every command is refused
        lambda: run.select_recovery_checkpoint(checkpoint, 40, "x", env(), LEASE, 1),
        lambda: run.reject_recovery_checkpoint(checkpoint, 40, "x", env(), LEASE, 1),
        lambda: run.complete_recovery(uuid4(), checkpoint, env(), LEASE, 1),
        lambda: run.fail_recovery("x", "", env(), LEASE, 1),
        lambda: run.renew_recovery_lease(1, "dead executor", LEASE, env(), LEASE),
        lambda: run.exhaust_recovery(env(), LEASE, 1),
    ):
        with pytest.raises(InvariantError):
            stale()
    assert run.collect_events() == [] and run.recovering and run.recovery_attempts == 2
    run.complete_recovery(uuid4(), checkpoint, env(), LEASE, 2)
    assert not run.recovering


def test_a_recovery_started_stored_before_leases_decodes_and_can_be_taken_over() -> None:
    """STYLE habit 2: a v1 ``RecoveryStarted`` (no holder, no lease) is upcast: no holder, and
    a lease of the default length from when it was recorded."""
    mapper = make_mapper()
    run = recovering_run()
    stored = [mapper.to_stored_event(event) for event in run.collect_events()]
    old = stored[-1]
    state = mapper.transcoder.decode(old.state)
    assert state.pop("class_version") == 2
    del state["holder"], state["lease_until"]  # as version 1 stored it
    stored[-1] = type(old)(old.originator_id, old.originator_version, old.topic,
                           mapper.transcoder.encode(state))
    replayed: Run | None = None
    for event in stored:
        replayed = mapper.to_domain_event(event).mutate(replayed)  # type: ignore[attr-defined]
    assert replayed is not None and replayed.recovering
    assert replayed.recovery_holder == "" and replayed.lease_until == NOW + timedelta(seconds=120)
    assert not replayed.lease_expired(NOW + timedelta(seconds=119))
    replayed.take_over_recovery("taker", env(), NOW + timedelta(seconds=120))


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


def test_expire_records_once_what_a_service_says_is_gone_and_ignores_pins() -> None:
    artifact = new_artifact()
    artifact.pin("resumed:x", "a run resumed from it", env(), NOW)
    assert artifact.expire("expired on the service", env(), NOW) is True
    assert artifact.expire("again", env(), NOW) is False  # idempotent
    expired = [e for e in artifact.collect_events() if isinstance(e, Artifact.Expired)]
    assert [e.reason for e in expired] == ["expired on the service"]
    assert artifact.status == "expired"
