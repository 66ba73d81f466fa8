"""The rest of the SDK's surface, instrumented, against the fake service: ephemeral sampler
weights, external exports, evaluation-style ``forward``, the deprecated ``load_state*``,
``copy_weights``, sampling a bare base model, and the RestClient calls that change or reveal
lineage (publish, unpublish, TTL, list_checkpoints)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import tinker
from tinker import types

from lineage.adapters.tinker import TinkerRunStatusSource, instrument, instrument_rest
from lineage.application.inference import inference_records
from lineage.application.monitor import LocalRunStatusSource
from lineage.application.remote_status import record_remote_change, remote_changes
from lineage.errors import ValidationError
from tests.tinker.conftest import datum, train


def by_uri(tracker: Any) -> dict[str, Any]:
    return {a.uri: a for a in tracker.artifacts(limit=1000)}


def sample(client: Any) -> None:
    client.sample(types.ModelInput.from_ints([1, 2]), 1,
                  types.SamplingParams(max_tokens=4)).result(timeout=30)


def test_ephemeral_external_forward_load_state_copy_and_base_model_are_recorded(
        server: Any, tracker: Any) -> None:
    service = tinker.ServiceClient(base_url=server.base_url, api_key="tml-fake",
                                   project_id="archive")
    recorder = instrument(service, tracker, strict=True)
    client = service.create_lora_training_client("base", rank=4).result(timeout=30)
    train(client, 2)
    evaluated = client.forward([datum()], "cross_entropy")  # evaluates the weights after 2 steps
    ephemeral = client.save_weights_and_get_sampling_client().result(timeout=30)
    sample(ephemeral)
    external = client.save_weights_external("export-2").result(timeout=30).path
    state = client.save_state("000002").result(timeout=30).path
    evaluated.result(timeout=30)
    train(client, 2)
    copy = service.copy_weights(state, ttl_seconds=7200).result(timeout=30)
    sample(service.create_sampling_client(base_model="Qwen/Qwen3-8B").result(timeout=30))
    in_flight = [client.forward_backward([datum()], "cross_entropy"),
                 client.optim_step(types.AdamParams(learning_rate=1e-4))]  # step 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        loaded = client.load_state_with_optimizer(state)  # back to step 2
    train(client, 2)
    for future in (*in_flight, loaded):
        future.result(timeout=30)
    recorder.flush()

    old = tracker.run(recorder.run_of(client.model_id).id)  # the newest run of the client
    [first] = [r for r in tracker.runs() if r.id == old.resumed_from]
    assert [s.step for s in tracker.steps(first.id)] == [1, 2, 3, 4, 5]  # forward is no step
    assert first.status == "superseded" and first.superseded_by == old.id
    assert [s.step for s in tracker.steps(old.id)] == [3, 4]  # the optimizer's count goes on
    assert old.tags["tinker.origin"] == "load_state_with_optimizer"
    [evaluation] = [e for e in tracker.run_events(first.id)
                    if type(e).__name__ == "EvaluationRecorded"]
    assert (evaluation.step, evaluation.dataset) == (2, "tinker.forward")
    assert evaluation.metrics["loss:sum"] == pytest.approx(2 / 3, abs=1e-5)

    artifacts = by_uri(tracker)
    [sampler_uri] = [uri for uri in artifacts if "/ephemeral/" in uri]
    assert sampler_uri.startswith(f"tinker://{client.model_id}/ephemeral/")
    assert artifacts[sampler_uri].step == 2 and not artifacts[sampler_uri].includes_optimizer
    assert [c.operation for c in inference_records(tracker, artifacts[sampler_uri].id)] == ["sample"]
    assert artifacts[external].step == 2 and not artifacts[external].includes_optimizer
    assert artifacts[external].metadata["tinker_checkpoint_type"] == "external"
    assert artifacts[copy].parents == [artifacts[state].id] and artifacts[copy].run_id is None
    assert artifacts[copy].step == 2 and artifacts[copy].includes_optimizer
    base = artifacts["hf://Qwen/Qwen3-8B"]
    assert base.type == "model" and len(inference_records(tracker, base.id)) == 1
    assert artifacts[state].id in tracker.run(old.id).inputs
    # the status source never takes the ephemeral weights (no persistent path) for deleted
    TinkerRunStatusSource(tracker, base_url=server.base_url, api_key="tml-fake").poll()
    assert tracker.artifact(artifacts[sampler_uri].id).status == "live"
    assert recorder.errors == 0


def test_rest_publish_ttl_and_list_checkpoints_are_recorded(service: Any, tracker: Any,
                                                            server: Any) -> None:
    recorder = instrument(service, tracker, strict=True)
    client = service.create_lora_training_client("base", rank=4).result(timeout=30)
    train(client, 1)
    kept = client.save_state("kept").result(timeout=30).path
    gone = client.save_state("gone").result(timeout=30).path
    rest = tinker.RestClient(base_url=server.base_url, api_key="tml-fake")
    instrument_rest(rest, recorder)
    rest.publish_checkpoint_from_tinker_path(kept).result(timeout=30)
    rest.set_checkpoint_ttl_from_tinker_path(kept, 7200).result(timeout=30)
    rest.unpublish_checkpoint_from_tinker_path(kept).result(timeout=30)
    server.service.delete_checkpoint(gone)  # by the service's own CLI, say
    assert [c.tinker_path for c in rest.list_checkpoints(client.model_id).result(
        timeout=30).checkpoints] == [kept]
    recorder.flush()

    artifacts = by_uri(tracker)
    changes = remote_changes(tracker, artifacts[kept].id)
    assert [c.change for c in changes] == ["published", "ttl_set", "unpublished"]
    assert changes[1].detail["ttl_seconds"] == 7200 and changes[1].detail["expires_at"]
    assert server.service.runs[client.model_id].checkpoints[0].expires_at is not None
    assert artifacts[gone].status == "expired"  # list_checkpoints revealed it
    run_id = recorder.run_of(client.model_id).id
    assert not rest.get_training_run(client.model_id).result(timeout=30).corrupted
    server.service.corrupt(client.model_id)
    for _ in range(2):  # seen twice, recorded once
        assert rest.get_training_run(client.model_id).result(timeout=30).corrupted
        recorder.flush()
    assert tracker.run(run_id).corrupted and tracker.run(run_id).failures == 1
    [signal] = LocalRunStatusSource(tracker).poll()  # the monitor would recover it
    assert signal.run_id == run_id and signal.corrupted
    kinds = [row["kind"] for row in tracker.audit(subject=artifacts[kept].id)]
    assert kinds.count("artifact.remote_state") == 3
    with pytest.raises(ValidationError, match="change"):
        record_remote_change(tracker, artifacts[kept].id, "renamed")
    assert recorder.errors == 0
