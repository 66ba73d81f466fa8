"""The lease a recovery attempt is held by, so a recovery whose executor died is taken over.

``RecoveryStarted`` records who holds the attempt (``holder``: host/program, pid and a token)
and until when (``lease_until``: the writer's clock when it was recorded, plus ``lease_s``).
While the executor works, ``LeaseKeeper`` renews the lease every third of it
(``RecoveryLeaseRenewed``), so an attempt that takes longer than one lease (a long ``--exec``
trainer launch, hashing big checkpoints) stays held. When the executor dies, renewals stop;
once the lease has expired, the next ``recover`` (a person's, or the monitor's) takes the
attempt over: ``RecoveryFailed`` of type ``RecoveryLeaseExpired`` naming both holders, then the
next attempt. Whether a lease has expired is decided by the Run aggregate on the writer thread,
with optimistic concurrency on the run's stream: of two executors taking over at once, one wins.

The attempt number is the fencing token: every command an executor records for its attempt
carries it, and the aggregate refuses it once the attempt was taken over, so an executor that
was only slow (not dead) records nothing more and returns ``taken_over``.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING
from uuid import uuid4

from lineage.errors import InvariantError

if TYPE_CHECKING:
    from lineage.application.recording import Recorder
    from lineage.application.run_handle import RunHandle
    from lineage.application.views import RunView

log = logging.getLogger(__name__)


def new_holder(recorder: Recorder) -> str:
    """A name for one executor: where it runs (the tracker's ``source``), its pid, and a token
    that tells two executors of one process apart."""
    return f"{recorder.origin.source} pid {os.getpid()} {uuid4().hex[:8]}"


def now_of(recorder: Recorder) -> datetime:
    """The recorder's clock (a tracker's injected clock in tests), as an aware UTC time."""
    return datetime.fromtimestamp(recorder.now_ns() / 1e9, UTC)


def lease_expired(view: RunView, now: datetime) -> bool:
    """Whether ``view``'s attempt in progress is held by nobody at ``now`` (read models; the
    aggregate decides again when the takeover is recorded)."""
    until = view.recovery_lease_until
    return view.recovering and (until is None or now >= until)


class LeaseKeeper:
    """Renews one attempt's lease every ``lease_s / 3`` seconds on a daemon thread, while used
    as a context manager. A refused renewal (the attempt was taken over or ended) stops it and
    sets ``lost``; a store error is logged and retried at the next interval. Never raises."""

    def __init__(self, handle: RunHandle, attempt: int, holder: str, lease_s: float) -> None:
        self.handle = handle
        self.attempt = attempt
        self.holder = holder
        self.lease_s = lease_s
        self.renewals = 0
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lineage-recovery-lease",
                                        daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(self.lease_s)

    def _loop(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                self.handle.renew_recovery_lease(self.attempt, holder=self.holder,
                                                 lease_s=self.lease_s).wait(self.lease_s)
                self.renewals += 1
            except InvariantError:
                self.lost = True
                return
            except Exception as error:  # a background renewal never breaks the recovery
                log.warning("lineage recovery: renewing the lease of run %s attempt %s failed: "
                            "%s", self.handle.id, self.attempt, error)
