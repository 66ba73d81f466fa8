"""The bytes ``encode_block`` writes are pinned: the writer's hot path may be made faster, never
different. Each case is a block shape the writer meets (floats only, ints, mixed, a metric
missing from some steps, epochs and tokens with gaps, durations and resources for some steps,
raw times, explicit ids); the expected digest is of the decompressed body followed by the float
values (independent of the zlib build), taken from a straightforward encoder (and re-taken when
float values moved out of the zlib stream). Also: the writer's ``columns``
transposition gives the encoder the same bytes as a hand-built ``StepColumns``.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from datetime import UTC, datetime
from uuid import UUID

import pytest

from lineage.application.step_log import StepRecord, columns, metrics_of
from lineage.codec.step_block import Origin, PackedFloats, StepColumns, encode_block, metric_rows
from lineage.codec.step_decode import decode_block, split

RUN = UUID("12345678-1234-4234-8234-123456789abc")
BLOCK = bytes(range(16))
ORIGIN = Origin(1_767_225_600_000_000, "train.py", "acme", "alice")
T0 = 1_767_225_600_000_000
N = 6


def _floats(i: int) -> dict[str, float]:
    return {"loss": 2.5 - i / 7, "lr": 3e-4 * (i + 1), "grad_norm": 0.5 + i / 3}


def _shape(**fields: object) -> StepColumns:
    base: dict[str, object] = {
        "steps": list(range(10, 10 + N)), "occurred_us": [T0 + 1370 * i for i in range(N)],
        "raws": [None] * N, "epochs": [None] * N, "tokens": [None] * N,
        "metrics": [_floats(i) for i in range(N)], "durations": [None] * N,
        "resources": [None] * N, "ids": {}}
    base.update(fields)
    return StepColumns(**base)  # type: ignore[arg-type]


CASES = {
    "floats": _shape(epochs=[0, 0, 0, 1, 1, 1]),
    "floats, keys in another order": _shape(
        metrics=[_floats(i) if i % 2 else dict(reversed(_floats(i).items())) for i in range(N)]),
    "ints": _shape(metrics=[{"tokens_seen": 4096 * i, "samples": i} for i in range(N)]),
    "mixed int and float": _shape(metrics=[{"loss": i if i % 2 else i / 3} for i in range(N)]),
    "a metric in some steps": _shape(
        metrics=[{**_floats(i), **({"val_loss": 1.0 / (i + 1)} if i % 3 == 0 else {})}
                 for i in range(N)]),
    "no metrics": _shape(metrics=[{}] * N),
    "epochs and tokens with gaps": _shape(epochs=[None, 0, 0, None, 1, 1],
                                          tokens=[100, None, 300, 400, None, 600]),
    "durations for all, resources for some": _shape(
        durations=[{"forward": 0.1 * i, "backward": 0.2} for i in range(N)],
        resources=[{"gpu_mem": 1e9} if i % 2 else None for i in range(N)]),
    "raw times and explicit ids": _shape(
        raws=[None, "2026-01-01T00:00:00Z", None, None, "2026-01-01T01:00:00+01:00", None],
        ids={1: b"\x01" * 16, 4: b"\x04" * 16}),
    "non-monotonic steps and times": _shape(steps=[5, 3, 3, 9, 0, 2**40],
                                            occurred_us=[T0, T0 - 5, T0 + 7, T0, T0 + 1, T0]),
    "one step": _shape(steps=[7], occurred_us=[T0], raws=[None], epochs=[2], tokens=[None],
                       metrics=[{"loss": float("nan"), "x": float("inf")}], durations=[None],
                       resources=[None]),
}

EXPECTED = {
    "a metric in some steps": "0a83b638282d1e0e701419758d4196d7",
    "durations for all, resources for some": "22280a38688427dde591b27806468323",
    "epochs and tokens with gaps": "af6e756a490f8eaacf3b2e81ff85d737",
    "floats": "b34799630c0e9874a081895c0a890465",
    "floats, keys in another order": "aa12a77fec71bd27e308585165802545",
    "ints": "ad9028df9321be97d135e17e05f328fb",
    "mixed int and float": "c3081207d25e94bfc006f381ae28279a",
    "no metrics": "f0ff4bccbb35efb8ae5845a84b8c0a0a",
    "non-monotonic steps and times": "272f1203faebf485f9629ab911858479",
    "one step": "80c09b1cbb0558853776aba077c718b4",
    "raw times and explicit ids": "b886606c60c22d2b1cbbbc9bf74e8d5d",
}


def _digest(state: bytes) -> str:
    packed, floats = split(state)
    return hashlib.sha256(zlib.decompress(packed) + floats).hexdigest()[:32]


@pytest.mark.parametrize("name", sorted(CASES))
def test_block_body_is_pinned(name: str) -> None:
    state = encode_block(RUN, 41, BLOCK, ORIGIN, CASES[name])
    assert _digest(state) == EXPECTED[name]
    block = decode_block(state)
    assert block.steps == list(CASES[name].steps)
    assert [repr(sorted(block.metrics(i).items())) for i in range(block.count)] == [
        repr(sorted(m.items())) for m in CASES[name].metrics]


def _record(i: int, **fields: object) -> StepRecord:
    base: dict[str, object] = {
        "run_key": RUN.int, "step": 10 + i, "names": None, "metrics": _floats(i), "epoch": i // 3,
        "durations": None, "tokens": None, "resources": None,
        "occurred_ns": (T0 + 1370 * i) * 1000 + 999, "occurred_at": None,
        "occurred_at_raw": None, "event_id": None}
    base.update(fields)
    return StepRecord(**base)  # type: ignore[arg-type]


def test_columns_of_plain_records_encode_like_the_shape() -> None:
    records = [_record(i) for i in range(N)]
    state = encode_block(RUN, 41, BLOCK, ORIGIN, columns(records))
    assert _digest(state) == EXPECTED["floats"]


def test_packed_records_encode_like_their_dicts() -> None:
    """``log_step`` queues the common step's floats packed, beside the handle's names tuple:
    the block is the same bytes as of the dicts, and a batch mixing both forms falls back to
    dicts (the same bytes again)."""
    names = tuple(_floats(0))
    packed = [_record(i, names=names, metrics=struct.pack("3d", *_floats(i).values()))
              for i in range(N)]
    shape = columns(packed)
    assert isinstance(shape.metrics, PackedFloats)
    assert _digest(encode_block(RUN, 41, BLOCK, ORIGIN, shape)) == EXPECTED["floats"]
    mixed = [*packed[:3], *(_record(i) for i in range(3, N))]
    assert _digest(encode_block(RUN, 41, BLOCK, ORIGIN, columns(mixed))) == EXPECTED["floats"]
    assert [metrics_of(record) for record in packed] == [_floats(i) for i in range(N)]
    assert metric_rows(shape) == [_floats(i) for i in range(N)]
    empty = columns([_record(i, names=(), metrics=b"") for i in range(N)])
    assert metric_rows(empty) == [{}] * N


def test_columns_keep_given_times_raws_and_ids() -> None:
    given = datetime(2026, 1, 1, 1, tzinfo=UTC)
    records = [_record(i) for i in range(N)]
    records[2] = _record(2, occurred_at=given, occurred_at_raw="2026-01-01T01:00:00Z",
                         event_id=UUID(bytes=b"\x02" * 16), tokens=5)
    shape = columns(records)
    assert shape.occurred_us[2] == 1_767_229_200_000_000
    assert shape.occurred_us[3] == T0 + 1370 * 3
    assert list(shape.raws) == [None, None, "2026-01-01T01:00:00Z", None, None, None]
    assert shape.ids == {2: b"\x02" * 16}
    assert list(shape.tokens) == [None, None, 5, None, None, None]
    block = decode_block(encode_block(RUN, 41, BLOCK, ORIGIN, shape))
    assert block.step_id(2) == UUID(bytes=b"\x02" * 16)
    assert block.raws == {2: "2026-01-01T01:00:00Z"}
