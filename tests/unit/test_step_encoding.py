"""The step fast path writes exactly what the library's mapper would, and decodes the same."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import uuid4

from lineage.application.step_log import StepRecord
from lineage.codec.mapper import make_mapper
from lineage.domain import StepRecorded
from lineage.domain.steps import STEP_TOPIC, encode_numbers, encode_step, envelope_tail

NOW = datetime(2026, 11, 20, 12, 0, 0, 250000, tzinfo=UTC)


def test_fast_encoding_decodes_to_the_same_event_as_the_mapper_writes() -> None:
    mapper = make_mapper()
    run_id, stream, event_id = uuid4(), uuid4(), uuid4()
    metrics = {"loss": 0.25, "nan": float("nan"), "inf": float("inf"), "n": 3, 'q"uote': -1e-300}
    record = StepRecord(run_id, 7, metrics, 1, {"step_s": 0.5}, 2048, {"gpu_mem": 1.5e9},
                        0, NOW, "raw", None)
    state = encode_step(record, event_id.hex, NOW.isoformat(), NOW.isoformat(),
                        envelope_tail("src", "acme", "alice"))
    decoded = mapper.to_domain_event(_stored(stream, state))
    expected = StepRecorded(
        originator_id=stream, originator_version=1, timestamp=NOW, run_id=run_id, step=7,
        epoch=1, metrics=metrics, durations={"step_s": 0.5}, tokens=2048,
        resources={"gpu_mem": 1.5e9}, event_id=event_id, occurred_at=NOW, occurred_at_raw="raw",
        source="src", tenant_id="acme", actor="alice")
    assert repr(decoded) == repr(expected)
    assert json.loads(mapper.to_stored_event(expected).state) is not None
    assert mapper.transcoder.decode(state) == mapper.transcoder.decode(mapper.to_stored_event(expected).state)


def test_numbers_encode_like_json_dumps() -> None:
    values = {"a": 0.1, "b": 1e-12, "c": float("nan"), "d": float("-inf"), "é": 12345678901234567890}
    assert encode_numbers(values) == json.dumps(values, separators=(",", ":"), ensure_ascii=False)


def _stored(stream: object, state: bytes) -> object:
    from eventsourcing.persistence import StoredEvent

    return StoredEvent(stream, 1, STEP_TOPIC, state)  # type: ignore[arg-type]
