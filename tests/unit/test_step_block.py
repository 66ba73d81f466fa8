"""The step block codec (lineage.codec.step_block): every step comes back as it was logged.

Property tests encode random columns (every field, hostile values: NaN, infinities, -0.0,
64-bit extremes, non-ASCII and empty names, steps that go back, missing keys) and check each
step decodes to exactly what went in; corrupt bytes are a ValueError, never a wrong step.
"""

from __future__ import annotations

import math
import struct
import zlib
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lineage.codec.mapper import make_mapper
from lineage.codec.step_block import STEPS_TOPIC, Origin, StepColumns, encode_block, epoch_us, iso_us
from lineage.codec.step_decode import decode_block, derived_id, split
from lineage.codec.step_read import BlockCodec
from lineage.codec.steps import STEP_TOPIC, StepCodec
from lineage.domain import StepRecorded
from lineage.domain.ids import step_stream_id

INT64 = 2**63 - 1
MAX_US = epoch_us(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
names = st.text(max_size=12)
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                    st.integers(-(2**63), INT64))
number_dicts = st.dictionaries(names, numbers, max_size=4)
optional_ints = st.one_of(st.none(), st.integers(0, INT64))


@st.composite
def blocks(draw: Any) -> StepColumns:
    count = draw(st.integers(1, 40))

    def each(strategy: Any) -> list[Any]:
        return draw(st.lists(strategy, min_size=count, max_size=count))

    same_keys = draw(st.booleans())
    if same_keys:
        keys = draw(st.lists(names, max_size=3, unique=True))
        metrics = [{k: draw(numbers) for k in keys} for _ in range(count)]
    else:
        metrics = each(number_dicts)
    ids = {i: uuid4().bytes for i in range(count) if draw(st.booleans())}
    return StepColumns(
        each(st.integers(0, INT64)), each(st.integers(0, MAX_US)),
        each(st.one_of(st.none(), st.text(max_size=64))), each(optional_ints),
        each(optional_ints), metrics, each(st.one_of(st.none(), number_dicts)),
        each(st.one_of(st.none(), number_dicts)), ids)


def same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN and the type (int or float) and sign of zero kept."""
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return bool(a == b)


def in_column_order(block_names: list[str], values: dict[str, Any] | None) -> dict[str, Any] | None:
    if values is None:
        return None
    return {name: values[name] for name in block_names if name in values}


ORIGIN = Origin(1_764_000_000_123_456, "src/é", "acme", "alice")


@settings(max_examples=150, deadline=None)
@given(blocks())
def test_every_step_decodes_to_what_was_encoded(columns: StepColumns) -> None:
    run_id, block_id = uuid4(), uuid4().bytes
    block = decode_block(encode_block(run_id, 5, block_id, ORIGIN, columns), position=77)
    assert (block.run_id, block.seq_from, block.count, block.position) == (run_id, 5, len(columns.steps), 77)
    assert block.seq_to == 5 + len(columns.steps) - 1
    assert block.steps == list(columns.steps) and block.occurred_us == list(columns.occurred_us)
    for i in range(block.count):
        step = block.decoded(i)
        assert (step.seq, step.step, step.epoch, step.tokens) == (
            5 + i, columns.steps[i], columns.epochs[i], columns.tokens[i])
        assert step.occurred_at == iso_us(columns.occurred_us[i])
        assert step.occurred_at_raw == columns.raws[i]
        assert (step.source, step.tenant_id, step.actor) == ("src/é", "acme", "alice")
        assert step.recorded_at == iso_us(ORIGIN.recorded_us)
        assert same(step.metrics, in_column_order(block.metric_names, columns.metrics[i]))
        for got, given_values in ((step.durations, columns.durations[i]),
                                  (step.resources, columns.resources[i])):
            assert (got is None) == (given_values is None)
            if got is not None and given_values is not None:
                assert same(dict(sorted(got.items())), dict(sorted(given_values.items())))
        expected_id = (UUID(bytes=columns.ids[i]) if i in columns.ids
                       else UUID(int=derived_id(int.from_bytes(block_id, "big"), i)))
        assert step.event_id == str(expected_id) == str(block.step_id(i))


def test_derived_ids_are_distinct_valid_uuids_that_keep_version_and_variant() -> None:
    for block_id in (uuid4(), UUID("0" * 8 + "-0000-7000-8000-00000000ffff"),
                     UUID("ffffffff-ffff-4fff-bfff-ffffffffffff")):
        ids = {UUID(int=derived_id(block_id.int, i)) for i in range(5000)}
        assert len(ids) == 5000
        assert all(u.version == block_id.version and u.variant == block_id.variant for u in ids)
        assert UUID(int=derived_id(block_id.int, 0)) == block_id


def test_a_block_is_compact() -> None:
    count = 1000
    columns = StepColumns(
        list(range(count)), [1_764_000_000_000_000 + 2000 * i for i in range(count)],
        [None] * count, [0] * count, [4096] * count,
        [{"loss": 2.0 / (i + 1) + (i % 7) * 1e-3, "lr": 1e-4, "grad_norm": 0.5 + (i % 13) / 17}
         for i in range(count)], [None] * count, [None] * count, {})
    state = encode_block(uuid4(), 1, uuid4().bytes, ORIGIN, columns)
    assert len(state) / count < 40  # 3 float64 metrics: 24 bytes raw, the rest compresses


def pack(body: bytes, floats: bytes) -> bytes:
    """A block's bytes from its body and float values (the layout of step_block's doc)."""
    packed = zlib.compress(body)
    return b"C" + struct.pack("<I", len(packed)) + packed + floats


@pytest.mark.parametrize("damage", ["truncated", "garbage", "trailing", "floats short",
                                    "floats long", "length", "mark", "empty"])
def test_corrupt_bytes_are_a_value_error(damage: str) -> None:
    columns = StepColumns([1, 2], [10, 20], [None, None], [None, 1], [None, None],
                          [{"a": 1.0}, {"a": 2.0}], [None, None], [None, None], {})
    state = encode_block(uuid4(), 1, uuid4().bytes, ORIGIN, columns)
    packed, floats = split(state)
    body = zlib.decompress(packed)
    broken = {"truncated": pack(body[:-3], floats), "garbage": pack(b"\x05" * 200, floats),
              "trailing": pack(body + b"\x00", floats), "floats short": pack(body, floats[:-1]),
              "floats long": pack(body, bytes(floats) + b"\x00" * 8),
              "length": state[:1] + struct.pack("<I", 10**6) + state[5:],
              "mark": b"X" + state[1:], "empty": b""}[damage]
    assert decode_block(pack(body, floats)).count == 2  # the damage is what breaks it
    with pytest.raises(ValueError):
        decode_block(broken)


def test_a_count_larger_than_the_body_is_a_value_error() -> None:
    columns = StepColumns([1], [10], [None], [None], [None], [{}], [None], [None], {})
    packed, floats = split(encode_block(uuid4(), 1, uuid4().bytes, ORIGIN, columns))
    body = bytearray(zlib.decompress(packed))
    struct.pack_into("<I", body, 0, 10**9)
    with pytest.raises(ValueError):
        decode_block(pack(bytes(body), bytes(floats)))


def test_a_legacy_row_reads_as_a_block_of_one_equal_to_the_old_decoder() -> None:
    mapper = make_mapper()
    run_id = uuid4()
    event = StepRecorded(  # type: ignore[call-arg]
        originator_id=step_stream_id(run_id), originator_version=12,
        timestamp=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), run_id=run_id, step=40,
        epoch=2, metrics={"loss": float("nan"), "n": 3}, durations={"step_s": 0.5}, tokens=7,
        resources=None, event_id=uuid4(), occurred_at=datetime(2026, 1, 2, tzinfo=UTC),
        occurred_at_raw="1767312000", source="s", tenant_id="t", actor="a")
    stored = mapper.to_stored_event(event)
    assert stored.topic == STEP_TOPIC and BlockCodec.is_step(STEP_TOPIC) and BlockCodec.is_step(STEPS_TOPIC)
    block = BlockCodec(mapper).decode(stored, position=9)
    assert (block.count, block.seq_from, block.seq_to, block.position) == (1, 12, 12, 9)
    assert repr(block.decoded(0)) == repr(StepCodec(mapper).decode(stored, 9))
    assert block.event_id == event.event_id == block.step_id(0)
    assert repr(block.decoded(0).as_event(step_stream_id(run_id))) == repr(event)
