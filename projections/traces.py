"""Traces and spans in LineageIR form, with job status: one trace per run.

Spans: the run itself, step groups (``identity.STEPS_PER_SPAN`` step events of a run roll up
into one ``train steps`` span, so a million-step run has ten thousand step spans, not a
million), checkpoint saves, evaluations, failures and each recovery attempt. Their ids, parents
and grouping are the trace identity's (``lineage.spans.identity``), the OTLP export's too: span
ids are ``identity.lineage_span_id`` UUIDs, whose last 16 hex digits are the OTLP span id.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, bindparam, case, or_, select, update

from lineage.application.job_status import job_status
from lineage.codec.dispatch import handles
from lineage.codec.step_decode import StepBlock
from lineage.domain import Artifact, Run
from lineage.domain.liveness import HeartbeatRecorded
from lineage.domain.recovery_rules import concerns_the_run
from lineage.domain.steps import StepsRecorded
from lineage.projections.decoding import Dispatching, Item, dumps, loads
from lineage.projections.step_rollup import StepRollup, run_span_id
from lineage.projections.tables import artifacts, spans, traces
from lineage.spans import identity
from lineage.spans.assembly import run_status
from lineage.timestamps import iso

NO_RECOVERY = {"recovering": False, "attempts": 0, "exhausted": False, "last_error": None}


def recovery_span_id(run_id: str, attempt: int) -> str:
    run = UUID(run_id)
    return identity.lineage_span_id(run, identity.recovery_span_id(run, attempt))


def event_span_id(run_id: str, kind: str, event_id: UUID) -> str:
    return identity.lineage_span_id(UUID(run_id), identity.event_span_id(kind, event_id))


class TraceProjection(Dispatching):
    name = "traces"
    tables = (traces, spans)
    _saved_by: dict[str, UUID | None] = {}  # replaced per batch (apply), never mutated

    def apply(self, items: Sequence[Item], conn: Connection) -> None:
        # Steps fold in once per batch, after the run events: run events never touch the step
        # columns, and every run a step names was started by an earlier event. Job status is
        # refreshed again for runs the steps touched, so it ends the same whatever the batching.
        blocks: list[StepBlock] = []
        # Artifacts registered in this batch: the registry read model has no row for them yet.
        self._saved_by = {str(item.event.originator_id): item.event.run_id for item in items
                          if item.type is Artifact.Registered}
        touched: set[str] = set()
        activity: dict[str, str] = {}
        for item in items:
            if item.type is StepsRecorded:
                blocks.append(item.event)
                _latest(activity, str(item.event.run_id), item.event.recorded_at)
                continue
            handler = self.handler(item.type)
            if handler is not None:
                handler(conn, item.position, item.event)
            if isinstance(item.event, Run.Event):
                touched.add(str(item.event.originator_id))
                _latest(activity, str(item.event.originator_id), iso(item.event.timestamp))
            elif item.type is HeartbeatRecorded:
                _latest(activity, str(item.event.run_id), iso(item.event.timestamp))
        if blocks:
            touched.update(StepRollup(conn).apply(blocks))
        _record_activity(conn, activity)
        _refresh_jobs(conn, touched)

    # -- run events ----------------------------------------------------------------------------

    @handles(Run.Started)
    def _Run_Started(self, conn: Connection, position: int, e: Run.Started) -> None:
        run_id = str(e.originator_id)
        conn.execute(traces.insert().values(
            id=run_id, root_trace_id=run_id, parent_trace_id=None, name=e.name,
            tenant_id=e.tenant_id, status="running", job_status="pending", status_reason=None,
            finished_reason=None, last_failure=None, recovery=dumps(NO_RECOVERY), lost_steps=None,
            best_checkpoint_id=None, best=None, last_heartbeat_at=None, last_activity_at=None,
            failure_retryable=False, resumed_checkpoint_id=None,
            started_at=iso(e.occurred_at), finished_at=None, start_step=e.start_step, steps=0,
            last_step=None, last_metrics="{}", checkpoints=0, evaluations=0, failures=0,
            corrupted=False, superseded_by=None, job=dumps(e.job), tags=dumps(e.tags),
            position=position))
        _span(conn, run_span_id(run_id), run_id, None, "run", "train run", "running", e, position,
              attributes={"name": e.name, "job": e.job, "tags": e.tags, "actor": e.actor,
                          "source": e.source})

    @handles(Run.EvaluationRecorded)
    def _Run_EvaluationRecorded(self, conn: Connection, position: int, e: Run.EvaluationRecorded) -> None:
        run_id = str(e.originator_id)
        _bump(conn, run_id, evaluations=1)
        _span(conn, event_span_id(run_id, identity.EVALUATION, e.event_id), run_id,
              run_span_id(run_id), "evaluation", "evaluate", "ok", e,
              position, step=e.step, metrics=e.metrics,
              attributes={"dataset": e.dataset, "split": e.split}, finished=True)

    @handles(Run.CheckpointSaved)
    def _Run_CheckpointSaved(self, conn: Connection, position: int, e: Run.CheckpointSaved) -> None:
        run_id = str(e.originator_id)
        _bump(conn, run_id, checkpoints=1)
        _span(conn, event_span_id(run_id, identity.CHECKPOINT, e.event_id), run_id,
              run_span_id(run_id), "checkpoint", "save checkpoint",
              "ok", e, position, step=e.step, finished=True,
              attributes={"artifact_id": str(e.artifact_id), "uri": e.uri, "format": e.format,
                          "includes_optimizer": e.includes_optimizer})

    @handles(Run.FailureDetected)
    def _Run_FailureDetected(self, conn: Connection, position: int, e: Run.FailureDetected) -> None:
        run_id = str(e.originator_id)
        _bump(conn, run_id, failures=1)
        values: dict[str, Any] = {"last_failure": f"{e.error_type}: {e.message}" if e.message
                                  else e.error_type}
        if concerns_the_run(e.signal):  # one request's failure leaves the run's standing alone
            values["failure_retryable"] = bool(e.retryable)
        if e.corrupted:
            values["corrupted"] = True
        conn.execute(update(traces).where(traces.c.id == run_id).values(**values))
        _span(conn, event_span_id(run_id, identity.FAILURE, e.event_id), run_id,
              run_span_id(run_id), "failure", "detect failure",
              "error", e, position, step=e.step, finished=True, error=(e.error_type, e.message),
              attributes={"signal": e.signal, "retryable": e.retryable, "corrupted": e.corrupted})

    @handles(Run.RecoveryStarted)
    def _Run_RecoveryStarted(self, conn: Connection, position: int, e: Run.RecoveryStarted) -> None:
        run_id = str(e.originator_id)
        _recovery(conn, run_id, recovering=True, attempts=e.attempt, holder=e.holder,
                  lease_until=iso(e.lease_until))
        _span(conn, recovery_span_id(run_id, e.attempt), run_id, run_span_id(run_id), "recovery",
              "recover run", "running", e, position,
              attributes={"attempt": e.attempt, "strategy": e.strategy})

    @handles(Run.RecoveryLeaseRenewed)
    def _Run_RecoveryLeaseRenewed(self, conn: Connection, position: int,
                                  e: Run.RecoveryLeaseRenewed) -> None:
        _recovery(conn, str(e.originator_id), lease_until=iso(e.lease_until))

    @handles(Run.RecoveryCheckpointSelected)
    def _Run_RecoveryCheckpointSelected(self, conn: Connection, position: int,
                                        e: Run.RecoveryCheckpointSelected) -> None:
        _merge_span(conn, recovery_span_id(str(e.originator_id), e.attempt),
                    {"checkpoint_id": str(e.checkpoint_id), "checkpoint_step": e.step,
                     "selection_reason": e.reason})

    @handles(Run.RecoveryCheckpointRejected)
    def _Run_RecoveryCheckpointRejected(self, conn: Connection, position: int,
                                        e: Run.RecoveryCheckpointRejected) -> None:
        rejection = {"checkpoint_id": str(e.checkpoint_id), "step": e.step, "reason": e.reason}
        _merge_span(conn, recovery_span_id(str(e.originator_id), e.attempt), {},
                    append={"rejected": rejection})

    @handles(Run.StepsLost)
    def _Run_StepsLost(self, conn: Connection, position: int, e: Run.StepsLost) -> None:
        conn.execute(update(traces).where(traces.c.id == str(e.originator_id)).values(
            lost_steps=dumps({"after_checkpoint_step": e.checkpoint_step, "count": e.count,
                              "from_step": e.first_step, "to_step": e.last_step,
                              "resumed_as": str(e.new_run_id),
                              "checkpoint_id": str(e.checkpoint_id)})))

    @handles(Run.RecoveryCompleted)
    def _Run_RecoveryCompleted(self, conn: Connection, position: int, e: Run.RecoveryCompleted) -> None:
        run_id = str(e.originator_id)
        _recovery(conn, run_id, recovering=False)
        conn.execute(update(traces).where(traces.c.id == run_id)
                     .values(superseded_by=str(e.new_run_id)))
        _merge_span(conn, recovery_span_id(run_id, e.attempt), {"new_run_id": str(e.new_run_id)},
                    status="ok", finished_at=iso(e.occurred_at))

    @handles(Run.RecoveryFailed)
    def _Run_RecoveryFailed(self, conn: Connection, position: int, e: Run.RecoveryFailed) -> None:
        run_id = str(e.originator_id)
        _recovery(conn, run_id, recovering=False, last_error=f"{e.error_type}: {e.message}")
        _merge_span(conn, recovery_span_id(run_id, e.attempt), {}, status="error",
                    finished_at=iso(e.occurred_at), error=(e.error_type, e.message))

    @handles(Run.RecoveryExhausted)
    def _Run_RecoveryExhausted(self, conn: Connection, position: int, e: Run.RecoveryExhausted) -> None:
        run_id = str(e.originator_id)
        _recovery(conn, run_id, recovering=False, exhausted=True)
        message = f"recovery exhausted after {e.attempts} attempt(s)"
        span_id = recovery_span_id(run_id, e.attempts)
        status = conn.execute(select(spans.c.status).where(spans.c.id == span_id)).scalar()
        if status == "running":  # it closes the open attempt, as in the OTLP export
            _merge_span(conn, span_id, {"exhausted": True}, status="error",
                        finished_at=iso(e.occurred_at), error=("recovery_exhausted", message))
        else:  # no attempt open: a span of its own (lineage.spans.identity)
            _span(conn, event_span_id(run_id, identity.RECOVERY, e.event_id), run_id,
                  run_span_id(run_id), "recovery", "recover run", "error", e, position,
                  finished=True, error=("recovery_exhausted", message),
                  attributes={"attempt": e.attempts, "exhausted": True})

    @handles(Run.BestCheckpointChanged)
    def _Run_BestCheckpointChanged(self, conn: Connection, position: int,
                                   e: Run.BestCheckpointChanged) -> None:
        run_id = str(e.originator_id)
        best = {"metric": e.metric, "mode": e.mode, "value": e.value, "eval_step": e.eval_step,
                "checkpoint_step": e.checkpoint_step}
        conn.execute(update(traces).where(traces.c.id == run_id).values(
            best_checkpoint_id=str(e.artifact_id), best=dumps(best)))
        _span(conn, event_span_id(run_id, identity.BEST, e.event_id), run_id, run_span_id(run_id),
              "best", "select best checkpoint", "ok", e, position, step=e.eval_step,
              finished=True, attributes={**best, "artifact_id": str(e.artifact_id)})

    @handles(Artifact.Retired, Artifact.DeletionRecorded)
    def _Artifact_retention(self, conn: Connection, position: int, e: Any) -> None:
        """In the trace of the run that saved the artifact (from its ``Registered`` event: this
        batch's, else the registry read model's row), as the OTLP export does."""
        run_id = self._saved_by.get(str(e.originator_id)) or conn.execute(select(
            artifacts.c.run_id).where(artifacts.c.id == str(e.originator_id))).scalar()
        if run_id is None or conn.execute(select(traces.c.id).where(
                traces.c.id == str(run_id))).scalar() is None:
            return
        retired = isinstance(e, Artifact.Retired)
        attributes = ({"reason": e.reason, "policy": e.policy} if retired
                      else {"outcome": e.outcome, "detail": e.detail})
        _span(conn, event_span_id(str(run_id), identity.RETENTION, e.event_id), str(run_id),
              run_span_id(str(run_id)), "retention",
              "retire checkpoint" if retired else "delete checkpoint", "ok", e, position,
              finished=True, attributes={**attributes, "artifact_id": str(e.originator_id)})

    @handles(Run.ResumedFrom)
    def _Run_ResumedFrom(self, conn: Connection, position: int, e: Run.ResumedFrom) -> None:
        run_id, previous = str(e.originator_id), str(e.previous_run_id)
        root = conn.execute(select(traces.c.root_trace_id).where(traces.c.id == previous)).scalar()
        conn.execute(update(traces).where(traces.c.id == run_id)
                     .values(parent_trace_id=previous, root_trace_id=root or previous,
                             resumed_checkpoint_id=str(e.checkpoint_id)))
        _merge_span(conn, run_span_id(run_id), {"resumed_from": previous,
                                                "resumed_from_checkpoint": str(e.checkpoint_id),
                                                "resume_step": e.step,
                                                "optimizer_restored": e.optimizer_restored})

    @handles(Run.Finished)
    def _Run_Finished(self, conn: Connection, position: int, e: Run.Finished) -> None:
        run_id = str(e.originator_id)
        at = iso(e.occurred_at)
        values: dict[str, Any] = {"status": e.status, "finished_reason": e.reason, "finished_at": at}
        first, started = conn.execute(select(traces.c.finished_at, traces.c.started_at)
                                      .where(traces.c.id == run_id)).one()
        if e.superseded_by:
            values["superseded_by"] = str(e.superseded_by)
        conn.execute(update(traces).where(traces.c.id == run_id).values(**values))
        # One rule with the OTLP export: only a completed run is ok (failed, superseded,
        # cancelled: error)
        status, _ = run_status(e)
        _merge_span(conn, run_span_id(run_id), {"reason": e.reason}, status=status,
                    finished_at=at)
        if first is None:  # the first Finished: ``finish run``, as the OTLP export has it
            span_id = identity.lineage_span_id(UUID(run_id), identity.finish_span_id(UUID(run_id)))
            _span(conn, span_id, run_id, run_span_id(run_id), "finish", "finish run", status, e,
                  position, finished=True, attributes={"status": e.status, "reason": e.reason},
                  started_at=started)  # the span covers the whole run

    @handles(HeartbeatRecorded)
    def _HeartbeatRecorded(self, conn: Connection, position: int, e: HeartbeatRecorded) -> None:
        conn.execute(update(traces).where(traces.c.id == str(e.run_id))
                     .values(last_heartbeat_at=iso(e.occurred_at)))


def _span(conn: Connection, span_id: str, trace_id: str, parent: str | None, kind: str, name: str,
          status: str, e: Any, position: int, *, step: int | None = None,
          metrics: dict[str, float] | None = None, attributes: dict[str, Any] | None = None,
          finished: bool = False, error: tuple[str, str] | None = None,
          started_at: str | None = None) -> None:
    """Insert a span at the event's time (``started_at``: from then, to the event)."""
    at = iso(e.occurred_at)
    attributes = {**(attributes or {}), "event_id": str(e.event_id)}
    conn.execute(spans.insert().values(
        id=span_id, trace_id=trace_id, parent_span_id=parent, kind=kind, name=name, status=status,
        started_at=started_at or at, finished_at=at if finished else None, step_from=step,
        step_to=step,
        attributes=dumps(attributes), metrics=dumps(metrics or {}),
        error_type=error[0] if error else None, error_message=error[1] if error else None,
        position=position))


def _merge_span(conn: Connection, span_id: str, attributes: dict[str, Any], *,
                status: str | None = None, finished_at: str | None = None,
                error: tuple[str, str] | None = None,
                append: dict[str, Any] | None = None) -> None:
    row = conn.execute(select(spans.c.attributes).where(spans.c.id == span_id)).one_or_none()
    if row is None:
        return
    merged = {**loads(row.attributes), **attributes}
    for key, item in (append or {}).items():
        merged[key] = [*merged.get(key, []), item]
    values: dict[str, Any] = {"attributes": dumps(merged)}
    if status is not None:
        values["status"] = status
    if finished_at is not None:
        values["finished_at"] = finished_at
    if error is not None:
        values.update(error_type=error[0], error_message=error[1])
    conn.execute(update(spans).where(spans.c.id == span_id).values(**values))


def _latest(activity: dict[str, str], run_id: str, at: str) -> None:
    if at > activity.get(run_id, ""):
        activity[run_id] = at


def _record_activity(conn: Connection, activity: dict[str, str]) -> None:
    """Move each run's ``last_activity_at`` forward (never back: clocks of several writers)."""
    if activity:
        current = traces.c.last_activity_at
        conn.execute(update(traces).where(traces.c.id == bindparam("run")).values(
            last_activity_at=case((or_(current.is_(None), current < bindparam("at")),
                                   bindparam("at")), else_=current)),
            [{"run": run_id, "at": at} for run_id, at in activity.items()])


def _bump(conn: Connection, run_id: str, **counters: int) -> None:
    conn.execute(update(traces).where(traces.c.id == run_id).values(
        **{name: traces.c[name] + amount for name, amount in counters.items()}))


def _recovery(conn: Connection, run_id: str, **changes: Any) -> None:
    current = loads(conn.execute(select(traces.c.recovery).where(traces.c.id == run_id)).scalar())
    merged = {**NO_RECOVERY, **current, **changes}
    if not merged["recovering"]:  # the lease means something only while an attempt is open
        merged.pop("holder", None)
        merged.pop("lease_until", None)
    conn.execute(update(traces).where(traces.c.id == run_id).values(recovery=dumps(merged)))


def _refresh_jobs(conn: Connection, run_ids: set[str]) -> None:
    """Job status by the same rules as the domain (``lineage.application.job_status``), from the rows;
    once per run per batch (the result depends only on the row, not on the batching)."""
    if not run_ids:
        return
    for row in conn.execute(select(traces).where(traces.c.id.in_(sorted(run_ids)))):
        recovery = {**NO_RECOVERY, **loads(row.recovery)}
        lost = loads(row.lost_steps) if row.lost_steps else None
        run = SimpleNamespace(
            superseded_by=row.superseded_by, status=row.status, finished_reason=row.finished_reason,
            lost_steps=(lost["from_step"], lost["to_step"], lost["count"]) if lost else None,
            corrupted=bool(row.corrupted), last_failure=row.last_failure, failures=row.failures,
            recovering=recovery["recovering"], recovery_attempts=recovery["attempts"],
            recovery_exhausted=recovery["exhausted"], last_recovery_error=recovery["last_error"],
            checkpoints=row.checkpoints, resumed_from=row.parent_trace_id)
        status, reason = job_status(run, row.steps)
        if (status, reason) != (row.job_status, row.status_reason):
            conn.execute(update(traces).where(traces.c.id == row.id)
                         .values(job_status=status, status_reason=reason))
