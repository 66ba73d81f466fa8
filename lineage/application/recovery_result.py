"""What a recovery returns (``RecoveryResult``, with its attempts and rejected checkpoints),
and the refusals decided from a run's view before any attempt is recorded.

The executor (``lineage.application.recovery``) builds these; the CLI and the monitor read
them. Results, never exceptions, for the outcomes a caller must handle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from lineage.application.recovery_lease import lease_expired
from lineage.application.run_handle import RunHandle
from lineage.application.views import ArtifactView, LostSteps, RunView

STATUSES = ("recovered", "already_recovering", "already_recovered", "finished", "no_failure",
            "no_checkpoint", "failed", "exhausted", "taken_over")
NOT_RECOVERED = ("completed", "cancelled")  # a run that ended like this is not recovered


@dataclass(frozen=True)
class Rejection:
    checkpoint_id: UUID
    step: int | None
    reason: str


@dataclass(frozen=True)
class Attempt:
    number: int
    checkpoint_id: UUID | None = None
    new_run_id: UUID | None = None
    error: str | None = None
    retryable: bool = False
    delay_s: float | None = None  # waited after this attempt, before the next


@dataclass(frozen=True)
class RecoveryResult:
    """What a recovery did. ``status`` is one of ``recovered``, ``already_recovering`` (another
    executor holds it), ``already_recovered``, ``finished`` (the run completed or was
    cancelled: nothing is written), ``no_failure`` (nothing to recover from),
    ``no_checkpoint`` (no candidate passed the checks), ``failed`` (a non-retryable error),
    ``exhausted`` (retryable errors until the attempts ran out) or ``taken_over`` (this
    executor's lease expired and another executor took the attempt over). ``message`` says
    what happened; ``hint``, when not empty, what a Python caller may do next (the CLI prints
    its own, in terms of its options)."""

    status: str
    run_id: UUID
    message: str
    new_run: RunHandle | None = None
    checkpoint: ArtifactView | None = None
    optimizer_restored: bool = False
    attempts: tuple[Attempt, ...] = ()
    rejected: tuple[Rejection, ...] = ()
    lost_steps: LostSteps | None = None
    hint: str = ""

    @property
    def recovered(self) -> bool:
        return self.status == "recovered"


def refusal(view: RunView, now: Any) -> RecoveryResult | None:
    """The result for a run that must not be recovered now, or None when it may be (an
    attempt in progress whose lease expired at ``now`` may be taken over)."""
    if view.superseded_by is not None:
        return RecoveryResult("already_recovered", view.id, f"run {view.id} was already "
                              f"recovered as run {view.superseded_by}")
    if view.recovering and not lease_expired(view, now):
        return RecoveryResult("already_recovering", view.id, f"run {view.id} is already "
                              f"recovering (attempt {view.recovery_attempts} in progress, held "
                              f"by {view.recovery_holder or '?'} until "
                              f"{view.recovery_lease_until})")
    if view.status in NOT_RECOVERED:
        return RecoveryResult("finished", view.id, f"run {view.id} {view.status}: a finished "
                              "run is not recovered", hint="tracker.resume_run starts a new run "
                              "from one of its checkpoints")
    if view.failures == 0 and view.status != "failed":
        return RecoveryResult("no_failure", view.id, f"run {view.id} has no failure recorded",
                              hint="record one first, e.g. run.record_failure(...)")
    return None
