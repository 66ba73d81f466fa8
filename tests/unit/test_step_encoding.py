"""Steps stored one to a row (before blocks): ``lineage.codec.steps`` reads the library's JSON.

The rows are what the library's mapper writes for a ``StepRecorded``; decoding them (the fast
path and the mapper's path) must give equal ``DecodedStep`` tuples, whose domain event equals
what ``mapper.to_domain_event`` gives. The layout the fast path slices is pinned here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from lineage.codec.jsontext import strict_dumps
from lineage.codec.mapper import make_mapper
from lineage.codec.steps import (
    STEP_TOPIC,
    DecodedStep,
    StepCodec,
    decode_step,
    from_event,
)
from lineage.domain import StepRecorded

NOW = datetime(2026, 11, 20, 12, 0, 0, 250000, tzinfo=UTC)
WHOLE = datetime(2026, 11, 20, 12, 0, 1, tzinfo=UTC)
HUGE = 2**63 - 1

METRICS = [
    {"loss": 0.25, "lr": 1e-4},
    {"loss": float("nan"), "grad": float("inf"), "neg": float("-inf")},
    {"perte_é": 0.5, "損失": -1e-300, "emoji 🚀": 3},
    {"huge": HUGE, "n": 3, "zero": 0.0},
    {'q"uote': 1.0, 'a},"durations":{"x": 1': 2.0, "back\\slash": 3.0, "NaN": 4.0},
    {},
]


def _no_constant(name: str) -> None:
    raise AssertionError(f"{name} is not strict JSON")


def _record(metrics: dict[str, float], occurred: datetime | None, **fields: Any) -> Any:
    values = {"run_id": uuid4(), "step": 7, "metrics": metrics, "epoch": 1,
              "durations": {"step_s": 0.5}, "tokens": 2048, "resources": {"gpu_mem": 1.5e9},
              "occurred_ns": 0, "occurred_at": occurred, "occurred_at_raw": "raw",
              "event_id": None}
    values.update(fields)
    return SimpleNamespace(**values)


def _event(record: Any, stream: UUID, event_id: UUID, occurred: datetime,
           recorded: datetime) -> StepRecorded:
    return StepRecorded(  # type: ignore[call-arg]
        originator_id=stream, originator_version=3, timestamp=recorded, run_id=record.run_id,
        step=record.step, epoch=record.epoch, metrics=record.metrics, durations=record.durations,
        tokens=record.tokens, resources=record.resources, event_id=event_id, occurred_at=occurred,
        occurred_at_raw=record.occurred_at_raw, source="src/é", tenant_id="acme",
        actor="alice")


@pytest.mark.parametrize("metrics", METRICS)
@pytest.mark.parametrize("moment", [NOW, WHOLE])
@pytest.mark.parametrize("optional", [True, False])
def test_a_stored_step_decodes_like_the_library_mapper(
        metrics: dict[str, float], moment: datetime, optional: bool) -> None:
    mapper = make_mapper()
    extra = {} if optional else {"epoch": None, "durations": None, "tokens": None,
                                 "resources": None, "occurred_at_raw": None}
    record = _record(metrics, moment, **extra)
    stream, event_id = uuid4(), uuid4()
    expected = mapper.to_stored_event(_event(record, stream, event_id, moment, moment))
    state = expected.state
    assert expected.topic == STEP_TOPIC

    stored = StoredEvent(stream, 3, STEP_TOPIC, state)  # type: ignore[arg-type]
    fast = decode_step(state, 3, position=42)
    assert fast is not None
    by_mapper = from_event(mapper.to_domain_event(stored), position=42)  # type: ignore[arg-type]
    assert repr(fast) == repr(by_mapper)  # repr: NaN equals itself
    assert repr(fast.as_event(stream)) == repr(mapper.to_domain_event(stored))
    assert fast.metrics_json == strict_dumps(metrics)
    json.loads(fast.metrics_json, parse_constant=_no_constant)  # strict JSON for the columns
    assert fast.occurred_at.endswith("+00:00") and len(fast.occurred_at) == 32


def _state(record: Any) -> bytes:
    return make_mapper().to_stored_event(_event(record, uuid4(), uuid4(), NOW, NOW)).state


def test_the_fast_path_slices_the_stored_metrics_only_when_strict() -> None:
    state = _state(_record({"loss": 0.25, "lr": 1e-4}, NOW))
    assert '"metrics":{"loss":0.25,"lr":0.0001},"durations":' in state.decode()  # the layout
    decoded = decode_step(state, 1)
    assert decoded is not None and decoded.metrics_json == '{"loss":0.25,"lr":0.0001}'
    nan = decode_step(_state(_record({"x": float("nan")}, NOW)), 1)
    assert nan is not None and nan.metrics_json == '{"x":"NaN"}'


def test_events_to_upcast_or_in_another_layout_go_through_the_mapper() -> None:
    class Upcasting:  # stands in for the mapper: a class_version state never takes the fast path
        cipher = compressor = None

        def to_domain_event(self, stored: Any) -> Any:
            return self.event

    record = _record({"loss": 1.0}, NOW)
    event = _event(record, uuid4(), uuid4(), NOW, NOW)
    state = make_mapper().to_stored_event(event).state
    upcast = json.loads(state)
    upcast["class_version"] = 2
    raw = json.dumps(upcast).encode()
    assert decode_step(raw, 3) is None and decode_step(b"not json", 3) is None
    mapper = Upcasting()
    mapper.event = event  # type: ignore[attr-defined]
    codec = StepCodec(mapper)  # type: ignore[arg-type]
    decoded = codec.decode(StoredEvent(event.originator_id, 3, STEP_TOPIC, raw), 9)  # type: ignore[arg-type]
    assert isinstance(decoded, DecodedStep) and decoded.position == 9
    assert repr(decoded.as_event(event.originator_id)) == repr(event)
    # Another layout (keys reordered by some other writer) still decodes, re-encoding metrics.
    reordered = json.dumps(dict(reversed(list(json.loads(state).items()))),
                           separators=(",", ":")).encode()
    other = decode_step(reordered, 3)
    assert other is not None and json.loads(other.metrics_json) == {"loss": 1.0}


def test_a_mapper_with_a_cipher_always_decodes_through_the_mapper() -> None:
    mapper = make_mapper()
    mapper.cipher = object()  # type: ignore[assignment]
    assert not StepCodec(mapper).plain and StepCodec(make_mapper()).plain
