"""The audit log: one row per event: who, what, when, tenant, subject, a short summary."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

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


def _short(value: Any) -> str:
    return str(value)[:8]


def _metrics(values: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in list(values.items())[:4])


SUMMARIES: dict[type, Callable[[Any], str]] = {  # keyed by event class, like every dispatch
    Run.Started: lambda e: f"started run {e.name!r} at step {e.start_step}",
    Run.InputUsed: lambda e: f"used {e.role} {_short(e.artifact_id)} ({e.uri})",
    Run.EvaluationRecorded: lambda e: f"evaluation at step {e.step}: {_metrics(e.metrics)}",
    Run.CheckpointSaved: lambda e: f"saved checkpoint {_short(e.artifact_id)} at step {e.step}",
    Run.FailureDetected: lambda e: f"failure {e.error_type} ({e.signal})"
                                     + (", corrupted" if e.corrupted else ""),
    Run.RecoveryStarted: lambda e: f"recovery attempt {e.attempt} started ({e.strategy}) by "
                                     f"{e.holder or '?'}",
    Run.RecoveryLeaseRenewed: lambda e: f"recovery attempt {e.attempt} lease renewed until "
                                          f"{iso(e.lease_until)} ({e.holder})",
    Run.RecoveryCheckpointSelected: lambda e: f"recovery selected checkpoint "
                                                f"{_short(e.checkpoint_id)} (step {e.step}): {e.reason}",
    Run.RecoveryCompleted: lambda e: f"recovered as run {_short(e.new_run_id)}",
    Run.RecoveryFailed: lambda e: f"recovery attempt {e.attempt} failed: {e.error_type}",
    Run.RecoveryExhausted: lambda e: f"recovery exhausted after {e.attempts} attempt(s)",
    Run.ResumedFrom: lambda e: f"resumed from run {_short(e.previous_run_id)} at step {e.step}",
    Run.Finished: lambda e: f"finished: {e.status}" + (f" ({e.reason})" if e.reason else ""),
    Run.RecoveryCheckpointRejected: lambda e: f"recovery rejected checkpoint "
                                                f"{_short(e.checkpoint_id)}: {e.reason}",
    Run.StepsLost: lambda e: f"steps {e.first_step}-{e.last_step} lost ({e.count}), redone by "
                               f"run {_short(e.new_run_id)}",
    Run.BestCheckpointChanged: lambda e: f"best checkpoint is now {_short(e.artifact_id)} "
                                           f"({e.metric}={e.value:.4g} at step {e.eval_step})",
    Artifact.Registered: lambda e: f"registered {e.type} {e.uri}",
    Artifact.Pinned: lambda e: f"pinned ({e.key}): {e.reason}",
    Artifact.Unpinned: lambda e: f"unpinned ({e.key})",
    Artifact.DeletionRecorded: lambda e: f"bytes {e.outcome}: {e.detail}",
    HeartbeatRecorded: lambda e: f"heartbeat from pid {e.pid} (last step {e.last_step})",
    InferenceRecorded: lambda e: f"{e.operation} served from {e.model_path}: {e.outcome}, "
                                 f"{e.num_samples} sample(s), {e.output_tokens} token(s)",
    RemoteStateChanged: lambda e: f"{e.change} on the service ({e.uri})"
                                  + "".join(f", {k}={v}" for k, v in e.detail.items()),
    Artifact.Verified: lambda e: f"verified: {'ok' if e.ok else 'MISMATCH'} {e.detail}",
    Artifact.Retired: lambda e: f"retired: {e.reason}",
    Artifact.Expired: lambda e: f"expired: {e.reason}",
    Alias.Created: lambda e: f"alias {e.name!r} created in {e.scope}",
    Alias.Moved: lambda e: f"alias moved to {_short(e.artifact_id)}",
    Log.Sealed: lambda e: f"seal {e.originator_version}: tree of {e.size} rows, root "
                          f"{e.root[:16]}..., key {e.public_key[:16]}...",
}


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
        summary = SUMMARIES.get(item.type, lambda _: name)(e)
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
