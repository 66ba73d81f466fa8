"""Migrating a store's steps to blocks: ``lineage migrate``.

Stores written before step blocks hold one row per step (topic ``STEP_TOPIC``, the library's
JSON, and one row of the event-id index per step). They still work as they are (``BlockCodec``
reads such a row as a block of one); they are just big and slow. ``compact_steps`` rewrites
them in place:

- it walks the log in position order and groups maximal runs of legacy step rows that are
  consecutive in the log (no other row between), of one stream, with consecutive versions and
  one origin (recorded_at, source, tenant, actor), at most ``max_steps`` to a group, and never
  across a tracked position of a log follower (``boundaries``: an exporter that stopped at a
  position inside a group would otherwise see the group's earlier steps again), nor across the
  position a seal ends at (the sealer resumes after it: ``lineage.application.sealing``);
- a block it writes has the flag ``MIGRATED``: its steps are sealed one leaf each, with the
  leaves their legacy rows had (``lineage.proof.canonical``), so seals made before the
  migration still verify after it;
- each group becomes ONE block row, in ONE transaction: the legacy rows are deleted and the
  block (every step's own event id kept in it, block id = the first step's id, version = the
  last step's) is stored at the position of the group's last row, so the order of the log is
  kept and no other row moves. Before it is written, the block is decoded and compared with
  the steps it replaces; a group that would not read back equal is left as it is (counted in
  ``Compaction.rows_left``), as is a row that does not decode;
- the event-id index keeps the ids a caller may send again: every step id whose UUID version
  is NOT 7. Ids the writer generated are version-7 UUIDs (``step_log.random_hex_ids``); nobody
  outside the writer knew them before they were committed, and the writer only sends one again
  while retrying its own batch, which cannot overlap a migration. Ids a caller chose
  (``log_step(event_id=...)``) are kept, so sending such a step again is still a duplicate
  that stores nothing. Why not keep none: that would break exactly this idempotency; why not
  keep all: ~50 bytes a step of index for ids nobody will send. Two edges: a caller who chose
  version-7 ids loses the duplicate check for its migrated steps (the steps themselves are all
  kept), and ids an older writer generated in another version (or an injected ``id_source``)
  stay in the index (space, never correctness). The block id is the first step's id, already
  in the index.

Resumable for free: every group commits on its own, so a migration killed at any moment leaves
committed groups migrated and the rest legacy, and running it again carries on (the scan skips
block rows cheaply: their state is not read). ``reset_positions`` are written in every group's
transaction: the composition root passes the read models' layout pseudo-position, so read models
projected from the old rows are rebuilt by whichever process opens them next, even when the
migration is killed before its own rebuild.
"""

from __future__ import annotations

import struct
from bisect import bisect_left
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any, NamedTuple
from uuid import UUID

from lineage.codec.step_block import (
    STEPS_TOPIC,
    Origin,
    StepColumns,
    columns_of,
    encode_block,
    metric_rows,
)
from lineage.codec.step_decode import StepBlock, decode_block
from lineage.codec.step_read import BlockCodec
from lineage.codec.steps import STEP_TOPIC, DecodedStep
from lineage.ports import LogRewriter, LogRow

MAX_STEPS = 1000  # steps to a block at most (what the writer stores per commit at speed)
PAGE = 2000  # rows scanned at a time
GENERATED_VERSION = 7  # the UUID version of step ids the writer generated

Progress = Callable[[int, int], None]  # (position reached, head)


class Compaction(NamedTuple):
    """What ``compact_steps`` did: legacy ``steps`` stored as ``blocks`` rows; ``rows_left``
    legacy rows it could not convert and left as they were; ``ids_dropped`` event-id rows
    deleted (generated step ids)."""

    steps: int = 0
    blocks: int = 0
    rows_left: int = 0
    ids_dropped: int = 0


class StoredBlock(NamedTuple):
    """The block row that replaces a group (StoredEvent's attributes)."""

    originator_id: UUID
    originator_version: int
    topic: str
    state: bytes


class _Group:
    """An open group: legacy rows of one stream and origin, consecutive in the log."""

    __slots__ = ("key", "rows", "steps")

    def __init__(self, row: LogRow, step: DecodedStep) -> None:
        self.key = _origin(row, step)
        self.rows = [row]
        self.steps = [step]

    def takes(self, row: LogRow, step: DecodedStep, boundaries: Sequence[int],
              max_steps: int) -> bool:
        last = self.rows[-1]
        return (len(self.rows) < max_steps and _origin(row, step) == self.key
                and row.originator_version == last.originator_version + 1
                and not _crosses(boundaries, last.position, row.position))

    def add(self, row: LogRow, step: DecodedStep) -> None:
        self.rows.append(row)
        self.steps.append(step)


def compact_steps(rewriter: LogRewriter, codec: BlockCodec, *, boundaries: Collection[int] = (),
                  reset_positions: dict[str, int] | None = None, max_steps: int = MAX_STEPS,
                  level: int = 6, progress: Progress | None = None) -> Compaction:
    """Store the legacy step rows of ``rewriter``'s log as blocks (see the module doc).
    ``level``: zlib's (the writer uses 1 for speed; a migration runs once). Returns what was
    done; raises StoreError when the store fails (what committed stays committed)."""
    done = Compaction()
    cuts = sorted(boundaries)
    reset = dict(reset_positions or {})
    head = rewriter.head()
    group: _Group | None = None
    for page in _pages(rewriter):
        for row in page:
            step = _legacy_step(codec, row)
            if group is not None and (step is None or not group.takes(row, step, cuts,
                                                                       max_steps)):
                done = _write(rewriter, group, reset, level, done)
                group = None
            if step is None:
                if row.topic == STEP_TOPIC:
                    done = done._replace(rows_left=done.rows_left + 1)
            elif group is None:
                group = _Group(row, step)
            else:
                group.add(row, step)
        if progress is not None:
            head = max(head, page[-1].position)
            progress(page[-1].position, head)
    if group is not None:
        done = _write(rewriter, group, reset, level, done)
    if progress is not None:
        progress(head, head)
    return done


def keeps_id(event_id: UUID) -> bool:
    """Whether a migrated step's id stays in the event-id index: every id but a generated
    (version-7) one (see the module doc)."""
    return event_id.version != GENERATED_VERSION


def _pages(rewriter: LogRewriter) -> Iterator[Sequence[LogRow]]:
    after = 0
    while True:
        page = rewriter.scan(after, PAGE, STEP_TOPIC)
        if not page:
            return
        yield page
        after = page[-1].position


def _legacy_step(codec: BlockCodec, row: LogRow) -> DecodedStep | None:
    """The step a legacy row holds; None for any other row, or one that does not decode."""
    if row.topic != STEP_TOPIC or row.state is None:
        return None
    try:
        return codec.legacy.decode(row, row.position)
    except Exception:  # whatever a bad row raises, it stays as it is (counted)
        return None


def _origin(row: LogRow, step: DecodedStep) -> tuple[Any, ...]:
    return (row.originator_id, step.run_id, step.recorded_at, step.source, step.tenant_id,
            step.actor)


def _crosses(cuts: Sequence[int], last: int, position: int) -> bool:
    """Whether a tracked position lies in ``last .. position - 1`` (between the two rows)."""
    at = bisect_left(cuts, last)
    return at < len(cuts) and cuts[at] < position


def _write(rewriter: LogRewriter, group: _Group, reset: dict[str, int], level: int,
           done: Compaction) -> Compaction:
    made = _block(group, level)
    if made is None:
        return done._replace(rows_left=done.rows_left + len(group.rows))
    block, ids = made
    drop = [ids[i].hex() for i in range(1, len(ids)) if _generated(ids[i])]
    rewriter.replace(group.rows, block, drop, reset)
    return done._replace(steps=done.steps + len(group.rows), blocks=done.blocks + 1,
                         ids_dropped=done.ids_dropped + len(drop))


def _generated(event_id: bytes) -> bool:
    """``not keeps_id(UUID(bytes=event_id))``, without building the UUID."""
    return event_id[6] >> 4 == GENERATED_VERSION and event_id[8] & 0xC0 == 0x80


def _block(group: _Group, level: int) -> tuple[StoredBlock, dict[int, bytes]] | None:
    """The group as one block row, and its steps' ids by index; None when the block would not
    read back as its steps (a value the layout cannot hold)."""
    steps = group.steps
    try:
        columns, origin, run_id = columns_of(steps)
        state = encode_block(run_id, steps[0].seq, columns.ids[0], origin, columns, level,
                             migrated=True)
        block = decode_block(state)
    except (ValueError, TypeError, ArithmeticError, struct.error):
        return None
    if not _reads_back(block, steps[0].seq, run_id, origin, columns):
        return None
    last = group.rows[-1]
    return StoredBlock(last.originator_id, last.originator_version, STEPS_TOPIC, state), columns.ids


def _reads_back(block: StepBlock, seq_from: int, run_id: UUID, origin: Origin,
                columns: StepColumns) -> bool:
    """Whether ``block`` holds exactly ``columns``: every field of every step, numbers with
    their type (NaN equal to NaN), metric order aside (a block gives a step's metrics in the
    block's column order)."""
    count = len(columns.steps)
    metrics = metric_rows(columns)
    return (block.count == count and block.seq_from == seq_from and block.run_id == run_id
            and (block.recorded_us, block.source, block.tenant_id, block.actor) == tuple(origin)
            and block.steps == list(columns.steps)
            and block.occurred_us == list(columns.occurred_us)
            and (block.epochs or [None] * count) == list(columns.epochs)
            and (block.tokens or [None] * count) == list(columns.tokens)
            and block.raws == {i: raw for i, raw in enumerate(columns.raws) if raw is not None}
            and block.ids == columns.ids
            and all(_same(block.metrics(i), metrics[i]) for i in range(count))
            and all(_same(block.durations(i), columns.durations[i]) for i in range(count))
            and all(_same(block.resources(i), columns.resources[i]) for i in range(count)))


def _same(got: dict[str, float] | None, given: dict[str, float] | None) -> bool:
    if got is None or given is None:
        return got is given
    if got.keys() != given.keys():
        return False
    for name, value in given.items():
        back = got[name]
        if type(back) is not type(value) or not (back == value or (back != back and value != value)):
            return False
    return True


class StepMigration:
    """One migration of one store (built by ``lineage.bootstrap.open_step_migration``), which
    holds the store meanwhile: the projection lock, and on SQLite the file alone. ``compact``,
    then ``refresh`` the read models, then, optionally, ``vacuum``; ``close`` (or leave the
    ``with`` block) to let the store go. One thread."""

    def __init__(self, rewriter: LogRewriter, codec: BlockCodec, *,
                 refresh: Callable[[Progress | None, bool], int], release: Callable[[], None],
                 boundaries: Collection[int] = (),
                 reset_positions: dict[str, int] | None = None) -> None:
        """``refresh(progress, rebuild)`` brings the read models up to date (``rebuild``: from
        nothing); ``release`` lets go of what the composition root took; ``boundaries`` and
        ``reset_positions`` as for ``compact_steps``."""
        self.rewriter = rewriter
        self.codec = codec
        self._refresh = refresh
        self._release = release
        self.boundaries = list(boundaries)
        self.reset_positions = dict(reset_positions or {})
        self.done = Compaction()

    @property
    def location(self) -> str:
        return self.rewriter.location

    def size_bytes(self) -> int:
        return self.rewriter.size_bytes()

    def compact(self, progress: Progress | None = None) -> Compaction:
        """Store the legacy steps as blocks (``compact_steps``)."""
        self.done = compact_steps(self.rewriter, self.codec, boundaries=self.boundaries,
                                  reset_positions=self.reset_positions, progress=progress)
        return self.done

    def refresh(self, progress: Progress | None = None) -> int:
        """Rebuild the read models when ``compact`` changed the log (else catch them up: a
        read model left stale by an earlier, interrupted migration is rebuilt either way).
        Returns how many log rows were projected."""
        return self._refresh(progress, self.done.steps > 0)

    def vacuum(self) -> None:
        """Give the space of the deleted rows back (``LogRewriter.vacuum``)."""
        self.rewriter.vacuum()

    def close(self) -> None:
        self._release()

    def __enter__(self) -> StepMigration:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
