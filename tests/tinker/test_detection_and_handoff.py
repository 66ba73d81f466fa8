"""Detection signals beyond the ``corrupted`` flag (a failed session, server-side failures in a
row) and the in-process hand-off of a resumed client to the training loop, with the real SDK
against the fake service."""

from __future__ import annotations

from typing import Any

import pytest
from tinker import types

from lineage import RetryPolicy
from lineage.adapters.tinker import (
    TinkerRecorder,
    TinkerRecovery,
    TinkerRunStatusSource,
    instrument,
)
from lineage.application.monitor import LocalRunStatusSource
from lineage.errors import ValidationError
from tests.tinker.conftest import datum, train


def test_a_failed_session_is_a_signal_and_a_failed_search_a_poll_error(
        service: Any, tracker: Any, server: Any) -> None:
    recorder = instrument(service, tracker, strict=True)
    client = service.create_lora_training_client("base", rank=4).result(timeout=30)
    train(client, 1)
    recorder.flush()
    source = TinkerRunStatusSource(tracker, base_url=server.base_url, api_key="tml-fake",
                                   backoff_s=0)
    assert source.poll() == []  # an active session
    server.service.fault("/sessions/search", 500, "{oops", times=1)
    assert source.poll() == [] and source.error_count == 1  # recorded; the monitor goes on
    session = client.model_id.rsplit(":train:", 1)[0]
    server.service.fail_session(session, {"type": "request", "request_id": "42",
                                          "request_type": "ForwardBackward"}, "user", "bad batch")
    [signal] = source.poll()
    assert (signal.run_id, signal.signal, signal.retryable) == (
        recorder.run_of(client.model_id).id, "tinker.session_failed.user", False)
    assert "reason request 42" in signal.message and "bad batch" in signal.message
    server.service.fail_session(session, {"type": "training_run",
                                          "training_run_id": client.model_id})
    [signal] = source.poll()
    assert (signal.signal, signal.retryable) == ("tinker.session_failed.internal", True)
    assert TinkerRunStatusSource(tracker, base_url=server.base_url, api_key="tml-fake",
                                 sessions=False).poll() == []


def fail(client: Any, server: Any, *ops: str) -> None:
    """Submit ``ops`` (``forward_backward``, ``optim_step``), each failing on the service's side."""
    futures = []
    for op in ops:
        server.service.fail_next(op, "accelerator fell over", "server")
        futures.append(client.forward_backward([datum()], "cross_entropy") if op != "optim_step"
                       else client.optim_step(types.AdamParams(learning_rate=1e-4)))
    for future in futures:
        with pytest.raises(Exception, match="accelerator fell over"):
            future.result(timeout=30)


def test_the_monitor_hands_the_resumed_client_to_the_training_loop(
        service: Any, tracker: Any, server: Any) -> None:
    with pytest.raises(ValidationError, match="server_failures_to_detect"):
        TinkerRecorder(tracker, server_failures_to_detect=0)
    recorder = instrument(service, tracker, strict=True, server_failures_to_detect=3)
    with TinkerRecovery(tracker, service, recorder, interval_s=0.05, base_url=server.base_url,
                        api_key="tml-fake", retry=RetryPolicy(max_attempts=1)) as recovery:
        client = service.create_lora_training_client("base", rank=4).result(timeout=30)
        train(client, 5)
        client.save_state("000005").result(timeout=30)
        train(client, 2)
        fail(client, server, "forward_backward", "optim_step")  # two: still a healthy run
        recorder.flush()
        assert LocalRunStatusSource(tracker).poll() == []
        assert recovery.replacement(client) is None
        fail(client, server, "optim_step")  # the third in a row: the run is dead
        resumed = recovery.wait(client, timeout=120)
        assert resumed.step == 5 and resumed.replaces == client.model_id
        assert recovery.replacement(client) == resumed
        train(client, 1)  # a step the old client still had in flight: its run has ended
        train(resumed.client, 2)  # the loop goes on from the checkpoint
        recorder.flush()  # the late step is not recorded (the domain would refuse it)
        assert recorder.late == 1  # one step, not recorded

    old, new = recorder.run_of(client.model_id), tracker.run(resumed.run_id)
    assert new.resumed_from == old.id and tracker.run(old.id).superseded_by == new.id
    [dead] = [e for e in tracker.run_events(old.id) if type(e).__name__ == "FailureDetected"
              and e.signal == "tinker.server_failures"]
    assert dead.retryable and "3 requests" in dead.message
    assert [s.step for s in tracker.steps(new.id)] == [6, 7]
    assert server.service.runs[resumed.client.model_id].optim_steps == 7
    assert recovery.monitor.errors == []
