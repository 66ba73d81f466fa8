"""The Run aggregate's recovery commands (``RecoveryCommands``, a base class of
``lineage.domain.run.Run``): start, renew, take over, select, complete, fail and exhaust a
recovery attempt, and record the steps it lost.

Each command checks its rule (``lineage.domain.recovery_rules``) first, then triggers exactly one
of the Run's events; the events are defined on ``Run`` (their stored topics name that module).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import lineage.domain.recovery_rules as rules
from lineage.domain.envelope import Envelope


class Recoverable(rules.RecoveryState, Protocol):
    """What the recovery commands need of a run: the rules' state, the Run's events and
    ``trigger_event``."""

    # The Run's events (nested classes: called, they make an event for ``trigger_event``).
    def RecoveryStarted(self, *args: Any, **kwargs: Any) -> Any: ...
    def RecoveryLeaseRenewed(self, *args: Any, **kwargs: Any) -> Any: ...
    def RecoveryCheckpointSelected(self, *args: Any, **kwargs: Any) -> Any: ...
    def RecoveryCheckpointRejected(self, *args: Any, **kwargs: Any) -> Any: ...
    def RecoveryCompleted(self, *args: Any, **kwargs: Any) -> Any: ...
    def RecoveryFailed(self, *args: Any, **kwargs: Any) -> Any: ...
    def RecoveryExhausted(self, *args: Any, **kwargs: Any) -> Any: ...
    def StepsLost(self, *args: Any, **kwargs: Any) -> Any: ...

    @property
    def trigger_event(self) -> Callable[..., Any]: ...


class RecoveryCommands:
    """The recovery commands of a Run (mixed into the aggregate)."""

    def start_recovery(self: Recoverable, strategy: str, holder: str, lease_until: datetime,
                       envelope: Envelope, timestamp: datetime) -> int:
        """Begin the next attempt, held by ``holder`` until ``lease_until``. Refused while
        another attempt holds an unexpired lease (``take_over_recovery`` first once it has
        expired)."""
        rules.check_can_start(self)
        attempt = self.recovery_attempts + 1
        self.trigger_event(self.RecoveryStarted, attempt=attempt, strategy=strategy,
                           holder=holder, lease_until=lease_until, timestamp=timestamp,
                           **envelope.fields())
        return attempt

    def lease_expired(self: Recoverable, now: datetime) -> bool:
        """Whether the attempt in progress is held by nobody at ``now``."""
        return rules.lease_expired(self, now)

    def take_over_recovery(self: Recoverable, holder: str, envelope: Envelope,
              timestamp: datetime) -> None:
        """End the attempt in progress whose executor stopped renewing its lease, as a
        ``RecoveryFailed`` of type RecoveryLeaseExpired naming both holders; the taker then
        starts the next attempt. Refused while the lease holds."""
        rules.check_takeover(self, timestamp)
        self.trigger_event(self.RecoveryFailed, attempt=self.recovery_attempts,
                           error_type=rules.LEASE_EXPIRED,
                           message=rules.takeover_message(self, holder),
                           timestamp=timestamp, **envelope.fields())

    def renew_recovery_lease(self: Recoverable, attempt: int, holder: str, lease_until: datetime,
                             envelope: Envelope, timestamp: datetime) -> None:
        """Extend the lease of ``attempt``; refused once it was taken over or ended."""
        rules.require_recovering(self, attempt)
        self.trigger_event(self.RecoveryLeaseRenewed, attempt=attempt, holder=holder,
                           lease_until=lease_until, timestamp=timestamp, **envelope.fields())

    def select_recovery_checkpoint(self: Recoverable, checkpoint_id: UUID, step: int, reason: str,
                                   envelope: Envelope, timestamp: datetime,
                                   attempt: int | None = None) -> None:
        rules.require_recovering(self, attempt)
        self.trigger_event(self.RecoveryCheckpointSelected, attempt=self.recovery_attempts,
                           checkpoint_id=checkpoint_id, step=step, reason=reason,
                           timestamp=timestamp, **envelope.fields())

    def complete_recovery(self: Recoverable, new_run_id: UUID, checkpoint_id: UUID,
                          envelope: Envelope, timestamp: datetime,
                          attempt: int | None = None) -> None:
        rules.require_recovering(self, attempt)
        self.trigger_event(self.RecoveryCompleted, attempt=self.recovery_attempts,
                           new_run_id=new_run_id, checkpoint_id=checkpoint_id,
                           timestamp=timestamp, **envelope.fields())

    def fail_recovery(self: Recoverable, error_type: str, message: str, envelope: Envelope,
                      timestamp: datetime, attempt: int | None = None) -> None:
        rules.require_recovering(self, attempt)
        self.trigger_event(self.RecoveryFailed, attempt=self.recovery_attempts,
                           error_type=error_type, message=message, timestamp=timestamp,
                           **envelope.fields())

    def reject_recovery_checkpoint(self: Recoverable, checkpoint_id: UUID, step: int | None,
                                   reason: str, envelope: Envelope, timestamp: datetime,
                                   attempt: int | None = None) -> None:
        """Record why a candidate checkpoint was not used (missing, corrupted, no optimizer
        state...) before the recovery falls back to an older one."""
        rules.require_recovering(self, attempt)
        self.trigger_event(self.RecoveryCheckpointRejected, attempt=self.recovery_attempts,
                           checkpoint_id=checkpoint_id, step=step, reason=reason,
                           timestamp=timestamp, **envelope.fields())

    def record_lost_steps(self: Recoverable, checkpoint_id: UUID, checkpoint_step: int,
                          first_step: int, last_step: int, count: int, new_run_id: UUID,
                          envelope: Envelope, timestamp: datetime,
                          attempt: int | None = None) -> None:
        rules.require_recovering(self, attempt)
        if count <= 0:
            return
        self.trigger_event(self.StepsLost, checkpoint_id=checkpoint_id,
                           checkpoint_step=checkpoint_step, first_step=first_step,
                           last_step=last_step, count=count, new_run_id=new_run_id,
                           timestamp=timestamp, **envelope.fields())

    def exhaust_recovery(self: Recoverable, envelope: Envelope, timestamp: datetime,
                         attempt: int | None = None) -> None:
        """Record that attempts ran out (closing an attempt still open). ``attempt``, when
        given, must be the last one and ended: another executor's attempt is left alone."""
        rules.check_exhaust(self, attempt)
        self.trigger_event(self.RecoveryExhausted, attempts=self.recovery_attempts,
                           timestamp=timestamp, **envelope.fields())
