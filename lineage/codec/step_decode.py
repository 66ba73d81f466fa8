"""Step blocks, decoded: ``StepBlock`` (a block's columns, and each step on demand) from the
bytes ``lineage.codec.step_block`` lays out."""

from __future__ import annotations

import struct
import zlib
from array import array
from bisect import bisect_left
from itertools import accumulate, compress
from typing import Any, NamedTuple
from uuid import UUID

from lineage.codec.jsontext import strict_dumps
from lineage.codec.step_block import (
    EPOCHS,
    HEADER,
    KIND_FLOAT,
    KIND_INT,
    KIND_MIXED,
    LENGTH,
    MARK,
    OPTIONAL_ALL,
    OPTIONAL_NONE,
    PRESENT_MASK,
    TOKENS,
    Origin,
    columns_of,
    encode_block,
    iso_us,
)
from lineage.codec.steps import DecodedStep

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
    if state[:1] != MARK or len(state) < 1 + LENGTH.size:
        raise ValueError("not a step block")
    (size,) = LENGTH.unpack_from(state, 1)
    view = memoryview(state)
    start = 1 + LENGTH.size
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
        count, seq_from, flags, recorded_us, run, block_id, *sizes = self.unpack(HEADER.format)
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
            mask = bytes(self.take(count)) if presence == PRESENT_MASK else None
            present = count if mask is None else mask.count(1)
            if only is not None and name != only:
                if kind == KIND_FLOAT:
                    self.take_floats(present)
                else:
                    self.take((9 if kind == KIND_MIXED else 8) * present)
                continue
            index = None if mask is None else list(compress(range(count), mask))  # C speed
            columns[name] = Column(index, self.values(kind, present))
        return columns

    def steps_and_column(self, name: str) -> tuple[list[int], Column | None]:
        count, _, flags, _, _, _, *sizes = self.unpack(HEADER.format)
        self.take(sum(sizes))
        steps = list(accumulate(self.ints(count)))
        self.take(8 * count * (1 + bool(flags & EPOCHS) + bool(flags & TOKENS)))  # times...
        return steps, self.columns(count, only=name).get(name)

    def values(self, kind: int, count: int) -> list[Any]:
        if kind == KIND_FLOAT:
            floats = array("d")
            floats.frombytes(self.take_floats(count))
            return floats.tolist()
        if kind == KIND_INT:
            return self.ints(count)
        kinds = bytes(self.take(count))
        raw = self.take(8 * count)
        return [struct.unpack_from("<q" if is_int else "<d", raw, 8 * k)[0]
                for k, is_int in enumerate(kinds)]

    def optional(self, count: int) -> tuple[list[int] | None, dict[str, Column]] | None:
        """A field steps may lack: (each step's row among those that have it, -1 for none;
        None when every step has it) and its columns."""
        (presence,) = self.unpack("<B")
        if presence == OPTIONAL_NONE:
            return None
        if presence == OPTIONAL_ALL:
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
