"""Cheap reads of a stored block's header and steps (``lineage.codec.block_peek``) agree with a
full decode, and refuse what is not a block; ``MetricHistory`` keeps its values' types."""

from __future__ import annotations

import math
import struct
import zlib
from uuid import uuid4

import pytest

from lineage.application.metric_history import MetricHistory
from lineage.codec.block_peek import peek_count, peek_ends, peek_origin
from lineage.codec.step_block import Origin, StepColumns, encode_block
from lineage.codec.step_decode import decode_block, decode_column, split


def block(steps: list[int], origin: Origin) -> bytes:
    size = len(steps)
    columns = StepColumns(steps, [10**15 + i for i in range(size)], [None] * size,
                          [None] * size, [None] * size, [{"loss": 0.5, "n": i} for i in range(size)],
                          [None] * size, [None] * size, {})
    return encode_block(uuid4(), 1, uuid4().bytes, origin, columns)


@pytest.mark.parametrize("steps", [[0], [5, 3, 3, 2**62, 0], list(range(1000))])
def test_peeks_agree_with_a_full_decode(steps: list[int]) -> None:
    origin = Origin(1_795_000_000_123_456, "host/train.py", "tenant-é", "alice")
    state = block(steps, origin)
    decoded = decode_block(state)
    assert peek_ends(state) == (decoded.steps[0], decoded.steps[-1]) == (steps[0], steps[-1])
    assert peek_count(state) == decoded.count == len(steps)
    assert peek_origin(state) == origin
    assert (decoded.recorded_us, decoded.source, decoded.tenant_id, decoded.actor) == origin


def test_empty_texts() -> None:
    origin = Origin(7, "", "t", "")
    state = block([3, 4], origin)
    assert peek_origin(state) == origin and peek_ends(state) == (3, 4)


@pytest.mark.parametrize("state", [b"", b"{}", b"B", b"B" + b"not zlib",
                                   b"B" + zlib.compress(b"too short")])
def test_what_is_not_a_block_is_refused(state: bytes) -> None:
    with pytest.raises(ValueError):
        peek_ends(state)
    if state != b"B" + zlib.compress(b"too short"):  # whose first 4 bytes read as a count
        with pytest.raises(ValueError):
            peek_count(state)
    with pytest.raises(ValueError):
        peek_origin(state)


def test_a_truncated_block_is_refused() -> None:
    state = block(list(range(100)), Origin(0, "s", "t", "a"))
    packed, floats = split(state)
    body = zlib.compress(zlib.decompress(packed)[:100])
    with pytest.raises(ValueError):
        peek_ends(b"C" + struct.pack("<I", len(body)) + body + floats)


def test_metric_history_keeps_the_types_it_was_given() -> None:
    floats, ints, mixed = MetricHistory(), MetricHistory(), MetricHistory()
    floats.extend([1, 2], [0.5, math.nan])
    ints.extend([1, 2], [3, 4])
    ints.extend([3], [5])
    mixed.extend([1], [1.5])
    mixed.extend([2, 3], [2, 2.5])
    assert (floats.values.typecode, ints.values.typecode) == ("d", "q")
    assert isinstance(mixed.values, list) and [type(v) for v in mixed.values] == [float, int, float]
    assert ints == [(1, 3), (2, 4), (3, 5)] and ints[-1] == (3, 5) and len(ints) == 3
    assert repr(ints) == "MetricHistory([(1, 3), (2, 4), (3, 5)], points=3)"
    with pytest.raises(ValueError):
        ints.extend([4, 5], [1])
    late = MetricHistory()
    late.extend([1], [7])
    late.extend([2], [7.5])  # ints, then a float: the ints stay ints
    assert [type(v) for _, v in late] == [int, float]


def test_decode_column_agrees_with_a_full_decode() -> None:
    steps = [4, 2, 9, 9, 11]
    metrics = [{"a": 1.0, "b": 1}, {"b": 2.5}, {"a": 3.0, "c": 7}, {"b": 4}, {"a": 5.0, "b": 5}]
    columns = StepColumns(steps, [10**15 + i for i in range(5)], [None, "x", None, None, None],
                          [0, None, 1, 1, 2], [None, 10, None, 30, 40], metrics,
                          [None, {"fwd": 0.1}, None, None, None], [{"gpu": 1.0}] * 5,
                          {2: uuid4().bytes})
    state = encode_block(uuid4(), 3, uuid4().bytes, Origin(1, "s", "t", "a"), columns)
    decoded = decode_block(state)
    for name in ("a", "b", "c"):
        assert decode_column(state, name) == (steps, decoded.column(name))
    assert decode_column(state, "zzz") == (steps, None)
    assert decode_column(state, "b")[1].values == [1, 2.5, 4, 5]  # types kept
    with pytest.raises(ValueError):
        decode_column(state[:-3], "a")
