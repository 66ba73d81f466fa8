"""Encoding queued steps into the per-run step streams (the writer's hot loop).

One stream per run (``ids.step_stream_id``), never replayed: the stream's own counter is its
version, kept here between batches and read back from the store (its last event) after a
restart or a conflict. A run with a *gap* (a step of it was not committed: refused here, or
failed by the writer) gets no later step stored: each is refused with StepGapError, so a run's
stored steps stay a prefix of the steps logged. The steps of one run between two commands of a
batch are stored as one block (``lineage.codec.step_block``): one row, a random time-ordered
block id, and step ids derived from it unless the caller gave one.
"""

from __future__ import annotations

import os
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from itertools import repeat
from operator import countOf, itemgetter
from operator import floordiv as _floordiv
from typing import Any, NamedTuple
from uuid import UUID

from lineage.application.unit_of_work import UnitOfWork
from lineage.codec.step_block import (
    STEPS_TOPIC,
    Origin,
    PackedFloats,
    StepColumns,
    encode_block,
    epoch_us,
)
from lineage.domain.ids import step_stream_id
from lineage.errors import LineageError, RunFinishedError, StepGapError, StoreError
from lineage.ports import EventStore


class StepRecord(NamedTuple):
    """One ``log_step`` call (already validated), field by field.

    The queue holds a step as a tuple in this order: a plain one from ``log_step`` (building
    this NamedTuple would cost the training thread a fifth of the call), or a StepRecord. The
    writer reads either by index (``RUN_KEY``, ``STEP``, ``EVENT_ID``) and ``columns`` by zip.

    A queued step holds no object the garbage collector must follow: its run as the id's
    integer (``run_key``), the common metrics (all floats, the names of the call before)
    packed as float64 bytes beside a names tuple the handle keeps. Such a tuple drops out of the
    collector at its first pass, so the steps waiting for the writer never reach the old
    generation, whose full passes (over every object of the process) cost a third of ingest
    when a queued step held its run's UUID and a metrics dict. Other metrics (ints, a shape
    seen the first time) stay a dict, ``names`` None.
    """

    run_key: int  # the run id's ``int`` (``run_id_of``)
    step: int
    names: tuple[str, ...] | None  # the packed metrics' names; None: ``metrics`` is a dict
    metrics: bytes | dict[str, float]  # float64 values in ``names`` order (native), or a dict
    epoch: int | None
    durations: dict[str, float] | None
    tokens: int | None
    resources: dict[str, float] | None
    occurred_ns: int
    occurred_at: datetime | None  # set when the caller gave a time; else from occurred_ns
    occurred_at_raw: str | None
    event_id: UUID | None


# Where the writer reads a queued step's fields (see StepRecord).
RUN_KEY, STEP, EVENT_ID = 0, 1, 11
QueuedStep = tuple[Any, ...]
_run_key = itemgetter(RUN_KEY)


def run_id_of(record: QueuedStep) -> UUID:
    """The run a queued step belongs to."""
    return UUID(int=record[RUN_KEY])


def metrics_of(record: QueuedStep) -> dict[str, float]:
    """A queued step's metrics as a dict, packed or not."""
    names, metrics = record[2], record[3]
    return metrics if names is None else dict(zip(names, array("d", metrics), strict=True))


class StepQueue:
    """A step queue as the training thread sees it, so ``log_step`` queues without a call:
    while ``len(items) < room`` it appends a validated step to ``items`` itself; otherwise it
    calls ``put`` (the checked path: it may block for room, or raise a report). The writer
    sets ``room`` to 0 while something must be said first, so the check stays one compare."""

    __slots__ = ("items", "put", "room")

    def __init__(self, items: Any, room: int, put: Callable[[QueuedStep], None]) -> None:
        self.items = items
        self.room = room
        self.put = put


# The most steps one block holds: a commit of more (the writer takes up to ``batch_size`` items)
# stores several blocks, so readers never decode more than this to reach one step (an audit
# page, the edge of a downsampled metric history).
BLOCK_STEPS = 1000


class StoredStep(NamedTuple):
    """A StoredEvent look-alike that is 3x cheaper to build: one stored step block."""

    originator_id: UUID
    originator_version: int
    topic: str
    state: bytes


class StepLog:
    """Where every run's step stream stands, across batches (writer thread only)."""

    def __init__(self, store: EventStore, origin: tuple[str, str, str],
                 new_id: Callable[[], UUID] | None,
                 gaps: dict[UUID, tuple[int, str]] | None = None) -> None:
        """``origin``: the (source, tenant_id, actor) of every step this writer stores;
        ``gaps``: run -> (first step not committed, reason), shared with the writer."""
        self.store = store
        self.gaps = {} if gaps is None else gaps
        self.origin = origin
        self.new_id = new_id  # None: time-ordered random ids
        self.versions: dict[UUID, int] = {}
        self.streams: dict[UUID, UUID] = {}

    def batch(self, uow: UnitOfWork, now: datetime) -> StepBatch:
        return StepBatch(self, uow, Origin(epoch_us(now), *self.origin))

    def block_id(self) -> str:
        return self.new_id().hex if self.new_id is not None else next(random_hex_ids(1))

    def forget(self) -> None:
        """After a failed append: versions are read again from the store."""
        self.versions.clear()


class _Cursor:
    """Where one run's step stream stands while a batch is built, and its open block."""

    __slots__ = ("gap", "key", "ready", "records", "run", "run_id", "stream", "version")

    def __init__(self, key: int, run_id: UUID, run: Any, stream: UUID, version: int,
                 gap: tuple[int, str] | None) -> None:
        self.key = key  # the queued steps' run key (StepRecord.run_key)
        self.run_id = run_id
        self.run = run
        self.stream = stream
        self.version = version
        self.gap = gap
        self.records: list[QueuedStep] = []  # the open block: steps since the last command
        # The block is open and its run was checked (no gap, not finished): what ``add``
        # checks once per block, not once per step; cleared by a refusal and a closed block.
        self.ready = False


class StepBatch:
    """The steps of one batch, as blocks: versions counted on, checked against their run.

    A block holds the steps of one run between two commands of the batch (a command closes
    every open block, so the log keeps the order of steps and commands); ``blocks`` lists
    them with where they go among the unit of work's events."""

    def __init__(self, log: StepLog, uow: UnitOfWork, origin: Origin) -> None:
        self.log = log
        self.uow = uow
        self.origin = origin
        self.cursors: dict[int, _Cursor] = {}  # by run key
        self.cursor: _Cursor | None = None
        self.open: list[_Cursor] = []
        self.blocks: list[tuple[int, StoredStep, list[str]]] = []

    def add(self, record: QueuedStep) -> None:
        """Add one step to its run's open block; RunFinishedError when its run ended,
        StepGapError when an earlier step of its run was not committed."""
        cursor = self.cursor
        # Identity check: a run's steps share its handle's run key object, so a run of
        # consecutive steps costs no hashing. Between two commands a run cannot finish, and a
        # gap appears only through ``refused``: a ready cursor needs no other check.
        key = record[RUN_KEY]
        if cursor is not None and cursor.ready and key is cursor.key:
            cursor.records.append(record)
            return
        if cursor is None or key != cursor.key:
            cursor = self.cursor = self._cursor(key)
        if cursor.gap is not None:
            raise StepGapError(cursor.run_id, *cursor.gap)
        if cursor.run.finished:
            raise RunFinishedError(cursor.run.id, cursor.run.status, "steps")
        if not cursor.records:
            self.open.append(cursor)
        cursor.records.append(record)
        cursor.ready = True

    def add_run(self, records: list[QueuedStep]) -> bool:
        """Add steps that are all of one run (as a handle queues them) to
        its open block at once, checked once. False, adding nothing, when they are not (or
        their run is refused: ``add`` says why step by step)."""
        key = records[0][RUN_KEY]
        # Counted in C; a handle's steps share one key object, so each compare is by identity.
        if countOf(map(_run_key, records), key) != len(records):
            return False
        try:
            self.add(records[0])
        except StoreError:
            raise
        except LineageError:
            return False
        self.cursor.records.extend(records[1:])  # type: ignore[union-attr]  # add set it
        return True

    def refused(self, record: QueuedStep, error: BaseException) -> None:
        """``record`` will not be stored: no later step of its run may be (no holes)."""
        gap = self.log.gaps.setdefault(run_id_of(record), (record[STEP], str(error)))
        cursor = self.cursors.get(record[RUN_KEY])
        if cursor is not None:
            cursor.gap = gap
            cursor.ready = False

    def after_command(self) -> None:
        """A command comes next: close the open blocks before it, and look runs up again
        (a command may change or reload a run)."""
        self._close_blocks()
        self.cursor = None

    def close(self) -> None:
        self._close_blocks()
        for cursor in self.cursors.values():
            self.log.versions[cursor.stream] = cursor.version

    def _close_blocks(self) -> None:
        at = len(self.uow.events)
        for cursor in self.open:
            pending, cursor.records = cursor.records, []
            cursor.ready = False
            for start in range(0, len(pending), BLOCK_STEPS):
                records = pending[start:start + BLOCK_STEPS]
                seq_from = cursor.version + 1
                cursor.version += len(records)
                block_hex = self.log.block_id()
                shape = columns(records)
                state = encode_block(cursor.run_id, seq_from, bytes.fromhex(block_hex),
                                     self.origin, shape)
                ids = [block_hex, *(given.hex() for given in shape.ids.values())]
                self.blocks.append(
                    (at, StoredStep(cursor.stream, cursor.version, STEPS_TOPIC, state), ids))
        self.open = []

    def _cursor(self, key: int) -> _Cursor:
        cursor = self.cursors.get(key)
        if cursor is not None and cursor.gap is None:
            cursor.run = self.uow.run(cursor.run_id)
            return cursor
        run_id = UUID(int=key)
        gap = self.log.gaps.get(run_id)
        if gap is not None:  # refused without reading the store (which may be down)
            return _Cursor(key, run_id, None, step_stream_id(run_id), 0, gap)
        # Another writer may have finished the run since we cached it: the append checks it
        # (once per run per batch, in its own transaction) rather than a read here.
        run = self.uow.run(run_id)
        self.uow.expect_unchanged(run)
        stream = self.log.streams.get(run_id)
        if stream is None:
            stream = self.log.streams[run_id] = step_stream_id(run_id)
        version = self.log.versions.get(stream)
        if version is None:
            last = self.log.store.read_stream(stream, desc=True, limit=1)
            version = last[0].originator_version if last else 0
        cursor = self.cursors[key] = _Cursor(key, run_id, run, stream, version, None)
        return cursor


def columns(records: list[QueuedStep]) -> StepColumns:
    """The writer's records of one block, transposed for ``encode_block`` (by ``zip``, in C:
    this runs for every step the writer stores)."""
    (_, steps, names, metrics, epochs, durations, tokens, resources, occurred_ns, occurred_at,
     raws, event_ids) = zip(*records, strict=True)
    count = len(records)
    shape = names[0]
    if shape is not None and countOf(names, shape) == count:  # mostly one tuple: identity
        metric_column: PackedFloats | list[dict[str, float]] = PackedFloats(
            shape, b"".join(metrics))
    else:
        metric_column = list(map(metrics_of, records))
    if occurred_at.count(None) == count:
        occurred_us: Sequence[int] = list(map(_floordiv, occurred_ns, repeat(1000, count)))
    else:
        occurred_us = [ns // 1000 if at is None else epoch_us(at)
                       for ns, at in zip(occurred_ns, occurred_at, strict=True)]
    ids = {} if event_ids.count(None) == count else {
        i: event_id.bytes for i, event_id in enumerate(event_ids) if event_id is not None}
    return StepColumns(steps, occurred_us, raws, epochs, tokens, metric_column, durations,
                       resources, ids)


def merge_steps(uow: UnitOfWork, mapper: Any, blocks: list[tuple[int, StoredStep, list[str]]]) -> list[Any]:
    """Interleave step blocks with aggregate events in queue order. ``uow.hex_ids`` becomes
    the ids to hold unique: each aggregate event's, each block's and the step ids callers
    chose."""
    aggregate_stored = [mapper.to_stored_event(event) for event in uow.events]
    aggregate_ids = [event_id.hex for event_id in uow.event_ids]
    if not blocks:
        uow.hex_ids = aggregate_ids
        return aggregate_stored
    stored: list[Any] = []
    hex_ids: list[str] = []
    taken = 0
    for position, block, block_ids in blocks:
        if taken < position:
            stored.extend(aggregate_stored[taken:position])
            hex_ids.extend(aggregate_ids[taken:position])
            taken = position
        stored.append(block)
        hex_ids.extend(block_ids)
    stored.extend(aggregate_stored[taken:])
    hex_ids.extend(aggregate_ids[taken:])
    uow.hex_ids = hex_ids
    return stored


def random_hex_ids(count: int) -> Iterator[str]:
    """``count`` version-7 UUIDs (time-ordered, RFC 9562) as hex, from one urandom call.

    Time-ordered ids append at the right edge of the event-id index instead of touching a
    random page per event, which keeps commit cost flat as the table grows; and they are
    ~10x cheaper than ``uuid4()``.
    """
    prefix = "%012x" % (time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF)
    pool = os.urandom(10 * count).hex()
    for start in range(0, 20 * count, 20):
        raw = pool[start:start + 20]
        yield f"{prefix}7{raw[:3]}{_VARIANT[raw[3]]}{raw[4:19]}"


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
