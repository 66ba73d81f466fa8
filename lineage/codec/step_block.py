"""Step blocks: how training steps are stored, many steps of one run to one stored row.

Every step stays its own event: a ``StepRecorded`` with its own event id, its own place in the
run's step stream (``seq``, the stream's counter) and its own times, metrics and envelope, all
given back by ``StepBlock``. What changes is the storage: the steps of one run that one writer
transaction commits are stored as ONE row of the run's step stream (topic ``STEPS_TOPIC``,
``originator_version`` = the last step's ``seq``), in the compact columnar layout below.

Why not the library's generic row per step: its fixed costs (stream id, topic, version, index
entries, the event-id row) come to ~150 bytes a step on SQLite before any state, and JSON with
type markers adds ~560 more. A block pays them once per commit (thousands of steps at speed),
stores each number in 8 bytes, and zlib takes the repetition out of steps, times and ids.
Float metric values are stored as they are, outside the zlib stream: training curves are
noise in their low bits, zlib saved ~10 % of them at twice the cost of encoding the rest.

Ids: a block has a random ``block_id`` (a version-4 UUID); step ``i`` of the block has the id
``block_id`` plus ``i`` in its last 32 bits (still a valid version-4 UUID, unique as long as
block ids are). An id the caller chose (``log_step(event_id=...)``), or one an older layout
stored, is kept explicitly for its step. So ids cost nothing per step unless given.

Layout of ``state`` (little-endian): ``b"C" + <I len(z) + z + floats``, where ``z`` is
``zlib(body)`` and ``floats`` the values of the float metric columns (float64 each), column
after column in the order ``body`` lists them. ``body`` =

    header   <IqQq16s16sHHH : count, seq_from, flags, recorded_us, run_id, block_id,
                               len(source), len(tenant_id), len(actor), then those UTF-8 texts
    steps    int64 x count  : first step, then differences
    times    int64 x count  : occurred_at in µs since the epoch: first, then differences
    epochs   int64 x count  : -1 for None            (only when flags & EPOCHS)
    tokens   int64 x count  : -1 for None            (only when flags & TOKENS)
    metrics  a column set   : see ``_put_columns``
    durations, resources    : a presence section, then a column set (``_put_optional``)
    raws     <I count, then (<I index, <H length, UTF-8) entries: occurred_at_raw values
    ids      <I count, then (<I index, 16 bytes) entries: explicit event ids

Flag ``MIGRATED``: ``lineage migrate`` wrote the block from legacy rows of one step each; its
steps are sealed one leaf each, as those rows were (``lineage.proof.canonical``). Readers
ignore flags they do not use.

Steps, epochs and tokens are validated to 0..2**63-1, so -1 is free for None and differences fit
in 64 bits. Metric values keep their type (float64, or int64 for ints). A step's metrics come
back in the block's column order (the order names first appear in the block).
"""

from __future__ import annotations

import struct
import zlib
from array import array
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from operator import countOf, itemgetter, sub
from typing import NamedTuple
from uuid import UUID

from lineage.codec.dispatch import topic_of
from lineage.codec.steps import DecodedStep
from lineage.domain.steps import StepsRecorded

STEPS_TOPIC = topic_of(StepsRecorded)
MARK = b"C"
LENGTH = struct.Struct("<I")
EPOCHS, TOKENS, MIGRATED = 1, 2, 4
HEADER = struct.Struct("<IqQq16s16sHHH")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
KIND_FLOAT, KIND_INT, KIND_MIXED = 0, 1, 2  # a metric column's kind
PRESENT_ALL, PRESENT_MASK = 0, 1  # a column's presence: every step, or a byte per step
OPTIONAL_NONE, OPTIONAL_ALL, OPTIONAL_SOME = 0, 1, 2  # an optional field (durations, resources) per step
_JUST_FLOAT, _JUST_INT = frozenset((float,)), frozenset((int,))


class PackedFloats(NamedTuple):
    """Metrics of steps that all have the same names, all floats: ``data`` holds each step's
    values (float64, native order) in ``names`` order, step after step (what ``log_step``
    queues for the common step, joined)."""

    names: tuple[str, ...]
    data: bytes


class StepColumns(NamedTuple):
    """What the encoder takes: one list per field, one item per step (the writer's records
    transposed, or a legacy block's steps)."""

    steps: Sequence[int]
    occurred_us: Sequence[int]
    raws: Sequence[str | None]
    epochs: Sequence[int | None]
    tokens: Sequence[int | None]
    metrics: Sequence[dict[str, float]] | PackedFloats
    durations: Sequence[dict[str, float] | None]
    resources: Sequence[dict[str, float] | None]
    ids: dict[int, bytes]  # index -> 16-byte id, for ids not derived from the block id


class Origin(NamedTuple):
    recorded_us: int
    source: str
    tenant_id: str
    actor: str


def encode_block(run_id: UUID, seq_from: int, block_id: bytes, origin: Origin,
                 columns: StepColumns, level: int = 1, *, migrated: bool = False) -> bytes:
    """The stored state of one block (see the module doc); ``migrated``: sets ``MIGRATED``."""
    count = len(columns.steps)
    texts = [origin.source.encode(), origin.tenant_id.encode(), origin.actor.encode()]
    # Sequence.count and map() keep the per-step work in C: the writer encodes every step.
    flags = (EPOCHS if _any_given(columns.epochs) else 0) | (
        TOKENS if _any_given(columns.tokens) else 0) | (MIGRATED if migrated else 0)
    parts = [HEADER.pack(count, seq_from, flags, origin.recorded_us, run_id.bytes, block_id,
                          *map(len, texts)), *texts,
             _differences(columns.steps), _differences(columns.occurred_us)]
    if flags & EPOCHS:
        parts.append(_with_nones(columns.epochs))
    if flags & TOKENS:
        parts.append(_with_nones(columns.tokens))
    _put_columns(parts, columns.metrics)
    _put_optional(parts, columns.durations)
    _put_optional(parts, columns.resources)
    raws = [] if columns.raws.count(None) == count else [
        (i, raw.encode()) for i, raw in enumerate(columns.raws) if raw is not None]
    parts.append(struct.pack("<I", len(raws)))
    for index, raw in raws:
        parts.append(struct.pack("<IH", index, len(raw)))
        parts.append(raw)
    parts.append(struct.pack("<I", len(columns.ids)))
    for index, event_id in sorted(columns.ids.items()):
        parts.append(struct.pack("<I", index))
        parts.append(event_id)
    floats: list[bytes] = []
    for index, part in enumerate(parts):
        if type(part) is _Floats:  # moved out of the zlib stream (module doc)
            floats.append(part)
            parts[index] = b""
    packed = zlib.compress(b"".join(parts), level)
    return b"".join((MARK, LENGTH.pack(len(packed)), packed, *floats))


class _Floats(bytes):
    """A float column's values, marked to go after the zlib stream."""


def _int64s(*values: int) -> bytes:
    """int64 values, native order like ``array("q").tobytes()`` (the same bytes): ``struct``
    converts each value without ``array``'s per-item argument parsing (the writer's hot loop)."""
    try:
        return struct.pack(f"{len(values)}q", *values)
    except struct.error as error:
        raise _as_array_error(error) from None


def _float64s(*values: float) -> bytes:
    """float64 values, native order like ``array("d").tobytes()`` (see ``_int64s``)."""
    try:
        return struct.pack(f"{len(values)}d", *values)
    except struct.error as error:
        raise _as_array_error(error) from None


def _as_array_error(error: struct.error) -> Exception:
    """The error ``array`` raised for the same value: OverflowError out of range, else
    TypeError (a read model's quarantine reason names it)."""
    text = str(error)
    return OverflowError(text) if "out of range" in text else TypeError(text)


def _differences(values: Sequence[int]) -> bytes:
    if not values:
        return b""
    return _int64s(values[0], *map(sub, values[1:], values[:-1]))


def _any_given(values: Sequence[object]) -> bool:
    """Whether any value is not None; the first one decides the common columns (all given or
    none: ``count`` compares an int with None the slow way, and None with None by identity)."""
    return bool(values) and (values[0] is not None or values.count(None) != len(values))


def _with_nones(values: Sequence[int | None]) -> bytes:
    """int64 values, -1 for None."""
    try:
        return _int64s(*values)  # type: ignore[arg-type]  # the common column: no None
    except TypeError:  # a None (or not an int: the second call says so)
        return _int64s(*[-1 if v is None else v for v in values])


def _put_columns(parts: list[bytes], dicts: Sequence[dict[str, float]] | PackedFloats) -> None:
    """A column set: ``<H`` number of names; per name ``<H`` length + UTF-8, ``<BB`` kind
    and presence, the presence bytes (one per step) when not every step has it, the kind bytes
    (one per present value, 1 = int) when mixed, then the present values (8 bytes each)."""
    if isinstance(dicts, PackedFloats):
        _put_packed(parts, dicts)
        return
    same = _same_keys(dicts)
    names: dict[str, None] = {}
    for d in (dicts[:1] if same is not None else dicts):
        for name in d:
            names.setdefault(name, None)
    parts.append(struct.pack("<H", len(names)))
    for name in names:
        encoded = name.encode()
        parts.append(struct.pack("<H", len(encoded)))
        parts.append(encoded)
        if same is not None:
            values, mask = same[name], None
        else:
            mask = bytes(name in d for d in dicts)
            values = [d[name] for d in dicts if name in d]
            if len(values) == len(dicts):
                mask = None  # every step has this one, though not every name
        # One type in the common column: counted by identity, without building a set.
        types = ({float} if countOf(map(type, values), float) == len(values)
                 else set(map(type, values)))
        if types <= _JUST_FLOAT:
            kind, kinds = KIND_FLOAT, None
        elif types <= _JUST_INT:
            kind, kinds = KIND_INT, None
        else:
            kind, kinds = KIND_MIXED, bytes(type(v) is int for v in values)
        parts.append(struct.pack("<BB", kind, PRESENT_ALL if mask is None else PRESENT_MASK))
        if mask is not None:
            parts.append(mask)
        if kinds is not None:
            parts.append(kinds)
        if kind == KIND_FLOAT:
            parts.append(_Floats(_float64s(*values)))
        elif kind == KIND_INT:
            parts.append(_int64s(*values))  # type: ignore[arg-type]  # ints: KIND_INT says so
        else:
            parts.append(b"".join(struct.pack("<q" if type(v) is int else "<d", v) for v in values))


def metric_rows(columns: StepColumns) -> Sequence[dict[str, float]]:
    """``columns.metrics`` as one dict a step, packed or not."""
    metrics = columns.metrics
    if not isinstance(metrics, PackedFloats):
        return metrics
    grid, width = array("d", metrics.data), len(metrics.names)
    return [dict(zip(metrics.names, grid[i * width:(i + 1) * width], strict=True))
            for i in range(len(columns.steps))]


def _put_packed(parts: list[bytes], packed: PackedFloats) -> None:
    """``_put_columns`` of packed floats: the same bytes as of their dicts; each column is a
    strided slice of the steps' values, taken in C."""
    names = packed.names
    parts.append(struct.pack("<H", len(names)))
    grid = array("d", packed.data)
    for index, name in enumerate(names):
        encoded = name.encode()
        parts.append(struct.pack("<H", len(encoded)))
        parts.append(encoded)
        parts.append(struct.pack("<BB", KIND_FLOAT, PRESENT_ALL))
        parts.append(_Floats(grid[index::len(names)].tobytes()))


def _same_keys(dicts: Sequence[dict[str, float]]) -> dict[str, list[float]] | None:
    """When every dict has the same names (in any order): each name's values, in order, in
    the first dict's name order; else None."""
    if not dicts:
        return {}
    first = dicts[0]
    if countOf(map(len, dicts), len(first)) != len(dicts):
        return None
    try:
        return {name: list(map(itemgetter(name), dicts)) for name in first}
    except KeyError:
        return None


def _put_optional(parts: list[bytes], values: Sequence[dict[str, float] | None]) -> None:
    if values.count(None) == len(values):
        parts.append(struct.pack("<B", OPTIONAL_NONE))
        return
    present = bytes(v is not None for v in values)
    if all(present):
        parts.append(struct.pack("<B", OPTIONAL_ALL))
    else:
        parts.append(struct.pack("<B", OPTIONAL_SOME))
        parts.append(present)
    _put_columns(parts, [v for v in values if v is not None])


def iso_us(us: int) -> str:
    """Epoch microseconds as the read models spell times: UTC ISO with microseconds."""
    return (_EPOCH + us * _US).isoformat(timespec="microseconds")


def epoch_us(moment: datetime) -> int:
    return (moment - _EPOCH) // _US


def columns_of(steps: Iterable[DecodedStep]) -> tuple[StepColumns, Origin, UUID]:
    """A legacy step (or steps of one run with one origin) as block columns, keeping ids."""
    rows = list(steps)
    first = rows[0]
    origin = Origin(epoch_us(datetime.fromisoformat(first.recorded_at)), first.source,
                    first.tenant_id, first.actor)
    columns = StepColumns(
        [r.step for r in rows], [epoch_us(r.occurred_datetime) for r in rows],
        [r.occurred_at_raw for r in rows], [r.epoch for r in rows], [r.tokens for r in rows],
        [r.metrics for r in rows], [r.durations for r in rows], [r.resources for r in rows],
        {i: r.event_uuid.bytes for i, r in enumerate(rows)})
    return columns, origin, first.run_uuid
