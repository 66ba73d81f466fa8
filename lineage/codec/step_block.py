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

Steps, epochs and tokens are validated to 0..2**63-1, so -1 is free for None and differences fit
in 64 bits. Metric values keep their type (float64, or int64 for ints). A step's metrics come
back in the block's column order (the order names first appear in the block).
"""

from __future__ import annotations

import struct
import zlib
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import accumulate, compress
from operator import itemgetter, sub
from typing import Any, NamedTuple
from uuid import UUID

from eventsourcing.persistence import Mapper

from lineage.codec.dispatch import topic_of
from lineage.codec.jsontext import strict_dumps
from lineage.codec.steps import STEP_TOPIC, DecodedStep, StepCodec
from lineage.domain.ids import step_stream_id
from lineage.domain.steps import StepsRecorded
from lineage.ports import EventStore

STEPS_TOPIC = topic_of(StepsRecorded)
MARK = b"C"
_LENGTH = struct.Struct("<I")
EPOCHS, TOKENS = 1, 2
_HEADER = struct.Struct("<IqQq16s16sHHH")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_FLOAT, _INT, _MIXED = 0, 1, 2  # a metric column's kind
_ALL, _MASK = 0, 1  # a column's presence: every step, or a byte per step
_NONE, _DICTS, _SOME = 0, 1, 2  # an optional field (durations, resources) per step
_JUST_FLOAT, _JUST_INT = frozenset((float,)), frozenset((int,))


class StepColumns(NamedTuple):
    """What the encoder takes: one list per field, one item per step (the writer's records
    transposed, or a legacy block's steps)."""

    steps: Sequence[int]
    occurred_us: Sequence[int]
    raws: Sequence[str | None]
    epochs: Sequence[int | None]
    tokens: Sequence[int | None]
    metrics: Sequence[dict[str, float]]
    durations: Sequence[dict[str, float] | None]
    resources: Sequence[dict[str, float] | None]
    ids: dict[int, bytes]  # index -> 16-byte id, for ids not derived from the block id


class Origin(NamedTuple):
    recorded_us: int
    source: str
    tenant_id: str
    actor: str


def encode_block(run_id: UUID, seq_from: int, block_id: bytes, origin: Origin,
                 columns: StepColumns, level: int = 1) -> bytes:
    """The stored state of one block (see the module doc)."""
    count = len(columns.steps)
    texts = [origin.source.encode(), origin.tenant_id.encode(), origin.actor.encode()]
    # Sequence.count and map() keep the per-step work in C: the writer encodes every step.
    flags = (EPOCHS if columns.epochs.count(None) != count else 0) | (
        TOKENS if columns.tokens.count(None) != count else 0)
    parts = [_HEADER.pack(count, seq_from, flags, origin.recorded_us, run_id.bytes, block_id,
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
    return b"".join((MARK, _LENGTH.pack(len(packed)), packed, *floats))


class _Floats(bytes):
    """A float column's values, marked to go after the zlib stream."""


def _differences(values: Sequence[int]) -> bytes:
    if not values:
        return b""
    return array("q", [values[0], *map(sub, values[1:], values[:-1])]).tobytes()


def _with_nones(values: Sequence[int | None]) -> bytes:
    """int64 values, -1 for None."""
    if values.count(None) == 0:
        return array("q", values).tobytes()  # type: ignore[type-var]
    return array("q", [-1 if v is None else v for v in values]).tobytes()


def _put_columns(parts: list[bytes], dicts: Sequence[dict[str, float]]) -> None:
    """A column set: ``<H`` number of names; per name ``<H`` length + UTF-8, ``<BB`` kind
    and presence, the presence bytes (one per step) when not every step has it, the kind bytes
    (one per present value, 1 = int) when mixed, then the present values (8 bytes each)."""
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
        types = set(map(type, values))
        if types <= _JUST_FLOAT:
            kind, kinds = _FLOAT, None
        elif types <= _JUST_INT:
            kind, kinds = _INT, None
        else:
            kind, kinds = _MIXED, bytes(type(v) is int for v in values)
        parts.append(struct.pack("<BB", kind, _ALL if mask is None else _MASK))
        if mask is not None:
            parts.append(mask)
        if kinds is not None:
            parts.append(kinds)
        if kind == _FLOAT:
            parts.append(_Floats(array("d", values).tobytes()))
        elif kind == _INT:
            parts.append(array("q", values).tobytes())
        else:
            parts.append(b"".join(struct.pack("<q" if type(v) is int else "<d", v) for v in values))


def _same_keys(dicts: Sequence[dict[str, float]]) -> dict[str, list[float]] | None:
    """When every dict has the same names (in any order): each name's values, in order, in
    the first dict's name order; else None."""
    if not dicts:
        return {}
    first = dicts[0]
    if set(map(len, dicts)) != {len(first)}:
        return None
    try:
        return {name: list(map(itemgetter(name), dicts)) for name in first}
    except KeyError:
        return None


def _put_optional(parts: list[bytes], values: Sequence[dict[str, float] | None]) -> None:
    if values.count(None) == len(values):
        parts.append(struct.pack("<B", _NONE))
        return
    present = bytes(v is not None for v in values)
    if all(present):
        parts.append(struct.pack("<B", _DICTS))
    else:
        parts.append(struct.pack("<B", _SOME))
        parts.append(present)
    _put_columns(parts, [v for v in values if v is not None])


# -- decode ------------------------------------------------------------------------------------


class Column(NamedTuple):
    """One metric name's values in a block: ``values[k]`` belongs to step ``where[k]`` of the
    block (``where`` None: every step has it, in order)."""

    where: list[int] | None
    values: list[float]


class StepBlock:
    """One stored block, decoded: the columns, and each step as a ``DecodedStep`` or a
    ``StepRecorded`` on demand. ``position`` is the block's notification id (0 when read from
    a stream). Read-only after decoding; cheap per-step views are built lazily."""

    __slots__ = ("_columns", "_durations", "_resources", "_state", "actor",
                 "block_id", "count", "epochs", "ids", "occurred_us", "position", "raws",
                 "recorded_us", "run_id", "seq_from", "source", "steps", "tenant_id", "tokens")

    def __init__(self, *, run_id: UUID, seq_from: int, block_id: bytes, origin: Origin,
                 steps: list[int], occurred_us: list[int], epochs: list[int | None] | None,
                 tokens: list[int | None] | None, columns: dict[str, Column],
                 durations: tuple[list[int] | None, dict[str, Column]] | None,
                 resources: tuple[list[int] | None, dict[str, Column]] | None,
                 raws: dict[int, str], ids: dict[int, bytes], position: int = 0) -> None:
        self.run_id = run_id
        self.seq_from = seq_from
        self.block_id = block_id
        self.recorded_us = origin.recorded_us
        self.source, self.tenant_id, self.actor = origin.source, origin.tenant_id, origin.actor
        self.count = len(steps)
        self.steps = steps
        self.occurred_us = occurred_us
        self.epochs = epochs
        self.tokens = tokens
        self._columns = columns
        self._durations = durations
        self._resources = resources
        self.raws = raws
        self.ids = ids
        self.position = position
        self._state: bytes | None = None  # the stored bytes, when decoded from them

    @property
    def state(self) -> bytes:
        """The block's bytes in this layout (encoded on first use for a legacy row; raises
        OverflowError for a value a block cannot hold, such as a step beyond 64 bits)."""
        if self._state is None:
            columns, origin, run_id = columns_of(self.decoded_steps())
            self._state = encode_block(run_id, self.seq_from, self.block_id, origin, columns)
        return self._state

    @property
    def seq_to(self) -> int:
        return self.seq_from + self.count - 1

    @property
    def metric_names(self) -> list[str]:
        return list(self._columns)

    def column(self, name: str) -> Column | None:
        """The values of metric ``name`` (None when no step of the block has it)."""
        return self._columns.get(name)

    def metrics(self, i: int) -> dict[str, float]:
        return _row(self._columns, i)

    def durations(self, i: int) -> dict[str, float] | None:
        return _optional_row(self._durations, i)

    def resources(self, i: int) -> dict[str, float] | None:
        return _optional_row(self._resources, i)

    def epoch(self, i: int) -> int | None:
        return None if self.epochs is None else self.epochs[i]

    def token_count(self, i: int) -> int | None:
        return None if self.tokens is None else self.tokens[i]

    @property
    def event_id(self) -> UUID:
        """The block's own id: the row's entry in the event-id index (step ids derive from it)."""
        return UUID(bytes=self.block_id)

    def step_id(self, i: int) -> UUID:
        """Step ``i``'s event id."""
        explicit = self.ids.get(i)
        if explicit is not None:
            return UUID(bytes=explicit)
        return UUID(int=derived_id(int.from_bytes(self.block_id, "big"), i))

    def occurred_at(self, i: int) -> str:
        """Step ``i``'s time as the read models spell it (UTC ISO, microseconds). Made on each
        call: the read models ask for a few steps of a block (first and last of a group)."""
        return iso_us(self.occurred_us[i])

    @property
    def recorded_at(self) -> str:
        return iso_us(self.recorded_us)

    def decoded(self, i: int) -> DecodedStep:
        metrics = self.metrics(i)
        durations = self.durations(i)
        return DecodedStep(
            self.position, str(self.run_id), self.seq_from + i, self.steps[i], self.epoch(i),
            metrics, strict_dumps(metrics), durations, self.token_count(i), self.resources(i),
            self.occurred_at(i), self.raws.get(i), self.recorded_at, str(self.step_id(i)),
            self.source, self.tenant_id, self.actor)

    def decoded_steps(self) -> list[DecodedStep]:
        return [self.decoded(i) for i in range(self.count)]

    def slice_seq(self, first: int, last: int) -> range:
        """The block indexes of stream versions ``first..last`` that this block holds."""
        return range(max(first - self.seq_from, 0), min(last - self.seq_from, self.count - 1) + 1)


def derived_id(block_int: int, index: int) -> int:
    """Step ``index``'s id (an int) in a block whose id is ``block_int``: the block id plus
    ``index`` in its last 32 bits (which never reach the version and variant bits)."""
    high, low = divmod(block_int, 1 << 32)
    return (high << 32) | ((low + index) & 0xFFFF_FFFF)


def split(state: bytes) -> tuple[memoryview, memoryview]:
    """A block's zlib stream and its float values (ValueError for bytes that are not a
    block)."""
    if state[:1] != MARK or len(state) < 1 + _LENGTH.size:
        raise ValueError("not a step block")
    (size,) = _LENGTH.unpack_from(state, 1)
    view = memoryview(state)
    start = 1 + _LENGTH.size
    if start + size > len(state) or (len(state) - start - size) % 8:
        raise ValueError("corrupt step block: block ends early")
    return view[start:start + size], view[start + size:]


def _reader(state: bytes) -> _Reader:
    packed, floats = split(state)
    return _Reader(zlib.decompress(packed), floats)


def decode_block(state: bytes, position: int = 0) -> StepBlock:
    """The block stored as ``state``. Raises ValueError for bytes that are not a block."""
    try:
        block = _reader(state).block(position)
    except (zlib.error, struct.error, IndexError, UnicodeDecodeError) as error:
        raise ValueError(f"corrupt step block: {error}") from None
    block._state = bytes(state)
    return block


def decode_column(state: bytes, name: str) -> tuple[list[int], Column | None]:
    """The steps of the block stored as ``state`` and the column of metric ``name`` (None
    when no step has it), decoding nothing else: what a metric history needs. Raises
    ValueError for bytes that are not a block."""
    try:
        return _reader(state).steps_and_column(name)
    except (zlib.error, struct.error, IndexError, UnicodeDecodeError) as error:
        raise ValueError(f"corrupt step block: {error}") from None


class _Reader:
    """Reads a block's body, and its float values from their own stream."""

    def __init__(self, body: bytes, floats: memoryview) -> None:
        self.body = memoryview(body)
        self.at = 0
        self.floats = floats
        self.floats_at = 0

    def take_floats(self, count: int) -> memoryview:
        end = self.floats_at + 8 * count
        if end > len(self.floats):
            raise IndexError("block ends early")
        chunk = self.floats[self.floats_at:end]
        self.floats_at = end
        return chunk

    def take(self, size: int) -> memoryview:
        end = self.at + size
        if end > len(self.body):
            raise IndexError("block ends early")
        chunk = self.body[self.at:end]
        self.at = end
        return chunk

    def unpack(self, layout: str) -> tuple[Any, ...]:
        shape = struct.Struct(layout)
        return shape.unpack(self.take(shape.size))

    def ints(self, count: int) -> list[int]:
        values = array("q")
        values.frombytes(self.take(8 * count))
        return values.tolist()

    def text(self, size: int) -> str:
        return bytes(self.take(size)).decode()

    def block(self, position: int) -> StepBlock:
        count, seq_from, flags, recorded_us, run, block_id, *sizes = self.unpack(_HEADER.format)
        source, tenant_id, actor = (self.text(size) for size in sizes)
        steps = list(accumulate(self.ints(count)))
        times = list(accumulate(self.ints(count)))
        epochs = _nones(self.ints(count)) if flags & EPOCHS else None
        tokens = _nones(self.ints(count)) if flags & TOKENS else None
        columns = self.columns(count)
        durations = self.optional(count)
        resources = self.optional(count)
        raws = {}
        for _ in range(self.unpack("<I")[0]):
            index, size = self.unpack("<IH")
            raws[index] = self.text(size)
        ids = {}
        for _ in range(self.unpack("<I")[0]):
            (index,) = self.unpack("<I")
            ids[index] = bytes(self.take(16))
        if self.at != len(self.body) or self.floats_at != len(self.floats) or len(steps) != count:
            raise IndexError("block has trailing bytes")
        return StepBlock(run_id=UUID(bytes=run), seq_from=seq_from, block_id=block_id,
                         origin=Origin(recorded_us, source, tenant_id, actor), steps=steps,
                         occurred_us=times, epochs=epochs, tokens=tokens, columns=columns,
                         durations=durations, resources=resources, raws=raws, ids=ids,
                         position=position)

    def columns(self, count: int, only: str | None = None) -> dict[str, Column]:
        """The column set; with ``only``, that column alone (the others are skipped)."""
        columns = {}
        for _ in range(self.unpack("<H")[0]):
            name = self.text(self.unpack("<H")[0])
            kind, presence = self.unpack("<BB")
            mask = bytes(self.take(count)) if presence == _MASK else None
            present = count if mask is None else mask.count(1)
            if only is not None and name != only:
                if kind == _FLOAT:
                    self.take_floats(present)
                else:
                    self.take((9 if kind == _MIXED else 8) * present)
                continue
            index = None if mask is None else list(compress(range(count), mask))  # C speed
            columns[name] = Column(index, self.values(kind, present))
        return columns

    def steps_and_column(self, name: str) -> tuple[list[int], Column | None]:
        count, _, flags, _, _, _, *sizes = self.unpack(_HEADER.format)
        self.take(sum(sizes))
        steps = list(accumulate(self.ints(count)))
        self.take(8 * count * (1 + bool(flags & EPOCHS) + bool(flags & TOKENS)))  # times...
        return steps, self.columns(count, only=name).get(name)

    def values(self, kind: int, count: int) -> list[Any]:
        if kind == _FLOAT:
            floats = array("d")
            floats.frombytes(self.take_floats(count))
            return floats.tolist()
        if kind == _INT:
            return self.ints(count)
        kinds = bytes(self.take(count))
        raw = self.take(8 * count)
        return [struct.unpack_from("<q" if is_int else "<d", raw, 8 * k)[0]
                for k, is_int in enumerate(kinds)]

    def optional(self, count: int) -> tuple[list[int] | None, dict[str, Column]] | None:
        """A field steps may lack: (each step's row among those that have it, -1 for none;
        None when every step has it) and its columns."""
        (presence,) = self.unpack("<B")
        if presence == _NONE:
            return None
        if presence == _DICTS:
            return None, self.columns(count)
        rows, present = [], 0
        for flag in bytes(self.take(count)):
            rows.append(present if flag else -1)
            present += flag
        return rows, self.columns(present)


def _nones(values: list[int]) -> list[int | None]:
    return [None if v < 0 else v for v in values]


def _row(columns: dict[str, Column], i: int) -> dict[str, float]:
    row = {}
    for name, column in columns.items():
        if column.where is None:
            row[name] = column.values[i]
        else:
            k = _find(column.where, i)
            if k is not None:
                row[name] = column.values[k]
    return row


def _optional_row(field: tuple[list[int] | None, dict[str, Column]] | None,
                  i: int) -> dict[str, float] | None:
    if field is None:
        return None
    rows, columns = field
    if rows is not None:
        i = rows[i]  # the step's place among those that have the field
        if i < 0:
            return None
    return _row(columns, i)


def _find(index: list[int], i: int) -> int | None:
    k = bisect_left(index, i)
    return k if k < len(index) and index[k] == i else None


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


# -- reading any stored step row ----------------------------------------------------------------


class BlockCodec:
    """Any stored step row as a ``StepBlock``: a block, or a step stored one to a row by an
    older layout (topic ``STEP_TOPIC``, the library's JSON), which reads as a block of one.
    Pure and thread-safe."""

    def __init__(self, mapper: Mapper) -> None:
        self.legacy = StepCodec(mapper)

    @staticmethod
    def is_step(topic: str) -> bool:
        return topic in (STEPS_TOPIC, STEP_TOPIC)

    def decode(self, stored: Any, position: int = 0) -> StepBlock:
        """``stored``: a StoredEvent or Notification of a step stream. ValueError for a row
        that is neither layout."""
        if stored.topic == STEPS_TOPIC:
            return decode_block(stored.state, position)
        return block_of_step(self.legacy.decode(stored, position))


def block_of_step(step: DecodedStep) -> StepBlock:
    """A step stored one to a row, as a block of one (its values as they are: a step beyond
    64 bits, which no block can hold, fails only where it is used)."""

    def single(values: dict[str, float] | None) -> tuple[None, dict[str, Column]] | None:
        return None if values is None else (None, {k: Column(None, [v]) for k, v in values.items()})

    return StepBlock(
        run_id=step.run_uuid, seq_from=step.seq, block_id=step.event_uuid.bytes,
        origin=Origin(epoch_us(datetime.fromisoformat(step.recorded_at)), step.source,
                      step.tenant_id, step.actor),
        steps=[step.step], occurred_us=[epoch_us(step.occurred_datetime)],
        epochs=None if step.epoch is None else [step.epoch],
        tokens=None if step.tokens is None else [step.tokens],
        columns={k: Column(None, [v]) for k, v in step.metrics.items()},
        durations=single(step.durations), resources=single(step.resources),
        raws={} if step.occurred_at_raw is None else {0: step.occurred_at_raw},
        ids={0: step.event_uuid.bytes}, position=step.position)


def read_blocks(store: EventStore, codec: BlockCodec, stream: UUID, first: int = 1,
                last: int | None = None) -> list[StepBlock]:
    """The blocks of step stream ``stream`` (``ids.step_stream_id``) that hold versions
    ``first..last`` (to the end when None), in order."""
    found: list[StepBlock] = []
    after = first - 1
    while last is None or after < last:
        # Each block holds at least one step: never ask for more blocks than steps wanted.
        rows = store.read_stream(stream, after=after or None,
                                 limit=64 if last is None else min(64, last - after))
        if not rows:
            break
        for row in rows:
            found.append(codec.decode(row))
            after = row.originator_version
            if last is not None and after >= last:
                break
    return found


def read_steps(store: EventStore, codec: BlockCodec, stream: UUID, first: int = 1,
               last: int | None = None) -> list[DecodedStep]:
    """The steps of step stream ``stream`` with versions ``first..last`` (to the end when
    None), in order."""
    return [block.decoded(i) for block in read_blocks(store, codec, stream, first, last)
            for i in block.slice_seq(first, block.seq_to if last is None else last)]


def last_block(store: EventStore, codec: BlockCodec, run_id: UUID) -> StepBlock | None:
    """The block holding the run's last step (None before its first step)."""
    rows = store.read_stream(step_stream_id(run_id), desc=True, limit=1)
    return codec.decode(rows[0]) if rows else None


def read_last_steps(store: EventStore, codec: BlockCodec, stream: UUID,
                    count: int) -> list[DecodedStep]:
    """The last ``count`` steps of step stream ``stream``, in order."""
    found: list[DecodedStep] = []
    before: list[StepBlock] = []
    taken = 0
    for row in store.read_stream(stream, desc=True, limit=count):
        block = codec.decode(row)
        before.append(block)
        taken += block.count
        if taken >= count:
            break
    for block in reversed(before):
        found.extend(block.decoded_steps())
    return found[max(len(found) - count, 0):]


def step_at(store: EventStore, codec: BlockCodec, stream: UUID, version: int) -> DecodedStep | None:
    """The step with stream version ``version`` (None when not stored)."""
    steps = read_steps(store, codec, stream, version, version)
    return steps[0] if steps else None
