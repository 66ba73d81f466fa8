"""The recovery monitor (DESIGN §7): watches runs through status sources and recovers them.

``LocalRunStatusSource`` reads this store. It reports:

- a run the backend flagged corrupted, or whose last recorded failure is retryable, that no
  recovery has been tried for yet (``already_recorded``: the failure is an event already);
- a recovery whose executor died: a run recovering whose lease (lineage.application.recovery_lease)
  expired by the source's clock; the recovery takes the attempt over;
- a crashed process: a run that has logged steps, has no finish event and no failure, and whose
  last step, run event and heartbeat (lineage.application.heartbeat) are all older than ``stale_after_s``.
  A pending run (nothing logged yet, e.g. one a recovery created for a trainer to pick up) is
  never reported as crashed.

``RecoveryMonitor.poll_once`` asks every source, records the failure a source found (signal,
error type, retryable, corrupted) on the run, and calls the recovery executor. A source that
raises is recorded in ``errors`` (and logged) and the other sources still run; the monitor
never stops on a poll error. Runs without recorded failures after a failed recovery need a
person: the sources skip runs a recovery was already tried for.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from lineage.application.recovery_lease import lease_expired
from lineage.application.recovery_result import NOT_RECOVERED, RecoveryResult
from lineage.application.views import RunView
from lineage.domain.recovery_rules import LEASE_EXPIRED
from lineage.ports import RunSignal, RunStatusSource
from lineage.timestamps import iso

if TYPE_CHECKING:

    from lineage.application.run_handle import RunHandle


class WatchedStore(Protocol):
    """What the local status source reads (``Tracker`` provides it): the read models."""

    def run(self, run: Any) -> RunView: ...

    def watched_runs(self) -> list[RunView]: ...


class RecoveringTracker(WatchedStore, Protocol):
    """What the monitor needs to act (``Tracker`` provides it)."""

    def run_handle(self, run: Any) -> RunHandle: ...

    @property
    def recover(self) -> Callable[..., RecoveryResult]: ...

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PollFailure:
    """A source's ``poll`` raised: recorded (not raised) so the monitor keeps going."""

    source: str
    at: datetime
    error_type: str
    message: str


@dataclass(frozen=True)
class MonitorAction:
    """What the monitor did about one signal: the recovery's result, or the error it hit."""

    signal: RunSignal
    result: RecoveryResult | None = None
    error: str | None = None


class LocalRunStatusSource:
    """Failed, corrupted and crashed runs of this store (see the module docstring)."""

    name = "local"

    def __init__(self, tracker: WatchedStore, *, stale_after_s: float = 300.0,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.tracker = tracker
        self.stale_after_s = stale_after_s
        self.clock = clock or (lambda: datetime.now(UTC))

    def poll(self) -> list[RunSignal]:
        now = self.clock()
        signals = []
        for view in self.tracker.watched_runs():
            signal = self.signal_for(view, now)
            if signal is not None:
                signals.append(signal)
        return signals

    def signal_for(self, view: RunView, now: datetime) -> RunSignal | None:
        if view.recovering and view.superseded_by is None and lease_expired(view, now):
            return RunSignal(view.id, "recovery.lease_expired", LEASE_EXPIRED,
                             f"recovery attempt {view.recovery_attempts} held by "
                             f"{view.recovery_holder or '?'}: its lease expired at "
                             f"{view.recovery_lease_until and iso(view.recovery_lease_until)}",
                             corrupted=view.corrupted, step=view.last_step, already_recorded=True)
        if (view.superseded_by is not None or view.recovering or view.recovery_attempts
                or view.status in NOT_RECOVERED):
            return None
        if view.corrupted or (view.failures and view.failure_retryable):
            return RunSignal(view.id, "recorded", "recorded failure", view.status_reason or "",
                             corrupted=view.corrupted, retryable=True, step=view.last_step,
                             already_recorded=True)
        if view.job_status != "running":
            return None
        last = view.last_activity_at
        if last is None or (now - last).total_seconds() <= self.stale_after_s:
            return None
        age = (now - last).total_seconds()
        return RunSignal(view.id, "heartbeat.lost", "ProcessLost",
                         f"no step, event or heartbeat since {iso(last)} ({age:.0f}s, more than "
                         f"{self.stale_after_s:g}s) and no finish event: the process is gone",
                         retryable=True, step=view.last_step)

    def last_activity(self, run_id: Any) -> datetime | None:
        """When anything was last recorded for the run: a run event, a step, a heartbeat."""
        return self.tracker.run(run_id).last_activity_at


class RecoveryMonitor:
    """Polls status sources and recovers what they report. ``recover`` holds the keyword
    arguments for ``Tracker.recover`` (strategy, restore_optimizer, retry, resume...)."""

    def __init__(self, tracker: RecoveringTracker, sources: Sequence[RunStatusSource] | None = None, *,
                 interval_s: float = 30.0, sleep: Callable[[float], None] = time.sleep,
                 **recover: Any) -> None:
        self.tracker = tracker
        self.sources = list(sources) if sources is not None else [LocalRunStatusSource(tracker)]
        self.interval_s = interval_s
        self.sleep = sleep
        self.recover_options = recover
        self.errors: list[PollFailure] = []
        self.actions: list[MonitorAction] = []

    def poll_once(self) -> tuple[list[MonitorAction], list[PollFailure]]:
        """One pass over every source; returns what it did and the poll errors it recorded."""
        actions: list[MonitorAction] = []
        errors: list[PollFailure] = []
        for source in self.sources:
            try:
                signals = list(source.poll())
            except Exception as error:  # recorded; the monitor keeps going
                errors.append(PollFailure(getattr(source, "name", type(source).__name__),
                                          datetime.now(UTC), type(error).__name__, str(error)))
                log.warning("lineage monitor: polling %s failed: %s", errors[-1].source, error)
                continue
            # a source that handles its own failures (per run, with backoff) reports them here
            errors.extend(getattr(source, "drain_errors", list)())
            actions.extend(self.act(signal) for signal in signals)
        self.actions.extend(actions)
        self.errors.extend(errors)
        return actions, errors

    def act(self, signal: RunSignal) -> MonitorAction:
        """Record the failure (unless it already is, or the run has finished: a finished run
        takes no failure, and one that finished ``failed`` is recovered as it is) and recover
        the run (a completed or cancelled one is left alone: status ``finished``)."""
        try:
            handle = self.tracker.run_handle(signal.run_id)
            if not signal.already_recorded and handle.finished_status is None:
                handle.record_failure(
                    signal.error_type, signal.message, signal=signal.signal,
                    retryable=signal.retryable, corrupted=signal.corrupted,
                    step=signal.step).wait()
            result = self.tracker.recover(signal.run_id, sleep=self.sleep, **self.recover_options)
        except Exception as error:  # one run's trouble must not stop the others
            log.warning("lineage monitor: recovering run %s failed: %s", signal.run_id, error)
            return MonitorAction(signal, error=f"{type(error).__name__}: {error}")
        return MonitorAction(signal, result)

    def run(self, *, max_polls: int | None = None, stop: threading.Event | None = None,
            report: Callable[[list[MonitorAction], list[PollFailure]], None] | None = None) -> int:
        """Poll every ``interval_s`` until ``stop`` is set or ``max_polls`` polls were made;
        ``report`` gets each poll's actions and errors. Returns the number of polls."""
        polls = 0
        while not (stop is not None and stop.is_set()):
            actions, errors = self.poll_once()
            polls += 1
            if report is not None:
                report(actions, errors)
            if max_polls is not None and polls >= max_polls:
                break
            if stop is not None:
                stop.wait(self.interval_s)
            else:
                self.sleep(self.interval_s)
        return polls
