"""The seed's scenario end to end, with the real SDK against the fake service: checkpoints at
steps 20 and 40, the service flags the run corrupted at step 47, the monitor detects it in one
poll, the executor resumes from step 40 with the optimizer through the SDK, and the lineage shows
new run <- checkpoint 40 <- old run, steps 41-47 lost, inference against checkpoint 40 after."""

from __future__ import annotations

from typing import Any

import pytest
from tinker import types

from lineage import RetryPolicy
from lineage.adapters.tinker import (
    TinkerResume,
    TinkerResumeError,
    TinkerRunStatusSource,
    instrument,
)
from lineage.application.inference import inference_records
from lineage.application.monitor import RecoveryMonitor
from tests.tinker.conftest import train


def save_both(client: Any, name: str) -> tuple[str, str]:
    state = client.save_state(name).result(timeout=30).path
    return state, client.save_weights_for_sampler(name).result(timeout=30).path


def test_corrupted_at_47_resumes_from_40_through_the_sdk(service: Any, tracker: Any,
                                                         server: Any) -> None:
    recorder = instrument(service, tracker, name="sft", strict=True)
    old = service.create_lora_training_client("meta-llama/Llama-3.2-1B", rank=8).result(timeout=30)
    train(old, 20)
    save_both(old, "000020")
    train(old, 20)
    state40, sampler40 = save_both(old, "000040")
    train(old, 7)
    recorder.flush()
    old_run = recorder.run_of(old.model_id).id
    server.service.corrupt(old.model_id)

    resume = TinkerResume(service, recorder)
    source = TinkerRunStatusSource(tracker, base_url=server.base_url, api_key="tml-fake")
    monitor = RecoveryMonitor(tracker, [source], sleep=lambda s: None, resume=resume,
                              retry=RetryPolicy(max_attempts=1))
    [action], errors = monitor.poll_once()  # one poll: detected and recovered
    assert errors == [] and action.signal.signal == "tinker.corrupted"
    result = action.result
    assert result is not None and result.status == "recovered", result
    assert result.checkpoint.uri == state40 and result.optimizer_restored
    assert [r.reason for r in result.rejected] and "optimizer" in result.rejected[0].reason
    assert (result.lost_steps.first_step, result.lost_steps.last_step,
            result.lost_steps.count) == (41, 47, 7)

    new_client = resume.clients[result.new_run.id]
    assert new_client.model_id != old.model_id
    assert server.service.runs[new_client.model_id].optim_steps == 40  # Adam state restored
    train(new_client, 3)
    sampling = service.create_sampling_client(model_path=sampler40).result(timeout=30)
    sampling.sample(types.ModelInput.from_ints([1, 2, 3]), 1,
                    types.SamplingParams(max_tokens=4)).result(timeout=30)
    recorder.flush()

    new = tracker.run(result.new_run.id)
    ckpt40 = result.checkpoint.id
    assert (new.resumed_from, new.resumed_checkpoint) == (old_run, ckpt40)
    assert tracker.artifact(ckpt40).run_id == old_run
    assert server.service.runs[new_client.model_id].user_metadata == {
        "lineage_run_id": str(new.id)}
    assert [s.step for s in tracker.steps(new.id)] == [41, 42, 43]
    old_view = tracker.run(old_run)
    assert old_view.superseded_by == new.id and old_view.corrupted
    assert (old_view.lost_steps.first_step, old_view.lost_steps.last_step) == (41, 47)
    [sampler_artifact] = [a for a in tracker.artifacts(type="checkpoint") if a.uri == sampler40]
    [call] = inference_records(tracker, sampler_artifact.id)
    assert call.model_path == sampler40 and call.outcome == "ok" and call.run_id is None
    assert source.poll() == []  # the old run is no longer watched; the new one is
    server.service.corrupt(new_client.model_id)
    [again] = source.poll()
    assert (again.run_id, again.signal) == (new.id, "tinker.corrupted")


def test_an_exact_resume_refuses_a_sampler_path(service: Any, tracker: Any, server: Any) -> None:
    recorder = instrument(service, tracker, strict=True)
    client = service.create_lora_training_client("base", rank=4).result(timeout=30)
    train(client, 2)
    _, sampler = save_both(client, "000002")
    recorder.flush()
    [view] = [a for a in tracker.artifacts(type="checkpoint") if a.uri == sampler]
    resume = TinkerResume(service, recorder)
    with pytest.raises(TinkerResumeError, match="sampler_weights path: it holds weights only"):
        resume(view, recorder.run_of(client.model_id))
    assert len(server.service.runs) == 1  # nothing was created


def test_a_weights_only_resume_is_a_new_fine_tune(service: Any, tracker: Any,
                                                  server: Any) -> None:
    recorder = instrument(service, tracker, strict=True)
    client = service.create_lora_training_client("base", rank=4).result(timeout=30)
    train(client, 5)
    state, _ = save_both(client, "000005")
    tuned = service.create_training_client_from_state(state).result(timeout=30)
    train(tuned, 2)
    recorder.flush()
    run = tracker.run(recorder.run_of(tuned.model_id).id)
    assert run.resumed_from == recorder.run_of(client.model_id).id
    assert run.tags["tinker.origin"] == "from_state"
    assert [s.step for s in tracker.steps(run.id)] == [1, 2]  # a fresh optimizer
    assert server.service.runs[tuned.model_id].optim_steps == 2
