"""The write path: a bounded in-memory queue and one writer thread (DESIGN §4).

Threading contract:

- ``put_step`` is called on the training thread. It appends a plain tuple to a deque
  (microseconds) and never touches the database. When the queue holds ``max_queue`` items it
  blocks until the writer has made room: nothing is dropped.
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
still hold; a store error is retried with backoff for ``retry_for_s`` and then reported.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.persistence import Mapper

from lineage.application.step_log import StepLog, StepRecord, StoredStep
from lineage.application.unit_of_work import AggregateCache, UnitOfWork
from lineage.codec.steps import envelope_tail
from lineage.domain.envelope import Envelope, Origin
from lineage.errors import (
    ConflictError,
    LineageError,
    ReadOnlyStoreError,
    StoreError,
    WriterError,
)
from lineage.ports import DuplicateEventError, EventStore, VersionConflictError

log = logging.getLogger(__name__)



@dataclass(eq=False)
class Command:
    """A change to aggregates: ``handler(uow)`` runs on the writer thread."""

    handler: Callable[[UnitOfWork], Any]
    envelope: Envelope
    label: str
    future: Future[Any] = field(default_factory=Future)
    result: Any = None

    @property
    def event_id(self) -> UUID:
        return self.envelope.event_id


@dataclass(eq=False)
class _Flush:
    future: Future[None] = field(default_factory=Future)


@dataclass
class WriterStats:
    committed_events: int = 0
    committed_batches: int = 0
    duplicate_events: int = 0
    conflicts_retried: int = 0
    store_retries: int = 0
    lost_events: int = 0


class Writer:
    def __init__(self, store: EventStore, mapper: Mapper, *, origin: Origin,
                 clock: Callable[[], datetime],
                 id_source: Callable[[], UUID] = uuid4, max_queue: int = 20_000,
                 batch_size: int = 1000, batch_interval_s: float = 0.05,
                 retry_for_s: float = 30.0) -> None:
        self.store = store
        self.mapper = mapper
        self.clock = clock
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.batch_interval_s = batch_interval_s
        self.retry_for_s = retry_for_s
        self.stats = WriterStats()
        self.steps = StepLog(store, envelope_tail(*origin),
                             None if id_source is uuid4 else id_source)
        self._queue: deque[Any] = deque()
        self._wake = threading.Event()
        self._space = threading.Condition()
        self._urgent = False
        self._flushes_pending = 0
        self._closing = False
        self._cache = AggregateCache()
        self._failures: list[BaseException] = []
        self._lost_since_flush = 0
        self._unseen: dict[Future[Any], BaseException] = {}  # refusals not waited on yet
        self._unseen_lock = threading.Lock()
        # A read-only store refuses every write in the caller's thread, at once.
        self._read_only = bool(getattr(store, "read_only", False))
        self._thread = threading.Thread(target=self._run, name="lineage-writer", daemon=True)
        self._thread.start()

    # -- producer side (any thread) ------------------------------------------------------------

    def put_step(self, record: StepRecord) -> None:
        """Queue one validated step. Blocks only while the queue is full. Raises
        ReadOnlyStoreError at once when the store can only be read."""
        if self._read_only:
            self._refuse_read_only()
        if len(self._queue) >= self.max_queue:
            self._wait_for_space()
        self._queue.append(record)

    def submit(self, command: Command) -> Future[Any]:
        if self._read_only:
            self._refuse_read_only()
        if self._closing:
            raise WriterError([RuntimeError("the tracker is closed")], 1)
        if len(self._queue) >= self.max_queue:
            self._wait_for_space()
        self._queue.append(command)
        self._wake.set()
        return command.future

    def _refuse_read_only(self) -> None:
        reason = getattr(self.store, "read_only_reason", "opened read-only")
        raise ReadOnlyStoreError(self.store.location, f"{reason}; nothing can be recorded")

    def expedite(self) -> None:
        """Commit what is queued now rather than waiting for the batch interval."""
        self._urgent = True
        self._wake.set()

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything queued before this call is committed.

        Raises WriterError when events since the previous flush could not be committed, and
        TimeoutError when ``timeout`` passes first.
        """
        if not self._thread.is_alive():
            self._raise_failures()
            return
        marker = _Flush()
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

    def _wait_for_space(self) -> None:
        with self._space:
            while len(self._queue) >= self.max_queue and self._thread.is_alive():
                self._wake.set()
                self._space.wait(0.05)

    def seen(self, future: Future[Any]) -> None:
        """The caller has the outcome of ``future`` (its handle was waited on): a refusal of
        it is theirs to handle, not the next flush's to report."""
        with self._unseen_lock:
            self._unseen.pop(future, None)

    def _refuse(self, command: Command, error: BaseException) -> None:
        with self._unseen_lock:
            self._unseen[command.future] = error
        command.future.set_exception(error)

    def _raise_failures(self) -> None:
        with self._unseen_lock:
            refused, self._unseen = list(self._unseen.values()), {}
        if self._failures or refused:
            failures, lost = self._failures, self._lost_since_flush
            self._failures, self._lost_since_flush = [], 0
            raise WriterError([*failures, *refused], lost + len(refused))

    # -- writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        queue = self._queue
        while True:
            if not queue:
                if self._closing:
                    return
                self._wake.wait(self.batch_interval_s)
                self._wake.clear()
                continue
            deadline = time.monotonic() + self.batch_interval_s
            while (len(queue) < self.batch_size and not self._urgent and not self._closing
                   and (remaining := deadline - time.monotonic()) > 0):
                self._wake.wait(remaining)
                self._wake.clear()
            self._urgent = self._flushes_pending > 0  # a queued flush keeps every batch prompt
            count = min(len(queue), self.batch_size)
            batch = [queue.popleft() for _ in range(count)]
            with self._space:
                self._space.notify_all()
            try:
                self._commit(batch)
            except BaseException as error:  # never let the writer thread die silently
                log.exception("lineage writer: unexpected error")
                self._fail(batch, error)

    def _commit(self, batch: list[Any]) -> None:
        flushes = [item for item in batch if type(item) is _Flush]
        pending = self._dedupe([item for item in batch if type(item) is not _Flush])
        if pending and not self._commit_items(pending, final=False):
            # Another writer kept winning on some aggregate: commit the items one by one, so
            # only those that really cannot be applied fail.
            for item in pending:
                self._commit_items([item], final=True)
        for marker in flushes:
            marker.future.set_result(None)
            self._flushes_pending -= 1

    def _commit_items(self, pending: list[Any], *, final: bool) -> bool:
        """Append ``pending`` in one transaction, rebuilding it after version conflicts with
        jittered backoff for up to ``retry_for_s``. Returns False when conflicts persisted and
        ``final`` is not set (nothing resolved); otherwise every item is resolved."""
        deadline = time.monotonic() + (self.retry_for_s if not final else min(self.retry_for_s, 2.0))
        delay, attempts = 0.002, 0
        while pending:
            attempts += 1
            uow, rejected = self._build(pending)
            try:
                self._append_with_retry(uow)
            except DuplicateEventError as duplicate:
                self._forget()
                pending = self._drop_duplicates(pending, duplicate.event_ids)
                continue
            except VersionConflictError:
                self.stats.conflicts_retried += 1
                self._forget()
                if time.monotonic() + delay > deadline:
                    if not final:
                        return False
                    self._fail(pending, ConflictError(_first_subject(pending), attempts))
                    return True
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.25)
                continue
            except StoreError as error:
                self._forget()
                self._fail(pending, error)
                return True
            self._succeed(pending, rejected, len(uow.hex_ids))
            return True
        return True

    def _dedupe(self, items: list[Any]) -> list[Any]:
        """Keep the first of several items with one event id (a retry queued before the first
        was committed); the others are no-ops, resolved as duplicates."""
        seen: set[UUID] = set()
        kept = []
        for item in items:
            event_id = item.event_id
            if event_id is not None:
                if event_id in seen:
                    self.stats.duplicate_events += 1
                    if type(item) is Command:
                        item.future.set_result(None)
                    continue
                seen.add(event_id)
            kept.append(item)
        return kept

    def _build(self, items: list[Any]) -> tuple[UnitOfWork, dict[int, BaseException]]:
        """Turn queued items into events; items the domain refuses are set aside by index."""
        now = self.clock()
        uow = UnitOfWork(self.store, self.mapper, self._cache, now)
        rejected: dict[int, BaseException] = {}
        steps: list[tuple[int, StoredStep, str]] = []
        step_batch = self.steps.batch(uow, now, sum(1 for item in items if type(item) is StepRecord))
        for index, item in enumerate(items):
            if type(item) is StepRecord:
                try:
                    stored, event_id = step_batch.encode(item)
                    steps.append((len(uow.events), stored, event_id))
                except LineageError as error:
                    rejected[index] = error
                continue
            step_batch.after_command()
            try:
                item.result = uow.apply(item.handler, item.envelope)
            except Exception as error:  # a refused or broken command fails alone
                rejected[index] = error
        step_batch.close()
        uow.stored = self._merge(uow, steps)
        return uow, rejected

    def _merge(self, uow: UnitOfWork, steps: list[tuple[int, StoredStep, str]]) -> list[Any]:
        """Interleave step events with aggregate events in queue order; ids become hex."""
        aggregate_stored = [self.mapper.to_stored_event(event) for event in uow.events]
        aggregate_ids = [event_id.hex for event_id in uow.event_ids]
        if not steps:
            uow.hex_ids = aggregate_ids
            return aggregate_stored
        stored: list[Any] = []
        hex_ids: list[str] = []
        taken = 0
        for position, step_event, step_id in steps:
            if taken < position:
                stored.extend(aggregate_stored[taken:position])
                hex_ids.extend(aggregate_ids[taken:position])
                taken = position
            stored.append(step_event)
            hex_ids.append(step_id)
        stored.extend(aggregate_stored[taken:])
        hex_ids.extend(aggregate_ids[taken:])
        uow.hex_ids = hex_ids
        return stored

    def _append_with_retry(self, uow: UnitOfWork) -> None:
        deadline = time.monotonic() + self.retry_for_s
        delay = 0.05
        while True:
            try:
                self.store.append(uow.stored, uow.hex_ids)
                return
            except ReadOnlyStoreError:
                raise  # waiting will not make it writable
            except StoreError:
                if time.monotonic() + delay > deadline:
                    raise
                self.stats.store_retries += 1
                log.warning("lineage writer: store unavailable, retrying in %.2fs", delay)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _drop_duplicates(self, pending: list[Any], known: set[str]) -> list[Any]:
        kept = []
        for item in pending:
            if item.event_id is not None and item.event_id.hex in known:
                self.stats.duplicate_events += 1
                if type(item) is Command:
                    item.future.set_result(None)
            else:
                kept.append(item)
        return kept

    def _succeed(self, pending: list[Any], rejected: dict[int, BaseException], count: int) -> None:
        self.stats.committed_events += count
        self.stats.committed_batches += 1
        for index, item in enumerate(pending):
            error = rejected.get(index)
            if type(item) is Command:
                if error is None:
                    item.future.set_result(getattr(item, "result", None))
                else:
                    self._refuse(item, error)
            elif error is not None:
                self._failures.append(error)
                self._lost_since_flush += 1
                self.stats.lost_events += 1

    def _fail(self, items: list[Any], error: BaseException) -> None:
        for item in items:
            if type(item) is Command and not item.future.done():
                self._refuse(item, error)
            elif type(item) is _Flush and not item.future.done():
                item.future.set_result(None)
                self._flushes_pending -= 1
        # A command's error reaches its caller through its handle; steps have no handle, so
        # their loss is what the next flush() reports.
        lost = sum(1 for item in items if type(item) is StepRecord)
        self.stats.lost_events += sum(1 for item in items if type(item) is not _Flush)
        if lost:
            self._failures.append(error)
            self._lost_since_flush += lost

    def _forget(self) -> None:
        self._cache.clear()
        self.steps.forget()


def _first_subject(items: list[Any]) -> Any:
    for item in items:
        return item.run_id if type(item) is StepRecord else item.label
    return None
