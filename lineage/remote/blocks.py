"""The server's hot path: a column item of steps, stored as step blocks in one append, with the
client's event ids (DESIGN §8, ``lineage.remote.columns``).

A session's writer would take the steps one by one, each with an explicit 16-byte event id
(the client's): a Python object, a dedupe entry and a row of the event-id index per step, and
the steps turned back into rows and into columns again. Here the item's columns become blocks
directly (``lineage.codec.step_block``): the block of steps ``i .. i+999`` has the id
``ids + i``, and a block's step ids derive from its id (``step_decode.derived_id``), so each step
keeps the id the client gave it without storing it. One item is one append (one transaction):
a resent item is found whole by its first block's id, and an append of one already stored is
refused whole (DuplicateEventError) and taken as done.

Order and checks: before an item's blocks are appended, a check command goes through the
session's writer (``open_for_steps``): it commits after everything queued before it (so the log
keeps the order the client called in) and refuses a finished run, or one with a gap, as the
writer refuses their steps. An item whose ids would wrap inside a block (once in 2**32) goes
through the writer instead (``fits``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import repeat
from operator import floordiv
from typing import Any
from uuid import UUID

from lineage.application.step_log import BLOCK_STEPS, StoredStep
from lineage.application.unit_of_work import UnitOfWork
from lineage.codec.step_block import STEPS_TOPIC, Origin, encode_block
from lineage.codec.step_block import StepColumns as BlockColumns
from lineage.domain.ids import step_stream_id
from lineage.errors import RunFinishedError, StepGapError, StoreError
from lineage.ports import DuplicateEventError, EventStore, VersionConflictError
from lineage.remote.columns import ID_SPACE, StepColumns, refuse_if_finished, taken

CONFLICT_RETRIES = 20  # another writer appended to the run's step stream meanwhile
_LOW = 0xFFFF_FFFF


def fits(item: StepColumns) -> bool:
    """Whether each block's step ids derive from its first (no wrap in the last 32 bits)."""
    count = len(item.steps)
    return item.ids is None and all(
        (item.first_id + start) % ID_SPACE & _LOW <= _LOW - min(BLOCK_STEPS, count - start) + 1
        for start in range(0, count, BLOCK_STEPS))


def block_ids(item: StepColumns) -> list[str]:
    """The ids (hex) of the blocks ``item`` is stored as: its first step's, then every
    BLOCK_STEPS-th."""
    return [f"{(item.first_id + start) % ID_SPACE:032x}"
            for start in range(0, len(item.steps), BLOCK_STEPS)]


def open_for_steps(uow: UnitOfWork, run_id: UUID, gaps: dict[UUID, Any]) -> None:
    """Command handler (no events): RunFinishedError for a finished run, StepGapError for a
    run that lost steps, as the writer refuses their steps."""
    gap = gaps.get(run_id)
    if gap is not None:
        raise StepGapError(run_id, *gap)
    run = uow.fresh_run(run_id)
    if run.finished:
        raise RunFinishedError(run.id, run.status, "steps")


class BlockAppender:
    """Appends column items of one session (its origin: source, tenant, actor). Thread-safe
    per run as the session applies batches one at a time per tenant and actor."""

    def __init__(self, store: EventStore, origin: tuple[str, str, str],
                 check: Callable[[UUID], None]) -> None:
        """``check(run_id)``: waits until what the session queued before is committed, and
        raises when the run takes no steps (``open_for_steps`` through its writer)."""
        self.store = store
        self.origin = origin
        self.check = check
        self.versions: dict[UUID, int] = {}  # step stream -> its last version, as appended

    def append(self, run: Any, item: StepColumns) -> bool:
        """Store ``item``'s steps on ``run`` (a RunHandle) in one append; False when they
        were stored before (a resend). StoreError when the store cannot take them."""
        try:
            refuse_if_finished(run)
            self.check(run.id)
        except (RunFinishedError, StepGapError):
            if self.store.known_event_ids(block_ids(item)[:1]):
                return False  # a resend of steps stored before the run finished
            raise
        stream = step_stream_id(run.id)
        for _ in range(CONFLICT_RETRIES):
            version = self._version(stream)
            blocks = self._encode(run.id, stream, version, item)
            try:
                self.store.append(blocks, block_ids(item))
            except DuplicateEventError:
                self.versions.pop(stream, None)
                return False
            except VersionConflictError:
                self.versions.pop(stream, None)
                continue
            self.versions[stream] = version + len(item.steps)
            taken(run, item)
            return True
        raise StoreError(f"steps of run {run.id}: the step stream kept changing under "
                         f"{CONFLICT_RETRIES} appends; send them again")

    def _version(self, stream: UUID) -> int:
        found = self.versions.get(stream)
        if found is None:
            last = self.store.read_stream(stream, desc=True, limit=1)
            found = last[0].originator_version if last else 0
        return found

    def _encode(self, run_id: UUID, stream: UUID, version: int,
                item: StepColumns) -> list[Any]:  # StoredStep: a StoredEvent look-alike
        count = len(item.steps)
        origin = Origin(time.time_ns() // 1000, *self.origin)
        metrics = item.metric_dicts()  # the codec takes the metrics so
        occurred_us = list(map(floordiv, item.ns, repeat(1000, count)))
        epochs = item.epochs if item.epochs is not None else [None] * count
        nones = [None] * count
        blocks = []
        for start in range(0, count, BLOCK_STEPS):
            end = min(start + BLOCK_STEPS, count)
            columns = BlockColumns(item.steps[start:end], occurred_us[start:end],
                                   nones[start:end], epochs[start:end], nones[start:end],
                                   metrics[start:end], nones[start:end], nones[start:end], {})
            block_id = ((item.first_id + start) % ID_SPACE).to_bytes(16, "big")
            state = encode_block(run_id, version + start + 1, block_id, origin, columns)
            blocks.append(StoredStep(stream, version + end, STEPS_TOPIC, state))
        return blocks
