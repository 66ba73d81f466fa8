"""A remote tracker's event reads (``steps``, ``run_events``, ``run_history``, ``quarantined``)
over the server's paged routes, its heartbeats, and ``recover()`` end to end through a real
server."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent

import lineage
from lineage.codec.dispatch import topic_of
from lineage.domain import Run, ids
from lineage.domain.liveness import HeartbeatRecorded
from lineage.remote import tracker as remote_tracker
from tests.integration.test_recovery import Resume, corrupted_run
from tests.server.conftest import InProcessServer


@pytest.fixture
def remote(shared_server: InProcessServer, tmp_path: Path) -> Any:
    made = lineage.Tracker(shared_server.url, token=shared_server.token(f"r-{uuid.uuid4().hex[:10]}"),
                           spool=tmp_path / "spool")
    try:
        yield made
    finally:
        made.close()


def _local(server: InProcessServer) -> lineage.Tracker:
    return lineage.Tracker(server.database, create=False, export_otlp=False)


def test_steps_history_and_events_read_back_as_the_local_tracker_reads_them(
        remote: Any, shared_server: InProcessServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote_tracker, "EVENT_PAGE", 7)  # several pages each
    run = remote.start_run("events")
    for step in range(1, 21):
        run.log_step(step, {"loss": step / 10, "lr": 1e-4}, epoch=step // 10)
    run.log_step(21, {"loss": float("nan")}, durations={"forward": 0.25}, tokens=512)
    run.log_eval(21, {"val_loss": 0.5})
    run.finish()
    steps = remote.steps(run.id)
    assert [s.step for s in steps] == list(range(1, 22))
    assert steps[0].metrics == {"loss": 0.1, "lr": 1e-4} and steps[9].epoch == 1
    assert (steps[20].durations, steps[20].tokens) == ({"forward": 0.25}, 512)
    assert [s.step for s in remote.steps(run.id, after=5, limit=9)] == list(range(6, 15))
    assert [s.step for s in remote.steps(run.id, limit=2, last=True)] == [20, 21]
    with _local(shared_server) as local:
        expected_history = local.run_history(run.id)
        expected_brief = local.run_history(run.id, steps=2)
        expected_steps = local.steps(run.id)
    assert [s.event_id for s in steps] == [s.event_id for s in expected_steps]
    assert steps[:20] == expected_steps[:20]  # the same events (step 21's NaN is not equal)
    history = remote.run_history(run.id)
    assert [(p, e.event_id, type(e)) for p, e in history] == [
        (p, e.event_id, type(e)) for p, e in expected_history]
    assert [(p, e.event_id) for p, e in remote.run_history(run.id, steps=2)] == [
        (p, e.event_id) for p, e in expected_brief]
    own = [type(e).__name__ for e in remote.run_events(run.id, steps=False)]
    assert own == ["Started", "EvaluationRecorded", "Finished"]
    assert len(remote.run_events(run.id)) == 3 + 21
    with pytest.raises(lineage.RunNotFoundError):
        remote.steps(uuid.uuid4())


def test_another_tenant_reads_no_steps_history_or_quarantine(
        remote: Any, shared_server: InProcessServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A poisoned event in the tenant's run is in its quarantine list, not another's."""
    monkeypatch.setattr(remote_tracker, "EVENT_PAGE", 2)  # pages keyed by (read model, position)
    run = remote.start_run("poisoned")
    run.log_step(1, {"loss": 0.5})
    remote.flush()
    store = shared_server.core.store
    version = store.read_stream(run.id, desc=True, limit=1)[0].originator_version + 1
    store.append([StoredEvent(run.id, version, topic_of(Run.Finished), b"\x00not json")],
                 [uuid.uuid4().hex])
    rows = remote.quarantined()  # one row per read model that skipped it
    assert rows and {(r["originator_id"], r["originator_version"]) for r in rows} == {
        (str(run.id), version)}
    paged_by_offset = shared_server.http.get(  # an older client's paging: refused, not ignored
        "/v1/quarantine", params={"offset": 2},
        headers={"Authorization": f"Bearer {shared_server.token('someone-else')}"})
    assert paged_by_offset.status_code == 400 and "offset" in paged_by_offset.text
    other = lineage.Tracker(shared_server.url, token=shared_server.token("someone-else"),
                            spool=tmp_path / "other")
    try:
        assert other.quarantined() == []
        for read in (other.steps, other.run_events, other.run_history):
            with pytest.raises(lineage.RunNotFoundError):
                read(run.id)
    finally:
        other.close()


def test_an_idle_remote_run_sends_heartbeats_the_server_stores(
        shared_server: InProcessServer, tmp_path: Path) -> None:
    tracker = lineage.Tracker(shared_server.url, token=shared_server.token("beats"),
                              spool=tmp_path / "spool", heartbeat_interval_s=0.1)
    try:
        run = tracker.start_run("idle")
        run.log_step(7, {"loss": 0.5})
        deadline = time.monotonic() + 30
        while tracker.heartbeats.sent < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        tracker.close()
    with _local(shared_server) as local:
        beats = [local.mapper.to_domain_event(e)
                 for e in local.store.read_stream(ids.heartbeat_stream_id(run.id))]
        view = local.run(run.id)  # what the server's monitor reads: the run is alive
    assert len(beats) >= 2 and all(isinstance(b, HeartbeatRecorded) for b in beats)
    assert {(b.last_step, b.actor, b.tenant_id) for b in beats} == {(7, "alice", "beats")}
    assert view.last_activity_at is not None
    assert view.last_activity_at >= max(b.occurred_at for b in beats)


def test_recover_through_the_server_resumes_from_the_latest_checkpoint(
        remote: Any, tmp_path: Path) -> None:
    run, (_, forty) = corrupted_run(remote, tmp_path)
    resume = Resume()
    result = remote.recover(run.id, resume=resume, sleep=lambda _: None)
    assert (result.status, result.recovered) == ("recovered", True)
    assert result.checkpoint is not None and result.checkpoint.id == forty.id
    assert (result.lost_steps.first_step, result.lost_steps.last_step) == (41, 47)
    ((checkpoint, new_run),) = resume.calls
    assert checkpoint.step == 40
    with new_run:
        for step in range(41, 45):
            new_run.log_step(step, {"loss": 0.01})
    old, new = remote.run(run.id), remote.run(new_run.id)
    assert (old.job_status, old.superseded_by) == ("superseded", new.id)
    assert (new.resumed_from, new.start_step, new.job_status) == (run.id, 40, "completed")
    kinds = [type(e).__name__ for e in remote.run_events(run.id, steps=False)]
    assert kinds[-5:] == ["RecoveryStarted", "RecoveryCheckpointSelected", "StepsLost",
                          "RecoveryCompleted", "Finished"]


def test_verify_artifacts_hashes_here_and_records_the_outcomes_through_the_server(
        remote: Any, tmp_path: Path) -> None:
    paths = [tmp_path / name for name in ("good.bin", "changed.bin", "gone.bin")]
    for path in paths:
        path.write_bytes(path.name.encode() * 100)
    refs = [remote.register_artifact(path, type="dataset") for path in paths]
    for ref in refs:
        ref.wait()
    paths[1].write_bytes(b"other bytes")
    paths[2].unlink()
    outcomes = {check.artifact_id: check.outcome for check in remote.verify_artifacts()}
    assert [outcomes[str(ref.id)] for ref in refs] == ["verified", "mismatch", "missing"]
    remote.flush()
    assert [remote.artifact(ref.id).last_verified_ok for ref in refs] == [True, False, False]


def test_a_remote_run_queues_steps_on_the_shippers_queue_without_a_call(remote: Any) -> None:
    """The shipper's queue never fills (its spool takes what comes), so ``log_step`` appends
    to it itself, as to the local writer's queue while that has room."""
    run = remote.start_run("queued")
    queue = run._steps
    assert queue is remote.writer.step_queue and queue.items is remote.writer.queue
    assert len(queue.items) < queue.room
    for step in range(1, 4):
        run.log_step(step, {"loss": 1.0 / step})
    remote.flush()
    assert [s.step for s in remote.steps(run.id)] == [1, 2, 3]
