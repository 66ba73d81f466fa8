"""What the writer queues, and how one batch of it becomes one transaction's events.

The writer (``lineage.application.writer``) owns the queue, the thread and the retries; this
module holds the queue's item types and the pure batch steps it runs on its thread: dropping
repeated event ids, building a unit of work from the items (refusals set aside by index), and
dropping what the store already holds. Writer thread only; nothing here blocks or retries.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from itertools import repeat
from operator import is_, itemgetter
from typing import Any
from uuid import UUID

from lineage.application.step_log import EVENT_ID, StepBatch, merge_steps, run_id_of
from lineage.application.unit_of_work import UnitOfWork
from lineage.domain.envelope import Envelope
from lineage.errors import LineageError, StoreError


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
class Flush:
    """A ``flush`` call's marker: resolved once everything queued before it is resolved."""

    future: Future[None] = field(default_factory=Future)


@dataclass
class WriterStats:
    committed_events: int = 0
    committed_batches: int = 0
    duplicate_events: int = 0
    conflicts_retried: int = 0
    store_retries: int = 0
    lost_events: int = 0
    give_ups: int = 0


_event_id = itemgetter(EVENT_ID)


def event_id_of(item: Any) -> UUID | None:
    """The event id a queued item carries: a step's (usually None) or a command's."""
    return item[EVENT_ID] if isinstance(item, tuple) else item.event_id


def dedupe(items: list[Any], stats: WriterStats, *, steps_only: bool = False) -> list[Any]:
    """Keep the first of several items with one event id (a retry queued before the first
    was committed); the others are no-ops, resolved as duplicates. ``steps_only``: the
    items hold no command (the common batch at speed: their ids are read in C)."""
    if steps_only:
        ids = list(map(_event_id, items))
        if ids.count(None) == len(ids):
            return items  # the common batch: steps without caller-given ids
    else:
        ids = [item[EVENT_ID] if isinstance(item, tuple) else item.event_id for item in items]
    distinct = set(ids)
    distinct.discard(None)
    if len(distinct) == len(ids) - ids.count(None):
        return items  # no id repeats (steps mostly have none): nothing to drop
    seen: set[UUID] = set()
    kept = []
    for item in items:
        event_id = event_id_of(item)
        if event_id is not None:
            if event_id in seen:
                stats.duplicate_events += 1
                if type(item) is Command:
                    item.future.set_result(None)
                continue
            seen.add(event_id)
        kept.append(item)
    return kept


def build(uow: UnitOfWork, step_batch: StepBatch, items: list[Any], mapper: Any, *,
          steps_only: bool = False) -> dict[int, BaseException]:
    """Turn queued items into ``uow``'s events (``uow.stored``, ``uow.hex_ids``); returns the
    items the domain refuses, by index. A StoreError (reading failed) propagates: the whole
    batch waits for the store.

    Items are steps (tuples, see step_log.StepRecord) and commands (none when ``steps_only``:
    the common batch at speed, not searched for them). The steps between two commands go in
    together when they are all of one run (the common batch: found in C), else one by one."""
    rejected: dict[int, BaseException] = {}
    # Where the commands are: True marks one (``index(True)`` compares by identity, in C).
    marks = [] if steps_only else list(map(is_, map(type, items), repeat(Command)))
    start, end = 0, len(items)
    while start < end:
        try:
            stop = marks.index(True, start)
        except ValueError:
            stop = end
        if stop > start and not step_batch.add_run(items[start:stop]):
            _add_steps(step_batch, items, start, stop, rejected)
        if stop < end:
            command = items[stop]
            step_batch.after_command()
            try:
                command.result = uow.apply(command.handler, command.envelope)
            except StoreError:
                raise
            except Exception as error:  # a refused or broken command fails alone
                rejected[stop] = error
        start = stop + 1
    step_batch.close()
    uow.stored = merge_steps(uow, mapper, step_batch.blocks)
    return rejected


def _add_steps(step_batch: StepBatch, items: list[Any], start: int, stop: int,
               rejected: dict[int, BaseException]) -> None:
    """Add ``items[start:stop]`` (steps) one by one; a refused step is set aside by index."""
    add_step = step_batch.add
    for index in range(start, stop):
        item = items[index]
        try:
            add_step(item)
        except StoreError:
            raise  # reading the run failed: the whole batch waits for the store
        except LineageError as error:
            rejected[index] = error
            step_batch.refused(item, error)  # no later step of its run is stored


def drop_duplicates(pending: list[Any], known: set[str], stats: WriterStats) -> list[Any]:
    """``pending`` less the items whose event ids (hex) the store already holds: those are
    no-ops, resolved as duplicates."""
    kept = []
    for item in pending:
        event_id = event_id_of(item)
        if event_id is not None and event_id.hex in known:
            stats.duplicate_events += 1
            if type(item) is Command:
                item.future.set_result(None)
        else:
            kept.append(item)
    return kept


def first_subject(items: list[Any]) -> Any:
    """What a conflict error names: the first item's run id (a step) or label (a command)."""
    for item in items:
        return run_id_of(item) if isinstance(item, tuple) else item.label
    return None
