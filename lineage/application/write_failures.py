"""What the writer does when writes fail: wait out an outage, then give up loudly (DESIGN §4).

Policy (the README's "When the store fails"):

- ``Outage``: a store error does not skip anything. The batch at the head of the queue is
  retried with backoff (doubling from 50 ms to 2 s) while nothing behind it is committed, so the
  stored steps of every run stay a prefix of the steps logged. The outage is logged once when it
  starts and once when it ends (or when the writer gives up), not once per retry. Once the store
  has failed without a break for ``give_up_after_s`` (the ``retry_for_s`` setting), the writer
  gives up: the head batch and everything queued behind it are failed and counted.
- ``Losses``: what was not committed, kept until someone is told. A give-up makes the next call
  of the training code (``log_step``, a command, ``flush``, ``close``) raise the report once, as
  a WriterError with the count and the cause in words. Every run that lost a step is marked with
  a *gap*: no later step of it is ever stored (that would leave a hole), and ``log_step`` on it
  raises StepGapError at once. Other runs and commands go on when the store is back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any
from uuid import UUID

from lineage.application.step_log import STEP, run_id_of
from lineage.errors import ReadOnlyStoreError, StepGapError, StoreError, WriterError

log = logging.getLogger(__name__)

MAX_FAILURES_KEPT = 20  # the report keeps the first causes; ``lost`` counts every event


def reason_of(error: BaseException) -> str:
    """The cause of a failure in words (a StoreError's ``kind``, else its message)."""
    return getattr(error, "kind", None) or str(error) or type(error).__name__


class Outage:
    """One store outage as the writer thread sees it (writer thread only)."""

    def __init__(self, give_up_after_s: float, *, sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.give_up_after_s = give_up_after_s
        self.since: float | None = None
        self.retries = 0
        self._delay = 0.05
        self._sleep = sleep
        self._monotonic = monotonic

    def retry(self, error: StoreError) -> bool:
        """After a failed attempt: sleep the backoff and return True (try again), or return
        False once the store has failed without a break for ``give_up_after_s``."""
        now = self._monotonic()
        if self.since is None:
            self.since, self.retries, self._delay = now, 0, 0.05
            log.warning("lineage writer: the store is failing (%s); retrying for up to %gs, "
                        "nothing is skipped: %s", reason_of(error), self.give_up_after_s, error)
        remaining = self.since + self.give_up_after_s - now
        if remaining <= 0:
            return False
        self.retries += 1
        self._sleep(min(self._delay, remaining))
        self._delay = min(self._delay * 2, 2.0)
        return True

    def over(self) -> None:
        """An attempt succeeded: the outage (if any) has ended."""
        if self.since is not None:
            log.warning("lineage writer: the store is back after %.1fs (%d retries); "
                        "nothing was lost", self._monotonic() - self.since, self.retries)
            self.since = None

    def give_up(self, error: StoreError) -> StoreError:
        """End the outage: the error that fails what was queued, naming the cause and time."""
        lasted = 0.0 if self.since is None else self._monotonic() - self.since
        self.since = None
        given_up: StoreError
        if isinstance(error, ReadOnlyStoreError):  # still one, for ``except ReadOnlyStoreError``
            given_up = ReadOnlyStoreError(error.location, f"{error.reason}; gave up after the "
                                                          f"store failed for {lasted:.1f}s")
        else:
            given_up = StoreError(f"gave up after the store failed for {lasted:.1f}s "
                                  f"({reason_of(error)}): {error}", error.kind)
        given_up.__cause__ = error
        return given_up


class Losses:
    """What the writer could not commit, until the training code is told. Thread-safe: the
    writer thread records, the caller threads take the report and check gaps."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.gaps: dict[UUID, tuple[int, str]] = {}  # run -> (first step lost, reason)
        self.report_due = False  # a give-up: the next call raises the report
        self._failures: list[BaseException] = []
        self._lost = 0
        self._unseen: dict[Future[Any], BaseException] = {}  # refusals nobody waited on yet

    def steps_lost(self, records: Iterable[Any], error: BaseException) -> int:
        """Count ``records`` (queued steps: ``step_log.StepRecord`` order) as lost by ``error``
        and mark their runs' gaps."""
        reason = reason_of(error)
        count = 0
        with self.lock:
            for record in records:
                self.gaps.setdefault(run_id_of(record), (record[STEP], reason))
                count += 1
            if count:
                self._lost += count
                self._keep(error)
        return count

    def refused(self, future: Future[Any], error: BaseException) -> None:
        """A command was refused: reported by its handle's ``wait()`` or else by the report."""
        with self.lock:
            self._unseen[future] = error
        future.set_exception(error)

    def seen(self, future: Future[Any]) -> None:
        with self.lock:
            self._unseen.pop(future, None)

    def gave_up(self) -> None:
        with self.lock:
            self.report_due = True

    def take(self) -> WriterError | None:
        """The report of everything lost since the last one (None: nothing), once."""
        with self.lock:
            self.report_due = False
            refused, self._unseen = list(self._unseen.values()), {}
            if not self._failures and not refused:
                return None
            failures, lost = self._failures, self._lost
            self._failures, self._lost = [], 0
        return WriterError([*failures, *refused[:MAX_FAILURES_KEPT]], lost + len(refused))

    def gap(self, run_id: UUID) -> StepGapError | None:
        found = self.gaps.get(run_id)
        return None if found is None else StepGapError(run_id, *found)

    def _keep(self, error: BaseException) -> None:
        if len(self._failures) < MAX_FAILURES_KEPT and not any(
                kept is error for kept in self._failures):
            self._failures.append(error)
