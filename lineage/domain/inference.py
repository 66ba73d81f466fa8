"""Inference records: a sampling call served by a checkpoint (or sampler weights).

One append-only stream per artifact that served calls (``inference_stream_id``), like the step
log: never replayed into an object, kept out of the Artifact aggregate's stream (replayed on
every load), read back as a list. No prompt or completion text unless the caller opted in.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from lineage.domain.envelope import LogEvent


def inference_stream_id(artifact_id: UUID) -> UUID:
    """The id of the stream of inference calls an artifact served."""
    return uuid5(artifact_id, "inference")


class InferenceRecorded(LogEvent):
    artifact_id: UUID  # the checkpoint (or sampler weights) that served the call
    run_id: UUID | None  # the run whose client made the call, when known
    model_path: str
    operation: str  # "sample", "compute_logprobs"
    prompt_tokens: int
    output_tokens: int
    num_samples: int
    latency_s: float
    outcome: str  # "ok", or the error's class name
    detail: dict[str, Any]  # stop reasons; prompt and completion tokens only when opted in
