"""The recovery commands of a run handle, recorded on the failed run (see DESIGN §7)."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from lineage.application import validation
from lineage.application.commands import id_of
from lineage.application.handles import Pending
from lineage.application.unit_of_work import UnitOfWork
from lineage.application.views import LostSteps
from lineage.domain.recovery_rules import DEFAULT_RECOVERY_LEASE_S
from lineage.errors import ValidationError

if TYPE_CHECKING:
    from lineage.application.recording import Recorder


class RecoveryCommands:
    """``RunHandle``'s recovery commands: begin, lease, select or reject a checkpoint,
    complete, fail, exhaust. Each is one command on the failed run."""

    id: UUID
    recorder: Recorder
    finished_status: str | None

    def _command(self, label: str, event_id: Any, occurred_at: Any, handler: Any) -> Pending:
        """Submit ``handler`` as one command on this run (also RunHandle's other commands)."""
        envelope = self.recorder.envelope(event_id, occurred_at)
        return self.recorder.submit(f"{label} for run {self.id}", handler, envelope)

    def begin_recovery(self, strategy: str = "latest", *, event_id: Any = None,
                       holder: str | None = None, lease_s: float | None = None) -> Pending:
        """Record ``recovery started``, held by ``holder`` (default: this process) for
        ``lease_s`` seconds (default ``DEFAULT_RECOVERY_LEASE_S``; ``renew_recovery_lease``
        extends it); resolves to the attempt number. While another attempt holds an unexpired
        lease, raises InvariantError (on ``wait()``): exactly one executor wins. An attempt
        whose lease expired (its executor died) is taken over: ``RecoveryFailed`` of type
        ``RecoveryLeaseExpired`` for it, then this attempt."""
        strategy = validation.text(str(strategy), "strategy", max_length=validation.ALIAS_MAX)
        holder = self._holder(holder)
        lease = timedelta(seconds=_lease_seconds(lease_s))

        def begin(uow: UnitOfWork) -> int:
            run = uow.run(self.id)
            if run.lease_expired(uow.timestamp):
                run.take_over_recovery(holder, uow.envelope(), uow.timestamp)
            return run.start_recovery(strategy, holder, uow.timestamp + lease, uow.envelope(),
                                      uow.timestamp)

        return self._command("recovery", event_id, None, begin)

    def renew_recovery_lease(self, attempt: int, *, holder: str | None = None,
                             lease_s: float | None = None) -> Pending:
        """Hold ``attempt`` for ``lease_s`` more seconds from now; refused (InvariantError on
        ``wait()``) once it was taken over or ended."""
        attempt = validation.step(attempt, "attempt")
        holder = self._holder(holder)
        lease = timedelta(seconds=_lease_seconds(lease_s))
        return self._command("recovery", None, None, lambda uow: uow.run(self.id)
                             .renew_recovery_lease(attempt, holder, uow.timestamp + lease,
                                                   uow.envelope(), uow.timestamp))

    def select_recovery_checkpoint(self, checkpoint: Any, *, step: int, reason: str,
                                   attempt: int | None = None) -> Pending:
        """Record the checkpoint the recovery resumes from. ``attempt`` (the number
        ``begin_recovery`` gave), when given, must still be in progress: after a takeover the
        old executor's commands are refused (InvariantError on ``wait()``); so for the
        commands below."""
        checkpoint_id = id_of(checkpoint, "checkpoint")
        step = validation.step(step)
        reason = validation.text(reason, "reason", max_length=validation.TEXT_MAX, multiline=True)
        return self._command("recovery", None, None, lambda uow: uow.run(self.id)
                             .select_recovery_checkpoint(checkpoint_id, step, reason,
                                                         uow.envelope(), uow.timestamp, attempt))

    def reject_recovery_checkpoint(self, checkpoint: Any, *, step: int | None,
                                   reason: str, attempt: int | None = None) -> Pending:
        """Record why a candidate checkpoint was not used by the recovery in progress."""
        checkpoint_id = id_of(checkpoint, "checkpoint")
        step = validation.optional_step(step, "step")
        reason = validation.text(reason, "reason", max_length=validation.TEXT_MAX, multiline=True)
        return self._command("recovery", None, None, lambda uow: uow.run(self.id)
                             .reject_recovery_checkpoint(checkpoint_id, step, reason,
                                                         uow.envelope(), uow.timestamp, attempt))

    def complete_recovery(self, new_run: Any, checkpoint: Any, *,
                          lost: LostSteps | None = None, checkpoint_step: int = 0,
                          attempt: int | None = None) -> Pending:
        """Record that ``new_run`` resumed this run, and mark this run superseded by it.
        ``lost`` (the steps logged after ``checkpoint``, at ``checkpoint_step``) is recorded
        first as ``StepsLost``."""
        new_id = id_of(new_run, "new_run")
        checkpoint_id = id_of(checkpoint, "checkpoint")
        checkpoint_step = validation.step(checkpoint_step, "checkpoint_step")

        def complete(uow: UnitOfWork) -> None:
            run = uow.run(self.id)
            if lost is not None:
                run.record_lost_steps(checkpoint_id, checkpoint_step, lost.first_step,
                                      lost.last_step, lost.count, new_id, uow.envelope(),
                                      uow.timestamp, attempt)
            run.complete_recovery(new_id, checkpoint_id, uow.envelope(), uow.timestamp, attempt)
            run.finish("superseded", f"resumed as {new_id}", new_id, uow.envelope(), uow.timestamp)

        pending = self._command("recovery", None, None, complete)
        self.finished_status = "superseded"
        return pending

    def fail_recovery(self, error_type: str, message: str = "", *,
                      attempt: int | None = None) -> Pending:
        error_type = validation.text(error_type, "error_type")
        message = validation.text(message, "message", max_length=validation.TEXT_MAX,
                                  allow_empty=True, multiline=True)
        return self._command("recovery", None, None, lambda uow: uow.run(self.id)
                             .fail_recovery(error_type, message, uow.envelope(), uow.timestamp,
                                            attempt))

    def exhaust_recovery(self, *, attempt: int | None = None) -> Pending:
        return self._command("recovery", None, None, lambda uow: uow.run(self.id)
                             .exhaust_recovery(uow.envelope(), uow.timestamp, attempt))

    def _holder(self, holder: str | None) -> str:
        if holder is None:
            return f"{self.recorder.origin.source} pid {os.getpid()}"
        return validation.text(holder, "holder")


def _lease_seconds(value: Any) -> float:
    if value is None:
        return DEFAULT_RECOVERY_LEASE_S
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 10**7:
        raise ValidationError("lease_s", "must be a positive number of seconds", value)
    return float(value)
