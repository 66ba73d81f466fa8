"""The audit log: one row per event: who, what, when, tenant, subject, a short summary."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import Connection

from lineage.domain import Alias, Artifact, Run
from lineage.domain.inference import InferenceRecorded
from lineage.domain.liveness import HeartbeatRecorded
from lineage.domain.remote_state import RemoteStateChanged
from lineage.domain.seals import Log
from lineage.domain.steps import StepsRecorded
from lineage.projections.bulk import append_rows
from lineage.projections.decoding import Item
from lineage.projections.tables import audit
from lineage.timestamps import iso

SUBJECT = {"Run": "run", "Artifact": "artifact", "Alias": "alias"}


def _metrics(values: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in list(values.items())[:4])


# One template per event class (keyed by class, like every dispatch; an event without one is
# summarised by its name). Placeholders name the event's fields (ids as text, so ``:.8`` shows
# the first 8 characters); the few in ``WORKED_OUT`` are computed from them.
SUMMARIES: dict[type, str] = {
    Run.Started: "started run {name!r} at step {start_step}",
    Run.InputUsed: "used {role} {artifact_id:.8} ({uri})",
    Run.EvaluationRecorded: "evaluation at step {step}: {metrics_shown}",
    Run.CheckpointSaved: "saved checkpoint {artifact_id:.8} at step {step}",
    Run.FailureDetected: "failure {error_type} ({signal}){corrupted_shown}",
    Run.RecoveryStarted: "recovery attempt {attempt} started ({strategy}) by {holder_shown}",
    Run.RecoveryLeaseRenewed:
        "recovery attempt {attempt} lease renewed until {lease_until_shown} ({holder})",
    Run.RecoveryCheckpointSelected:
        "recovery selected checkpoint {checkpoint_id:.8} (step {step}): {reason}",
    Run.RecoveryCompleted: "recovered as run {new_run_id:.8}",
    Run.RecoveryFailed: "recovery attempt {attempt} failed: {error_type}",
    Run.RecoveryExhausted: "recovery exhausted after {attempts} attempt(s)",
    Run.ResumedFrom: "resumed from run {previous_run_id:.8} at step {step}",
    Run.Finished: "finished: {status}{reason_shown}",
    Run.RecoveryCheckpointRejected: "recovery rejected checkpoint {checkpoint_id:.8}: {reason}",
    Run.StepsLost: "steps {first_step}-{last_step} lost ({count}), redone by run {new_run_id:.8}",
    Run.BestCheckpointChanged:
        "best checkpoint is now {artifact_id:.8} ({metric}={value:.4g} at step {eval_step})",
    Artifact.Registered: "registered {type} {uri}",
    Artifact.Pinned: "pinned ({key}): {reason}",
    Artifact.Unpinned: "unpinned ({key})",
    Artifact.DeletionRecorded: "bytes {outcome}: {detail}",
    HeartbeatRecorded: "heartbeat from pid {pid} (last step {last_step})",
    InferenceRecorded: "{operation} served from {model_path}: {outcome}, {num_samples} "
                       "sample(s), {output_tokens} token(s)",
    RemoteStateChanged: "{change} on the service ({uri}){detail_shown}",
    Artifact.Verified: "verified: {ok_shown} {detail}",
    Artifact.Retired: "retired: {reason}",
    Artifact.Expired: "expired: {reason}",
    Alias.Created: "alias {name!r} created in {scope}",
    Alias.Moved: "alias moved to {artifact_id:.8}",
    Log.Sealed: "seal {originator_version}: tree of {size} rows, root {root:.16}..., "
                "key {public_key:.16}...",
}
WORKED_OUT: dict[str, Callable[[Any], object]] = {
    "metrics_shown": lambda e: _metrics(e.metrics),  # the first four
    "corrupted_shown": lambda e: ", corrupted" if e.corrupted else "",
    "holder_shown": lambda e: e.holder or "?",
    "lease_until_shown": lambda e: iso(e.lease_until),
    "reason_shown": lambda e: f" ({e.reason})" if e.reason else "",
    "detail_shown": lambda e: "".join(f", {k}={v}" for k, v in e.detail.items()),
    "ok_shown": lambda e: "ok" if e.ok else "MISMATCH",
}


class _Fields:
    """An event's fields as a template reads them."""

    def __init__(self, event: Any) -> None:
        self.event = event

    def __getitem__(self, key: str) -> object:
        worked_out = WORKED_OUT.get(key)
        value = worked_out(self.event) if worked_out else getattr(self.event, key)
        return str(value) if isinstance(value, UUID) else value


def summary_of(event: Any, name: str) -> str:
    """The audit summary of ``event`` (``name``: its class's name, for events without one)."""
    template = SUMMARIES.get(type(event))
    return name if template is None else template.format_map(_Fields(event))


class AuditProjection:
    """Every event but steps: a step's audit row is made from the step metrics read model
    when asked for (``ReadModels.audit(include_steps=True)``), so the millions of steps of a
    long run cost no row here."""

    name = "audit"
    tables = (audit,)

    def apply(self, items: Sequence[Item], conn: Connection) -> None:
        append_rows(conn, audit, [self._row(item) for item in items
                                  if item.type is not StepsRecorded])

    def _row(self, item: Item) -> tuple[Any, ...]:
        e = item.event
        aggregate, _, name = item.kind.partition(".")
        summary = summary_of(e, name)
        subject = str(e.originator_id)
        run_id = subject if aggregate == "Run" else (str(e.run_id) if getattr(e, "run_id", None) else None)
        if item.type is HeartbeatRecorded:  # on its own stream: the subject is the run
            aggregate, name, subject = "Run", "Heartbeat", str(e.run_id)
        elif item.type is InferenceRecorded:  # on its own stream: the subject is the artifact
            aggregate, name, subject = "Artifact", "Inference", str(e.artifact_id)
        elif item.type is RemoteStateChanged:
            aggregate, name, subject = "Artifact", "RemoteState", str(e.artifact_id)
        kind = SUBJECT.get(aggregate, aggregate.lower())
        return (item.position, str(e.event_id), iso(e.occurred_at), iso(e.timestamp), e.tenant_id,
                e.actor, e.source, f"{kind}.{_snake(name)}", kind, subject, run_id, summary[:500])


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
