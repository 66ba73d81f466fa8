"""TinkerRunStatusSource against the fake service: corrupted runs, vanished checkpoints and
hostile answers (malformed JSON, 5xx, 429 with Retry-After, a run that vanishes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from lineage.adapters.tinker import instrument
from lineage.adapters.tinker.status_source import TinkerRunStatusSource
from lineage.application.monitor import RecoveryMonitor
from tests.tinker.conftest import train


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def job(service: Any, tracker: Any) -> tuple[Any, Any]:
    recorder = instrument(service, tracker, strict=True)
    client = service.create_lora_training_client("base", rank=4).result(timeout=30)
    train(client, 2)
    client.save_state("000002").result(timeout=30)
    client.save_weights_for_sampler("000002").result(timeout=30)
    recorder.flush()
    return client, recorder


def source_for(tracker: Any, server: Any, clock: Any = None) -> TinkerRunStatusSource:
    return TinkerRunStatusSource(tracker, base_url=server.base_url, api_key="tml-fake",
                                 clock=clock, backoff_s=5, max_backoff_s=60)


def test_a_corrupted_run_is_a_signal_and_the_monitor_records_it(
        job: Any, tracker: Any, server: Any) -> None:
    client, recorder = job
    source = source_for(tracker, server)
    assert source.poll() == []
    server.service.corrupt(client.model_id)
    [signal] = source.poll()
    run_id = recorder.run_of(client.model_id).id
    assert (signal.run_id, signal.signal, signal.corrupted) == (run_id, "tinker.corrupted", True)
    assert "000002" in signal.message
    monitor = RecoveryMonitor(tracker, [source], sleep=lambda s: None)
    [action], errors = monitor.poll_once()
    assert errors == [] and action.signal.signal == "tinker.corrupted"
    assert tracker.run(run_id).corrupted


def test_expired_and_deleted_checkpoints_change_status(job: Any, tracker: Any,
                                                       server: Any) -> None:
    client, _ = job
    state = f"tinker://{client.model_id}/weights/000002"
    sampler = f"tinker://{client.model_id}/sampler_weights/000002"
    server.service.expire(state)
    server.service.delete_checkpoint(sampler)
    source_for(tracker, server).poll()
    tracker.flush()
    found = {a.uri: a for a in tracker.artifacts(type="checkpoint")}
    assert found[state].status == "expired" and found[sampler].status == "expired"
    [expired] = [row["summary"] for row in tracker.audit(subject=found[state].id)
                 if row["summary"].startswith("expired")]
    assert "expired on the Tinker service at" in expired
    [deleted] = [row["summary"] for row in tracker.audit(subject=found[sampler].id)
                 if row["summary"].startswith("expired")]
    assert "deleted on the Tinker service" in deleted
    source_for(tracker, server).poll()  # idempotent: nothing more
    assert len([a for a in tracker.artifacts(type="checkpoint", status="expired")]) == 2


@pytest.mark.parametrize("status,body,headers,error_type", [
    (200, "{not json", {}, "JSONDecodeError"),
    (503, "down for maintenance", {}, "HTTPStatusError"),
    (429, "slow down", {"Retry-After": "30"}, "HTTPStatusError"),
    (200, '{"training_run_id": 5}', {}, "ValidationError"),
])
def test_hostile_answers_are_poll_errors_with_backoff(job: Any, tracker: Any, server: Any,
                                                      status: int, body: str,
                                                      headers: dict[str, str],
                                                      error_type: str) -> None:
    client, _ = job
    clock = Clock()
    source = source_for(tracker, server, clock)
    server.service.fault(f"/training_runs/{client.model_id}", status, body, headers=headers)
    server.service.corrupt(client.model_id)
    monitor = RecoveryMonitor(tracker, [source], sleep=lambda s: None)
    actions, errors = monitor.poll_once()
    assert actions == [] and [e.error_type for e in errors] == [error_type]
    assert source.error_count == 1
    clock.advance(10)  # past the 5 s backoff; inside the 30 s the 429 asked for
    second, _ = monitor.poll_once()
    clock.advance(60)
    third, _ = monitor.poll_once()
    detected = second if status != 429 else third
    assert [a.signal.signal for a in detected] == ["tinker.corrupted"]
    assert (second if status == 429 else third) == []
    assert tracker.run(detected[0].signal.run_id).corrupted


def test_a_vanished_run_and_a_dead_service_never_stop_the_monitor(
        job: Any, tracker: Any, server: Any) -> None:
    client, _ = job
    clock = Clock()
    server.service.vanish(client.model_id)
    source = source_for(tracker, server, clock)
    monitor = RecoveryMonitor(tracker, [source], sleep=lambda s: None, interval_s=0)
    assert monitor.run(max_polls=1) == 1
    assert any("404" in e.message for e in monitor.errors)
    dead = TinkerRunStatusSource(tracker, client=httpx.Client(base_url="http://127.0.0.1:9",
                                                              timeout=1), clock=clock)
    monitor = RecoveryMonitor(tracker, [dead], sleep=lambda s: None, interval_s=0)
    assert monitor.run(max_polls=2) == 2
    assert dead.error_count == 2  # the run and the checkpoint listing; then backing off
    assert {e.error_type for e in monitor.errors} == {"ConnectError"}


def test_the_api_key_is_required(tracker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    with pytest.raises(ValueError, match="TINKER_API_KEY"):
        TinkerRunStatusSource(tracker)


def test_a_checkpoint_deleted_through_the_rest_client_is_retired_by_hand(
        job: Any, tracker: Any, server: Any) -> None:
    import tinker

    from lineage.adapters.tinker import instrument_rest

    client, recorder = job
    rest = tinker.RestClient(base_url=server.base_url, api_key="tml-fake")
    instrument_rest(rest, recorder)
    state = f"tinker://{client.model_id}/weights/000002"
    rest.delete_checkpoint_from_tinker_path(state).result(timeout=30)
    rest.delete_checkpoint(client.model_id, "sampler_weights/000002").result(timeout=30)
    recorder.flush()
    found = {a.uri: a for a in tracker.artifacts(type="checkpoint")}
    assert {found[state].status, found[state].deletion} == {"retired", "deleted"}
    sampler = state.replace("/weights/", "/sampler_weights/")
    assert found[sampler].status == "retired"
    assert server.service.runs[client.model_id].checkpoints == []
    source_for(tracker, server).poll()  # gone from the service: already recorded, no expiry
    assert tracker.artifact(found[state].id).status == "retired"
