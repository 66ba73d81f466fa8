"""Record inference calls against the artifact that served them, and read them back.

``record_inference`` validates in the caller's thread and queues the event (returns a Pending);
``inference_records`` reads an artifact's inference stream by index (never the whole log).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from lineage.application import validation
from lineage.application.commands import id_of
from lineage.application.unit_of_work import UnitOfWork
from lineage.domain.envelope import Envelope
from lineage.domain.inference import InferenceRecorded, inference_stream_id
from lineage.errors import ValidationError


class InferenceHost(Protocol):
    """What recording and reading need (``Tracker`` provides it)."""

    def envelope(self, event_id: Any = None, occurred_at: Any = None) -> Envelope: ...

    def submit(self, label: str, handler: Callable[[UnitOfWork], Any], envelope: Envelope) -> Any: ...

    @property
    def store(self) -> Any: ...

    @property
    def mapper(self) -> Any: ...


@dataclass(frozen=True)
class InferenceView:
    artifact_id: UUID
    run_id: UUID | None
    model_path: str
    operation: str
    prompt_tokens: int
    output_tokens: int
    num_samples: int
    latency_s: float
    outcome: str
    detail: dict[str, Any]
    occurred_at: datetime


def record_inference(host: InferenceHost, artifact: Any, *, model_path: str, operation: str,
                     prompt_tokens: int, output_tokens: int, num_samples: int, latency_s: float,
                     outcome: str = "ok", run: Any = None, detail: dict[str, Any] | None = None,
                     occurred_at: Any = None, event_id: Any = None) -> Any:
    """Queue one inference record on ``artifact``'s inference stream; returns the Pending.
    Raises ValidationError naming the field before anything is queued."""
    artifact_id = id_of(artifact, "artifact")
    run_id = None if run is None else id_of(run, "run")
    if isinstance(latency_s, bool) or not isinstance(latency_s, int | float) or not latency_s >= 0:
        raise ValidationError("latency_s", "must be a number of seconds >= 0", latency_s)
    fields: dict[str, Any] = {
        "artifact_id": artifact_id, "run_id": run_id,
        "model_path": validation.text(model_path, "model_path", max_length=validation.URI_MAX),
        "operation": validation.text(operation, "operation", max_length=validation.SHORT_MAX),
        "prompt_tokens": validation.step(prompt_tokens, "prompt_tokens"),
        "output_tokens": validation.step(output_tokens, "output_tokens"),
        "num_samples": validation.step(num_samples, "num_samples"),
        "latency_s": float(latency_s),
        "outcome": validation.text(outcome, "outcome", max_length=validation.NAME_MAX),
        "detail": validation.json_object(detail, "detail"),
    }
    envelope = host.envelope(event_id, occurred_at)
    stream = inference_stream_id(artifact_id)

    def record(uow: UnitOfWork) -> None:
        uow.artifact(artifact_id)  # must exist
        uow.log(InferenceRecorded(**{"originator_id": stream, "timestamp": uow.timestamp,
                                     "originator_version": uow.next_log_version(stream),
                                     **fields, **uow.envelope().fields()}))

    return host.submit(f"inference on {artifact_id}", record, envelope)


def inference_records(host: InferenceHost, artifact: Any) -> list[InferenceView]:
    """The inference calls ``artifact`` served, oldest first."""
    stream = inference_stream_id(id_of(artifact, "artifact"))
    views = []
    for stored in host.store.read_stream(stream):
        e = host.mapper.to_domain_event(stored)
        views.append(InferenceView(e.artifact_id, e.run_id, e.model_path, e.operation,
                                   e.prompt_tokens, e.output_tokens, e.num_samples, e.latency_s,
                                   e.outcome, dict(e.detail), e.occurred_at))
    return views
