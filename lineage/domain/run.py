"""The Run aggregate: one training run, one LineageIR trace, one NSAI job.

Low-rate facts only (start, inputs, checkpoints, evaluations, failures, recoveries, finish);
steps go to the run's step log (``lineage.domain.steps``) and are never replayed into a Run.

The aggregate holds only what its commands check and its job status reads (replay is for
deciding a command); what a run shows is in the read models (``lineage.projections.traces``).
Every command method takes the envelope and the record time (``timestamp``) from the caller,
checks its invariants first, then triggers exactly one event. The recovery commands are in
``lineage.domain.run_recovery`` (a base class of Run), the rules of recovery attempts and their
leases in ``lineage.domain.recovery_rules``; the events stay here (this module names their stored
topics).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

import lineage.domain.recovery_rules as rules
from lineage.domain.envelope import Envelope, EnvelopedEvent
from lineage.domain.run_recovery import RecoveryCommands
from lineage.errors import InvariantError, RunFinishedError

FINAL_STATUSES = ("completed", "failed", "cancelled", "superseded")


class Run(RecoveryCommands, Aggregate):
    class Event(EnvelopedEvent):
        pass

    class Started(Event, Aggregate.Created):
        name: str
        job: dict[str, Any]
        tags: dict[str, str]
        start_step: int

    class TraceContextLinked(Event):
        """Started inside the caller's OpenTelemetry span (ids in hex), with ``Started``."""

        trace_id: str
        span_id: str
        sampled: bool

    class InputUsed(Event):
        artifact_id: UUID
        uri: str
        role: str

        def apply(self, run: Run) -> None:
            run.inputs.append(self.artifact_id)

    class EvaluationRecorded(Event):
        step: int
        metrics: dict[str, float]
        dataset: str | None
        split: str | None

    class CheckpointSaved(Event):
        artifact_id: UUID
        uri: str
        step: int
        format: str | None
        includes_optimizer: bool

        def apply(self, run: Run) -> None:
            run.checkpoints.append((self.artifact_id, self.step))
            run.checkpoint_ids.add(self.artifact_id)

    class FailureDetected(Event):
        signal: str
        error_type: str
        message: str
        retryable: bool
        corrupted: bool
        step: int | None

        def apply(self, run: Run) -> None:
            run.failures += 1
            run.corrupted = run.corrupted or self.corrupted
            run.last_failure = (f"{self.error_type}: {self.message}" if self.message
                                else self.error_type)

    class RecoveryStarted(Event):
        """Attempt ``attempt`` began; ``holder`` (the executor) holds it until ``lease_until``
        unless it renews the lease (``RecoveryLeaseRenewed``)."""

        class_version = 2
        attempt: int
        strategy: str
        holder: str
        lease_until: datetime

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """Stored before leases: no holder, and a lease of the default length from the
            start, so a recovery left open then can be taken over now."""
            state["holder"] = ""
            state["lease_until"] = state["timestamp"] + timedelta(seconds=rules.DEFAULT_RECOVERY_LEASE_S)

        def apply(self, run: Run) -> None:
            run.recovery_attempts = self.attempt
            run.recovering = True
            run.recovery_holder = self.holder
            run.lease_until = self.lease_until

    class RecoveryLeaseRenewed(Event):
        attempt: int
        holder: str
        lease_until: datetime

        def apply(self, run: Run) -> None:
            run.lease_until = self.lease_until

    class RecoveryCheckpointSelected(Event):
        attempt: int
        checkpoint_id: UUID
        step: int
        reason: str

    class RecoveryCheckpointRejected(Event):
        attempt: int
        checkpoint_id: UUID
        step: int | None
        reason: str

    class StepsLost(Event):
        """Steps this run logged after the checkpoint it was recovered from: redone elsewhere."""

        checkpoint_id: UUID
        checkpoint_step: int
        first_step: int
        last_step: int
        count: int
        new_run_id: UUID

        def apply(self, run: Run) -> None:
            run.lost_steps = (self.first_step, self.last_step, self.count)

    class RecoveryCompleted(Event):
        attempt: int
        new_run_id: UUID
        checkpoint_id: UUID

        def apply(self, run: Run) -> None:
            run.recovering = False
            run.superseded_by = self.new_run_id

    class RecoveryFailed(Event):
        attempt: int
        error_type: str
        message: str

        def apply(self, run: Run) -> None:
            run.recovering = False
            run.last_recovery_error = f"{self.error_type}: {self.message}"

    class RecoveryExhausted(Event):
        attempts: int

        def apply(self, run: Run) -> None:
            run.recovering = False
            run.recovery_exhausted = True

    class BestCheckpointChanged(Event):
        """An evaluation beat the run's best: ``artifact_id`` (the latest checkpoint at or
        before ``eval_step``) is now its best checkpoint."""

        artifact_id: UUID
        previous_artifact_id: UUID | None
        metric: str
        mode: str
        value: float
        checkpoint_step: int
        eval_step: int

        def apply(self, run: Run) -> None:
            run.best_checkpoint = self.artifact_id
            run.best_value = self.value

    class ResumedFrom(Event):
        previous_run_id: UUID
        checkpoint_id: UUID
        step: int
        optimizer_restored: bool

        def apply(self, run: Run) -> None:
            run.resumed_from = self.previous_run_id

    class Finished(Event):
        status: str
        reason: str | None
        superseded_by: UUID | None

        def apply(self, run: Run) -> None:
            run.status = self.status
            run.finished_reason = self.reason

    def __init__(self, name: str, job: dict[str, Any], tags: dict[str, str], start_step: int,
                 tenant_id: str, occurred_at: datetime) -> None:
        """From ``Started``: its facts are in the read models; the commands check the start
        step."""
        self.start_step = start_step
        self.status = "running"
        self.inputs: list[UUID] = []
        self.checkpoints: list[tuple[UUID, int]] = []
        self.checkpoint_ids: set[UUID] = set()  # checkpoints' ids: a save's repeat check
        self.failures = 0
        self.corrupted = False
        self.recovering = False
        self.recovery_attempts = 0
        self.recovery_holder = ""
        self.lease_until: datetime | None = None
        self.resumed_from: UUID | None = None
        self.superseded_by: UUID | None = None
        self.finished_reason: str | None = None
        self.last_failure: str | None = None
        self.last_recovery_error: str | None = None
        self.recovery_exhausted = False
        self.lost_steps: tuple[int, int, int] | None = None
        self.best_checkpoint: UUID | None = None
        self.best_value: float | None = None

    @classmethod
    def start(cls, run_id: UUID, name: str, job: dict[str, Any], tags: dict[str, str],
              start_step: int, envelope: Envelope, timestamp: datetime) -> Run:
        return cls._create(cls.Started, id=run_id, name=name, job=job, tags=tags,
                           start_step=start_step, timestamp=timestamp, **envelope.fields())

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    def _require_open(self, what: str) -> None:
        if self.finished:
            raise RunFinishedError(self.id, self.status, what)

    def link_trace_context(self, trace_id: str, span_id: str, sampled: bool, envelope: Envelope,
                           timestamp: datetime) -> None:
        self.trigger_event(self.TraceContextLinked, trace_id=trace_id, span_id=span_id,
                           sampled=sampled, timestamp=timestamp, **envelope.fields())

    def use_input(self, artifact_id: UUID, uri: str, role: str, envelope: Envelope,
                  timestamp: datetime) -> None:
        self._require_open("inputs")
        if artifact_id in self.inputs:
            return
        self.trigger_event(self.InputUsed, artifact_id=artifact_id, uri=uri, role=role,
                           timestamp=timestamp, **envelope.fields())

    def record_evaluation(self, step: int, metrics: dict[str, float], dataset: str | None,
                          split: str | None, envelope: Envelope, timestamp: datetime) -> None:
        self._require_open("evaluations")
        self.trigger_event(self.EvaluationRecorded, step=step, metrics=metrics, dataset=dataset,
                           split=split, timestamp=timestamp, **envelope.fields())

    def save_checkpoint(self, artifact_id: UUID, uri: str, step: int, format: str | None,
                        includes_optimizer: bool, envelope: Envelope, timestamp: datetime) -> None:
        self._require_open("checkpoints")
        if step < self.start_step:
            raise InvariantError(
                f"checkpoint step {step} is before run {self.id} started (step {self.start_step})"
            )
        if artifact_id in self.checkpoint_ids:
            return
        self.trigger_event(self.CheckpointSaved, artifact_id=artifact_id, uri=uri, step=step,
                           format=format, includes_optimizer=includes_optimizer,
                           timestamp=timestamp, **envelope.fields())

    def detect_failure(self, signal: str, error_type: str, message: str, retryable: bool,
                       corrupted: bool, step: int | None, envelope: Envelope,
                       timestamp: datetime) -> None:
        # Refused once the run ended: a finished run is history, and a late failure would turn
        # a completed run into a corrupted one (a resumed run records its own failures).
        self._require_open("failures")
        self.trigger_event(self.FailureDetected, signal=signal, error_type=error_type,
                           message=message, retryable=retryable, corrupted=corrupted, step=step,
                           timestamp=timestamp, **envelope.fields())

    def change_best(self, artifact_id: UUID, metric: str, mode: str, value: float,
                    checkpoint_step: int, eval_step: int, envelope: Envelope,
                    timestamp: datetime) -> None:
        """Make ``artifact_id`` the run's best checkpoint (the caller decided it is better)."""
        self._require_open("best checkpoint")
        self.trigger_event(self.BestCheckpointChanged, artifact_id=artifact_id,
                           previous_artifact_id=self.best_checkpoint, metric=metric, mode=mode,
                           value=value, checkpoint_step=checkpoint_step, eval_step=eval_step,
                           timestamp=timestamp, **envelope.fields())

    def resume_from(self, previous_run_id: UUID, checkpoint_id: UUID, step: int,
                    optimizer_restored: bool, envelope: Envelope, timestamp: datetime) -> None:
        self._require_open("resume link")
        if self.resumed_from is not None:
            raise InvariantError(f"run {self.id} already resumed from {self.resumed_from}")
        self.trigger_event(self.ResumedFrom, previous_run_id=previous_run_id,
                           checkpoint_id=checkpoint_id, step=step,
                           optimizer_restored=optimizer_restored, timestamp=timestamp,
                           **envelope.fields())

    def finish(self, status: str, reason: str | None, superseded_by: UUID | None,
               envelope: Envelope, timestamp: datetime) -> None:
        if self.finished:
            if self.status == status:
                return  # finishing twice the same way is a no-op, not an error
            if not (status == "superseded" and self.status == "failed"):
                raise RunFinishedError(self.id, self.status, "finish")
        self.trigger_event(self.Finished, status=status, reason=reason,
                           superseded_by=superseded_by, timestamp=timestamp, **envelope.fields())
