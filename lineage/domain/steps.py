"""The step log: one append-only stream per run, never replayed into an object.

The stream id is ``ids.step_stream_id(run_id)``; the stream's own counter is its version, so a
step number may repeat (after a resume, or when a loop re-does a step). ``StepRecorded`` is a
plain domain event: the writer encodes it with a fast path (``encode_step``) that produces the
same stored state the library's JSON mapper would, and the mapper decodes it as usual.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from lineage.domain.envelope import LogEvent

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=True).encode


class StepRecorded(LogEvent):
    run_id: UUID
    step: int
    epoch: int | None
    metrics: dict[str, float]
    durations: dict[str, float] | None
    tokens: int | None
    resources: dict[str, float] | None


STEP_TOPIC = f"{StepRecorded.__module__}:{StepRecorded.__qualname__}"


def encode_step(record: Any, event_hex: str, occurred_iso: str, timestamp_iso: str,
                envelope_tail: str) -> bytes:
    """Stored state of one StepRecorded, byte-compatible with the library's JSONTranscoder.

    ``record`` is a writer StepRecord; ``envelope_tail`` is the pre-encoded
    ``"source":..,"tenant_id":..,"actor":..`` part shared by every step of a run.
    """
    return (
        '{"timestamp":{"_type_":"datetime_iso","_data_":"%s"},'
        '"run_id":{"_type_":"uuid_hex","_data_":"%s"},"step":%d,"epoch":%s,"metrics":%s,'
        '"durations":%s,"tokens":%s,"resources":%s,'
        '"event_id":{"_type_":"uuid_hex","_data_":"%s"},'
        '"occurred_at":{"_type_":"datetime_iso","_data_":"%s"},"occurred_at_raw":%s,%s}'
        % (
            timestamp_iso,
            record.run_id.hex,
            record.step,
            "null" if record.epoch is None else "%d" % record.epoch,
            encode_numbers(record.metrics),
            "null" if record.durations is None else encode_numbers(record.durations),
            "null" if record.tokens is None else "%d" % record.tokens,
            "null" if record.resources is None else encode_numbers(record.resources),
            event_hex,
            occurred_iso,
            "null" if record.occurred_at_raw is None else _dumps(record.occurred_at_raw),
            envelope_tail,
        )
    ).encode()


_KEYS: dict[str, str] = {}
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def encode_numbers(values: dict[str, float]) -> str:
    """JSON for a flat name -> number mapping, exactly as ``json.dumps`` writes it (NaN and
    Infinity tokens included) at a third of the cost; key encodings are cached."""
    parts = []
    for key, number in values.items():
        encoded_key = _KEYS.get(key)
        if encoded_key is None:
            encoded_key = _dumps(key)
            if len(_KEYS) < 10_000:  # bounded: metric names are few, but not trusted
                _KEYS[key] = encoded_key
        text = repr(number)
        parts.append("%s:%s" % (encoded_key, _NON_FINITE.get(text, text)))
    return "{%s}" % ",".join(parts)


def envelope_tail(source: str, tenant_id: str, actor: str) -> str:
    return '"source":%s,"tenant_id":%s,"actor":%s' % (
        _dumps(source), _dumps(tenant_id), _dumps(actor))
