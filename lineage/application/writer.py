"""The write path: a bounded in-memory queue and one writer thread (DESIGN §4).

Threading contract:

- ``put_step`` is called on the training thread. It appends a plain tuple to a deque
  (microseconds) and never touches the database. When the queue holds ``max_queue`` items it
  blocks until the writer has made room (or has given up): nothing is dropped. After a give-up
  it raises the loss report once; for a run that lost steps it raises StepGapError.
- ``submit`` queues a command (a handler run against the aggregates) behind the steps already
  queued, so order is kept, and returns a Future that resolves once its events are committed
  (or with the domain error that refused it).
- The writer thread owns the event-sourcing objects. It takes up to ``batch_size`` items, or
  what arrived within ``batch_interval_s``, and appends them in one transaction.
- ``flush`` waits until everything queued before it is committed, then raises WriterError if
  any step since the previous flush could not be committed, or any command was refused whose
  handle nobody waited on (a command's error is raised by its handle's ``wait()``; a refusal
  no one saw is never dropped silently).

Failures: a duplicate event id makes its command a no-op; a version conflict (another writer)
reloads the aggregates and re-runs the batch's commands against the fresh state, so invariants
still hold. A store error never skips a batch: the head batch is retried (nothing behind it is
committed first) until the store has failed for ``retry_for_s`` without a break; then the writer
gives up on it and on everything queued, and the next call raises the report
(``lineage.application.write_failures`` has the policy). So a run's stored steps are always a
prefix of the steps logged, and no call blocks past the give-up without an error.

The queue's item types and the steps that turn a batch into events are in
``lineage.application.write_batch``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from itertools import repeat, starmap
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.persistence import Mapper

from lineage.application.step_log import QueuedStep, StepLog, StepQueue, run_id_of
from lineage.application.unit_of_work import AggregateCache, UnitOfWork
from lineage.application.write_batch import (
    Command,
    Flush,
    WriterStats,
    build,
    dedupe,
    drop_duplicates,
    first_subject,
)
from lineage.application.write_failures import Losses, Outage
from lineage.domain.envelope import Origin
from lineage.errors import ConflictError, ReadOnlyStoreError, StoreError, WriterError
from lineage.ports import DuplicateEventError, EventStore, VersionConflictError

log = logging.getLogger(__name__)


class Writer:
    def __init__(self, store: EventStore, mapper: Mapper, *, origin: Origin,
                 clock: Callable[[], datetime],
                 id_source: Callable[[], UUID] = uuid4, max_queue: int = 20_000,
                 batch_size: int = 5000, batch_interval_s: float = 1.0,
                 retry_for_s: float = 30.0) -> None:
        """``retry_for_s``: how long the store may fail without a break before the writer
        gives up on what is queued (the bound on any caller's wait, see the module doc)."""
        self.store = store
        self.mapper = mapper
        self.clock = clock
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.batch_interval_s = batch_interval_s
        self.retry_for_s = retry_for_s
        self.stats = WriterStats()
        self.losses = Losses()
        self.steps = StepLog(store, (origin.source, origin.tenant_id, origin.actor),
                             None if id_source is uuid4 else id_source, self.losses.gaps)
        self._outage = Outage(retry_for_s)
        self._given_up = False  # set by a give-up in the current batch
        self._queue: deque[Any] = deque()
        # put_step's one check (also made by log_step itself, through ``step_queue``): the
        # queue length against ``room``, which is max_queue, or 0 while a report is due or a
        # run has a gap (so the slow path says it first).
        self.step_queue = StepQueue(self._queue, max_queue, self.put_step)
        self._wake = threading.Event()
        self._space = threading.Condition()
        self._urgent = False
        self._idle = False  # the writer waits with nothing queued: a command wakes it
        self._flushes_pending = 0
        self._closing = False
        self._cache = AggregateCache()
        # A read-only store refuses every write in the caller's thread, at once.
        self._read_only = bool(getattr(store, "read_only", False))
        if self._read_only:
            self.step_queue.room = 0
        self._thread = threading.Thread(target=self._run, name="lineage-writer", daemon=True)
        self._thread.start()

    # -- producer side (any thread) ------------------------------------------------------------

    def put_step(self, record: QueuedStep) -> None:
        """Queue one validated step. Blocks only while the queue is full, and at most until
        the writer gives up. Raises, without queuing the step: the loss report (WriterError)
        once after a give-up; StepGapError when earlier steps of its run were not committed;
        ReadOnlyStoreError at once when the store was opened read-only."""
        if len(self._queue) >= self.step_queue.room:
            self._before_put(run_id_of(record))
        self._queue.append(record)

    def submit(self, command: Command, *, background: bool = False) -> Future[Any]:
        """Queue a command behind what is queued. Raises the loss report once after a give-up
        (not for ``background`` callers, heartbeats and retention: the report is for the
        training code). Blocks while the queue is full, at most until a give-up."""
        if self._closing:
            raise WriterError([RuntimeError("the tracker is closed")], 1)
        if len(self._queue) >= self.step_queue.room:
            self._before_put(None, report=not background)
        self._queue.append(command)
        if self._idle or len(self._queue) >= self.batch_size:
            self._wake.set()  # else the batch being filled takes it by its deadline: no wake-up
        return command.future

    def _refuse_read_only(self) -> None:
        reason = getattr(self.store, "read_only_reason", "opened read-only")
        raise ReadOnlyStoreError(self.store.location, f"{reason}; nothing can be recorded")

    def expedite(self) -> None:
        """Commit what is queued now rather than waiting for the batch interval."""
        self._urgent = True
        self._wake.set()

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything queued before this call is committed (or given up: at most
        ``retry_for_s`` of store failures). Raises WriterError when events since the previous
        report could not be committed, and TimeoutError when ``timeout`` passes first."""
        if not self._thread.is_alive():
            self._raise_failures()
            return
        marker = Flush()
        self._flushes_pending += 1
        self._queue.append(marker)
        self.expedite()
        marker.future.result(timeout)
        self._raise_failures()

    def close(self, timeout: float | None = None) -> None:
        if self._closing and not self._thread.is_alive():
            return
        try:
            self.flush(timeout)
        finally:
            self._closing = True
            self._wake.set()
            self._thread.join(timeout)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def _before_put(self, run_id: UUID | None, *, report: bool = True) -> None:
        """put_step's and submit's slow path: say what must be said, wait for room."""
        if self._read_only:
            self._refuse_read_only()
        if report:
            self._check(run_id)
        while len(self._queue) >= self.max_queue and self._thread.is_alive():
            with self._space:
                self._wake.set()
                self._space.wait(0.05)
            if report:
                self._check(run_id)  # the writer gave up while we waited: say so now

    def _check(self, run_id: UUID | None) -> None:
        if self.losses.report_due:
            self._raise_failures()
        if run_id is not None and self.losses.gaps:
            gap = self.losses.gap(run_id)
            if gap is not None:
                raise gap

    def _update_room(self) -> None:
        losses = self.losses
        with losses.lock:
            self.step_queue.room = (0 if losses.report_due or losses.gaps or self._read_only
                                    else self.max_queue)

    def seen(self, future: Future[Any]) -> None:
        """The caller has the outcome of ``future`` (its handle was waited on): a refusal of
        it is theirs to handle, not the next flush's to report."""
        self.losses.seen(future)

    def _raise_failures(self) -> None:
        report = self.losses.take()
        self._update_room()
        if report is not None:
            raise report

    # -- writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        queue = self._queue
        while True:
            if not queue:
                if self._closing:
                    return
                self._idle = True
                if not queue:  # looked at after saying so: a command queued before is seen
                    self._wake.wait(self.batch_interval_s)
                self._idle = False
                self._wake.clear()
                continue
            deadline = time.monotonic() + self.batch_interval_s
            while (len(queue) < self.batch_size and not self._urgent and not self._closing
                   and (remaining := deadline - time.monotonic()) > 0):
                self._wake.wait(remaining)
                self._wake.clear()
            self._urgent = self._flushes_pending > 0  # a queued flush keeps every batch prompt
            count = min(len(queue), self.batch_size)
            batch = list(starmap(queue.popleft, repeat((), count)))  # the loop in C
            with self._space:
                self._space.notify_all()
            try:
                self._commit(batch)
            except BaseException as error:  # never let the writer thread die silently
                log.exception("lineage writer: unexpected error")
                self._fail(batch, error)
                self.losses.gave_up()  # reported by the next call, like a give-up
                self._update_room()

    def _commit(self, batch: list[Any]) -> None:
        kinds = set(map(type, batch))  # the common checks in C
        flushes = [item for item in batch if type(item) is Flush] if Flush in kinds else []
        steps_only = Command not in kinds
        pending = dedupe([item for item in batch if type(item) is not Flush] if flushes else batch,
                         self.stats, steps_only=steps_only)
        self._given_up = False
        if pending and not self._commit_items(pending, final=False, steps_only=steps_only):
            # Another writer kept winning on some aggregate: commit the items one by one, so
            # only those that really cannot be applied fail.
            for index, item in enumerate(pending):
                self._commit_items([item], final=True, rest=pending[index + 1:],
                                   steps_only=type(item) is not Command)
                if self._given_up:  # the rest went with it, in order
                    break
        for marker in flushes:
            marker.future.set_result(None)
            self._flushes_pending -= 1

    def _commit_items(self, pending: list[Any], *, final: bool, rest: list[Any] | None = None,
                      steps_only: bool = False) -> bool:
        """Append ``pending`` in one transaction (``steps_only``: it holds no command). Returns
        False when version conflicts persisted for ``retry_for_s`` and ``final`` is not set
        (nothing resolved); otherwise every item is resolved: committed, refused alone, or
        failed by a give-up.

        Conflicts rebuild the batch against fresh state, with jittered backoff. A store error
        retries the same events (a retry after a lost commit answer is then a duplicate, not a
        second copy), or rebuilds them when reading failed, until the store has failed for
        ``retry_for_s`` without a break: then the writer gives up (``_give_up``) on ``pending``,
        ``rest`` (the batch's items after it) and everything queued."""
        deadline = time.monotonic() + (self.retry_for_s if not final else min(self.retry_for_s, 2.0))
        delay, attempts = 0.002, 0
        uow: UnitOfWork | None = None
        rejected: dict[int, BaseException] = {}
        unanswered = False  # an append of ``uow`` failed: it may have committed all the same
        while pending:
            attempts += 1
            try:
                if uow is None:
                    uow, rejected = self._build(pending, steps_only)
                self.store.append(uow.stored, uow.hex_ids, uow.expectations())
            except DuplicateEventError as duplicate:
                self._forget()
                if unanswered and uow is not None and duplicate.event_ids.issuperset(uow.hex_ids):
                    break  # the failed attempt did commit it all; its answer was lost
                pending = drop_duplicates(pending, duplicate.event_ids, self.stats)
                uow, unanswered = None, False
                continue
            except VersionConflictError:
                self.stats.conflicts_retried += 1
                self._forget()
                uow, unanswered = None, False
                if time.monotonic() + delay > deadline:
                    if not final:
                        return False
                    self._fail(pending, ConflictError(first_subject(pending), attempts))
                    return True
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.25)
                continue
            except StoreError as error:
                unanswered = uow is not None
                if not self._wait_out(error, rebuild=uow is None):
                    self._give_up([*pending, *(rest or ())], self._outage.give_up(error))
                    return True
                continue
            break
        self._outage.over()
        if uow is not None and pending:
            self._succeed(pending, rejected, len(uow.hex_ids), steps_only)
        return True

    def _wait_out(self, error: StoreError, *, rebuild: bool) -> bool:
        """After a store error: True once the backoff has passed (try again), False when the
        store has failed for ``retry_for_s`` (give up). ``rebuild``: reading failed midway."""
        if rebuild:
            self._forget()
        if self._outage.retry(error):
            self.stats.store_retries += 1
            return True
        self._forget()
        return False

    def _build(self, items: list[Any], steps_only: bool) -> tuple[UnitOfWork, dict[int, BaseException]]:
        """Turn queued items into events; items the domain refuses are set aside by index."""
        now = self.clock()
        uow = UnitOfWork(self.store, self.mapper, self._cache, now)
        step_batch = self.steps.batch(uow, now)
        return uow, build(uow, step_batch, items, self.mapper, steps_only=steps_only)

    def _succeed(self, pending: list[Any], rejected: dict[int, BaseException], count: int,
                 steps_only: bool) -> None:
        self.stats.committed_events += count
        self.stats.committed_batches += 1
        if not rejected:  # the common case: only commands have someone to tell
            if not steps_only:
                for item in pending:
                    if type(item) is Command:
                        item.future.set_result(getattr(item, "result", None))
            return
        for index, item in enumerate(pending):
            error = rejected.get(index)
            if type(item) is Command:
                if error is None:
                    item.future.set_result(getattr(item, "result", None))
                else:
                    self.losses.refused(item.future, error)
            elif error is not None:
                self.stats.lost_events += self.losses.steps_lost([item], error)
        if rejected:
            self._update_room()

    def _fail(self, items: list[Any], error: BaseException) -> None:
        """``items`` will not be committed: commands fail through their handles (and the
        report, when nobody waits), steps are counted and their runs get a gap."""
        for item in items:
            if type(item) is Command and not item.future.done():
                self.losses.refused(item.future, error)
            elif type(item) is Flush and not item.future.done():
                item.future.set_result(None)
                self._flushes_pending -= 1
        self.stats.lost_events += sum(1 for item in items if type(item) is Command)
        self.stats.lost_events += self.losses.steps_lost(
            [item for item in items if isinstance(item, tuple)], error)
        self._update_room()

    def _give_up(self, items: list[Any], error: StoreError) -> None:
        """The store failed for ``retry_for_s``: fail ``items`` and everything queued behind
        them, make the next call raise the report, and wake callers waiting for room."""
        behind = [self._queue.popleft() for _ in range(len(self._queue))]
        self._given_up = True
        self.stats.give_ups += 1
        self._fail([*items, *behind], error)
        self.losses.gave_up()
        self._update_room()
        lost = sum(type(item) is not Flush for item in (*items, *behind))
        log.error("lineage writer: gave up: %s; %d queued event(s) were not committed and are "
                  "reported by the next call", error, lost)
        with self._space:
            self._space.notify_all()

    def _forget(self) -> None:
        self._cache.clear()
        self.steps.forget()

