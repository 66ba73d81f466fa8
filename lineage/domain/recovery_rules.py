"""The rules of a run's recovery attempts and their leases, checked by the Run aggregate.

An attempt is held by its ``holder`` until ``lease_until`` (renewed while the executor works,
``lineage.application.recovery_lease``); once that has passed, anyone may take the attempt
over. The attempt number is the fencing token: a command for an attempt that is no longer the
one in progress is refused, so an executor that was taken over records nothing more.

These functions only decide: each raises InvariantError when the rule is broken and records
nothing; ``lineage.domain.run`` triggers the events (its module names their stored topics).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol
from uuid import UUID

from lineage.errors import InvariantError

DEFAULT_RECOVERY_LEASE_S = 120.0  # how long a recovery is held without a renewal
LEASE_EXPIRED = "RecoveryLeaseExpired"  # error type of the RecoveryFailed a takeover records
# A failure whose signal starts with this concerns one request (a call to a training service
# that failed and that the client may retry): the run goes on, so it is counted and shown but
# never makes the run a candidate for recovery, however retryable.
REQUEST_SIGNAL = "request."


def concerns_the_run(signal: str) -> bool:
    """Whether a failure with ``signal`` is the run's (not one request's): see REQUEST_SIGNAL."""
    return not signal.startswith(REQUEST_SIGNAL)


class RecoveryState(Protocol):
    """What the rules read of a run (the Run aggregate's attributes)."""

    @property
    def id(self) -> UUID: ...

    status: str
    failures: int
    recovering: bool
    recovery_attempts: int
    recovery_holder: str
    lease_until: datetime | None
    superseded_by: UUID | None


def lease_expired(run: RecoveryState, now: datetime) -> bool:
    """Whether the attempt in progress is held by nobody at ``now``."""
    return run.recovering and (run.lease_until is None or now >= run.lease_until)


def check_can_start(run: RecoveryState) -> None:
    """A new attempt needs a failure to recover from, no attempt in progress (an expired one is
    taken over first) and no recovery already completed."""
    if run.recovering:
        raise InvariantError(_held(run))
    if run.superseded_by is not None:
        raise InvariantError(f"run {run.id} was already recovered as {run.superseded_by}")
    if run.failures == 0 and run.status not in ("failed",):
        raise InvariantError(f"run {run.id} has no failure to recover from")


def check_takeover(run: RecoveryState, now: datetime) -> None:
    """The attempt in progress may be taken over only once its lease has expired."""
    require_recovering(run)
    if not lease_expired(run, now):
        raise InvariantError(_held(run))


def takeover_message(run: RecoveryState, holder: str) -> str:
    """The message of the RecoveryFailed a takeover records: both holders and the expiry."""
    return (f"attempt {run.recovery_attempts} held by {run.recovery_holder or '?'}: its "
            f"lease expired at {run.lease_until}; taken over by {holder}")


def require_recovering(run: RecoveryState, attempt: int | None = None) -> None:
    """An attempt must be in progress; ``attempt`` (the executor's fencing token), when given,
    must be that one: an executor whose attempt was taken over can record nothing more."""
    if not run.recovering:
        raise InvariantError(f"run {run.id} has no recovery in progress"
                             + ("" if attempt is None else f" (attempt {attempt} ended)"))
    if attempt is not None and attempt != run.recovery_attempts:
        raise InvariantError(f"run {run.id}: recovery attempt {attempt} was taken over; "
                             f"attempt {run.recovery_attempts} is in progress")


def check_exhaust(run: RecoveryState, attempt: int | None) -> None:
    """``attempt``, when given, must be the last one and ended: another executor's attempt
    is left alone."""
    if attempt is not None and (run.recovering or attempt != run.recovery_attempts):
        raise InvariantError(f"run {run.id}: attempt {run.recovery_attempts} is not "
                             f"attempt {attempt}, ended: not exhausted")


def _held(run: RecoveryState) -> str:
    return (f"run {run.id} is already recovering (attempt {run.recovery_attempts} held by "
            f"{run.recovery_holder or '?'} until {run.lease_until})")
