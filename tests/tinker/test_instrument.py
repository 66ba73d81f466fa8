"""The real tinker SDK, instrumented by one call, against the fake service: what gets recorded."""

from __future__ import annotations

from typing import Any

import pytest
from tinker import types

from lineage.adapters.tinker import instrument
from lineage.application.inference import inference_records
from lineage.application.monitor import LocalRunStatusSource
from tests.tinker.conftest import datum, train


def test_a_training_job_is_recorded_as_it_runs(service: Any, tracker: Any, server: Any) -> None:
    recorder = instrument(service, tracker, job={"learning": {"learning_rate": 1e-4}},
                          name="sft", strict=True)
    client = service.create_lora_training_client("meta-llama/Llama-3.2-1B", rank=8,
                                                 train_unembed=False).result(timeout=30)
    train(client, 3, tokens=5)
    state = client.save_state("000003").result(timeout=30)
    sampler = client.save_weights_for_sampler("000003").result(timeout=30)
    train(client, 1)
    sampling = client.create_sampling_client(sampler.path).result(timeout=30)
    sampling.sample(types.ModelInput.from_ints([1, 2]), 2,
                    types.SamplingParams(max_tokens=4)).result(timeout=30)
    recorder.flush()

    run = tracker.run(recorder.run_of(client.model_id).id)
    assert run.name == "sft"
    assert run.job["model"] == "meta-llama/Llama-3.2-1B"
    assert run.job["adapter"] == {"type": "lora", "rank": 8, "train_mlp": True,
                                  "train_attn": True, "train_unembed": False}
    assert run.job["learning"] == {"learning_rate": 1e-4}
    assert run.job["metadata"]["tinker"]["model_id"] == client.model_id
    assert run.tags["tinker.origin"] == "fresh"
    steps = tracker.steps(run.id)
    assert [s.step for s in steps] == [1, 2, 3, 4]
    assert [s.metrics["loss:sum"] for s in steps] == [2.0, 1.0, round(2 / 3, 6), 0.5]
    assert steps[0].metrics["optim:optim_step"] == 1.0
    assert [s.metrics["tinker:client_seq"] for s in steps[:3]] == [2.0, 4.0, 6.0]
    assert steps[0].tokens == 5
    ckpts = {a.uri: a for a in tracker.artifacts(type="checkpoint", run=run.id)}
    assert ckpts[state.path].step == 3 and ckpts[state.path].includes_optimizer
    assert ckpts[state.path].metadata["optim_steps_contained"] == 3
    assert ckpts[sampler.path].step == 3 and not ckpts[sampler.path].includes_optimizer
    assert ckpts[state.path].id in ckpts[sampler.path].parents
    [call] = inference_records(tracker, ckpts[sampler.path].id)
    assert (call.operation, call.num_samples, call.prompt_tokens, call.output_tokens,
            call.outcome, call.run_id) == ("sample", 2, 2, 8, "ok", run.id)
    assert "prompt_tokens" not in call.detail  # no text unless opted in
    assert recorder.errors == 0


def test_a_checkpoint_holds_the_optim_steps_submitted_before_it_not_its_label(
        service: Any, tracker: Any) -> None:
    """The cookbook's off-by-one: a save submitted after optim_step 2 is called while step 3's
    forward_backward is in flight; it holds 2 updates whatever its name says."""
    recorder = instrument(service, tracker, strict=True)
    client = service.create_lora_training_client("base", rank=4).result(timeout=30)
    train(client, 2)
    fb = client.forward_backward([datum()], "cross_entropy")
    saved = client.save_state("batch-000003").result(timeout=30)
    client.optim_step(types.AdamParams(learning_rate=1e-4)).result(timeout=30)
    fb.result(timeout=30)
    recorder.flush()
    [ckpt] = [a for a in tracker.artifacts(type="checkpoint") if a.uri == saved.path]
    assert ckpt.step == 2
    assert ckpt.metadata["tinker_name"] == "batch-000003"


def test_failed_futures_are_recorded_as_classified_failures(service: Any, tracker: Any,
                                                            server: Any) -> None:
    recorder = instrument(service, tracker, strict=True)
    client = service.create_lora_training_client("base", rank=4).result(timeout=30)
    server.service.fail_next("optim_step", "accelerator fell over", "server")
    fb = client.forward_backward([datum()], "cross_entropy")
    with pytest.raises(Exception, match="accelerator fell over"):
        client.optim_step(types.AdamParams(learning_rate=1e-4)).result(timeout=30)
    fb.result(timeout=30)
    server.service.fail_next("save_weights", "bad name", "user")
    with pytest.raises(Exception, match="bad name"):
        client.save_state("x").result(timeout=30)
    recorder.flush()
    run = tracker.run(recorder.run_of(client.model_id).id)
    assert run.failures == 2
    events = [e for e in tracker.run_events(run.id) if type(e).__name__ == "FailureDetected"]
    assert [(e.error_type, e.retryable, e.signal) for e in events] == [
        ("RequestFailedError", True, "request.tinker.failed.server"),
        ("RequestFailedError", False, "request.tinker.failed.user")]
    assert tracker.steps(run.id) == []  # the failed update is no step
    assert LocalRunStatusSource(tracker).poll() == []  # a failed request is no dead run


def test_a_call_the_sdk_refuses_at_once_is_a_failure_and_later_steps_still_log(
        service: Any, tracker: Any) -> None:
    recorder = instrument(service, tracker, strict=True)
    client = service.create_lora_training_client("base", rank=4).result(timeout=30)
    with pytest.raises(ValueError, match="No data provided"):
        client.forward_backward([], "cross_entropy")
    train(client, 2)
    recorder.flush()
    run = tracker.run(recorder.run_of(client.model_id).id)
    assert [s.step for s in tracker.steps(run.id)] == [1, 2]
    [failure] = [e for e in tracker.run_events(run.id) if type(e).__name__ == "FailureDetected"]
    assert (failure.error_type, failure.retryable) == ("ValueError", False)
    assert "forward_backward: No data provided" in failure.message


def test_instrumenting_twice_is_one_recorder_and_text_is_kept_only_when_asked(
        service: Any, tracker: Any) -> None:
    recorder = instrument(service, tracker, record_text=True, strict=True)
    assert instrument(service, tracker) is recorder
    client = service.create_lora_training_client("base", rank=4).result(timeout=30)
    train(client, 1)
    path = client.save_weights_for_sampler("s").result(timeout=30).path
    sampler = client.create_sampling_client(path).result(timeout=30)
    sampler.sample(types.ModelInput.from_ints([5, 6]), 1,
                   types.SamplingParams(max_tokens=4)).result(timeout=30)
    recorder.flush()
    [ckpt] = [a for a in tracker.artifacts(type="checkpoint") if a.uri == path]
    [call] = inference_records(tracker, ckpt.id)
    assert call.detail["prompt_tokens"] == [5, 6] and call.detail["output_tokens"] == [[0] * 4]


def test_an_inference_record_is_in_the_checkpoints_audit(service: Any, tracker: Any) -> None:
    recorder = instrument(service, tracker, strict=True)
    client = service.create_lora_training_client("base", rank=4).result(timeout=30)
    path = client.save_weights_for_sampler("s").result(timeout=30).path
    sampling = service.create_sampling_client(model_path=path).result(timeout=30)
    sampling.compute_logprobs(types.ModelInput.from_ints([1, 2])).result(timeout=30)
    recorder.flush()
    [ckpt] = [a for a in tracker.artifacts(type="checkpoint") if a.uri == path]
    [row] = [r for r in tracker.audit(subject=ckpt.id) if r["kind"] == "artifact.inference"]
    assert row["summary"].startswith(f"compute_logprobs served from {path}: ")
