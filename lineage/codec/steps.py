"""One step as the readers see it (``DecodedStep``), and steps stored one to a row.

Steps are stored in blocks now (``lineage.codec.step_block``); a block gives each of its steps
back as a ``DecodedStep``. Stores written before blocks hold one row per step: the library's
JSON of a ``StepRecorded`` (what its ``JSONTranscoder`` with ``UUIDAsHex`` and ``DatetimeAsISO``
writes). ``StepCodec.decode`` reads those rows (``BlockCodec`` calls it for them, and
``lineage migrate`` turns them into blocks): straight from ``json.loads`` of the layout below,
or through the mapper for anything else (a ``class_version`` to upcast, a cipher or
compressor, another layout), so both paths give equal tuples.

    {"timestamp":{..},"event_id":{..},"occurred_at":{..},"occurred_at_raw":..,"source":..,
     "tenant_id":..,"actor":..,"run_id":{..},"step":N,"epoch":..,"metrics":{..},
     "durations":..,"tokens":..,"resources":..}

(the library's order: the event's fields, ``LogEvent``'s envelope first, then
``StepRecorded``'s). Steps stored before this layout (``run_id`` first, the envelope last)
decode the same way.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from eventsourcing.persistence import Mapper

from lineage.codec.dispatch import topic_of
from lineage.codec.jsontext import strict_dumps
from lineage.domain.steps import StepRecorded
from lineage.timestamps import iso

STEP_TOPIC = topic_of(StepRecorded)

_loads = json.JSONDecoder().decode

# -- decode ----------------------------------------------------------------------------------


class DecodedStep(NamedTuple):
    """One stored step event as the projections and the span builder read it.

    Ids are UUID strings and times UTC ISO strings with microseconds (what the read models
    store); ``run_uuid``, ``event_uuid`` and ``occurred_datetime`` convert on demand.
    ``metrics_json`` is strict JSON of ``metrics`` (NaN/Infinity as strings), the stored text
    itself when it already is. ``position`` is the notification id (0 when read from a stream).
    """

    position: int
    run_id: str
    seq: int  # the step stream's version
    step: int
    epoch: int | None
    metrics: dict[str, float]
    metrics_json: str
    durations: dict[str, float] | None
    tokens: int | None
    resources: dict[str, float] | None
    occurred_at: str
    occurred_at_raw: str | None
    recorded_at: str
    event_id: str
    source: str
    tenant_id: str
    actor: str

    @property
    def duration_s(self) -> float | None:
        return (self.durations or {}).get("step_s")

    @property
    def run_uuid(self) -> UUID:
        return UUID(self.run_id)

    @property
    def event_uuid(self) -> UUID:
        return UUID(self.event_id)

    @property
    def occurred_datetime(self) -> datetime:
        return datetime.fromisoformat(self.occurred_at)

    def as_event(self, stream_id: UUID) -> StepRecorded:
        """The domain event (what ``mapper.to_domain_event`` gives for the stored step)."""
        return StepRecorded(  # type: ignore[call-arg]
            originator_id=stream_id, originator_version=self.seq,
            timestamp=datetime.fromisoformat(self.recorded_at), run_id=self.run_uuid,
            step=self.step, epoch=self.epoch, metrics=self.metrics, durations=self.durations,
            tokens=self.tokens, resources=self.resources, event_id=self.event_uuid,
            occurred_at=self.occurred_datetime, occurred_at_raw=self.occurred_at_raw,
            source=self.source, tenant_id=self.tenant_id, actor=self.actor)


class StepCodec:
    """Decodes stored step events (``StoredEvent`` or ``Notification``) into ``DecodedStep``.

    The fast path reads the plain JSON of the layout above; the mapper handles the rest. Pure
    and thread-safe (its caches are bounded dicts).
    """

    def __init__(self, mapper: Mapper) -> None:
        self.mapper = mapper
        self.plain = getattr(mapper, "cipher", None) is None and getattr(
            mapper, "compressor", None) is None

    def decode(self, stored: Any, position: int = 0) -> DecodedStep:
        if self.plain:
            step = decode_step(stored.state, stored.originator_version, position)
            if step is not None:
                return step
        event: Any = self.mapper.to_domain_event(stored)
        return from_event(event, position)


def from_event(event: StepRecorded, position: int = 0) -> DecodedStep:
    """The ``DecodedStep`` of a domain event (the mapper's path)."""
    return _new(DecodedStep, (
        position, str(event.run_id), event.originator_version, event.step, event.epoch,
        event.metrics, strict_dumps(event.metrics), event.durations, event.tokens,
        event.resources, iso(event.occurred_at), event.occurred_at_raw, iso(event.timestamp),
        str(event.event_id), event.source, event.tenant_id, event.actor))


_RUN_IDS: dict[str, str] = {}
_new = tuple.__new__  # a NamedTuple's keyword constructor costs ~1 µs a row here


def decode_step(state: bytes, seq: int, position: int = 0) -> DecodedStep | None:
    """The fast path: ``state`` in this module's layout -> ``DecodedStep``; None (use the
    mapper) for anything else, such as an event carrying a ``class_version`` to upcast."""
    try:
        text = state.decode()
        data = _loads(text)
        if "class_version" in data:
            return None
        run_hex = data["run_id"]["_data_"]
        run_id = _RUN_IDS.get(run_hex)
        if run_id is None:
            run_id = _uuid_text(run_hex)
            if len(_RUN_IDS) < 100_000:
                _RUN_IDS[run_hex] = run_id
        metrics = data["metrics"]
        return _new(DecodedStep, (
            position, run_id, seq, data["step"], data["epoch"], metrics,
            _metrics_text(text) or strict_dumps(metrics), data["durations"], data["tokens"],
            data["resources"], _utc(data["occurred_at"]["_data_"]), data["occurred_at_raw"],
            _utc(data["timestamp"]["_data_"]), _uuid_text(data["event_id"]["_data_"]),
            data["source"], data["tenant_id"], data["actor"]))
    except (ValueError, KeyError, TypeError):
        return None


def _metrics_text(text: str) -> str | None:
    """The stored ``metrics`` object when it is what ``strict_dumps`` writes; None to
    re-encode. Safe in any key order: ``,"metrics":{`` and ``},"durations":`` cannot occur
    inside a JSON string (their quotes would be escaped), and ``durations`` follows ``metrics``
    in this layout and the older one."""
    start = text.find(',"metrics":{')
    end = text.find('},"durations":', start)
    if start < 0 or end < 0:
        return None
    found = text[start + 11:end + 1]
    # What strict_dumps would write: ASCII (it escapes the rest) and no non-finite tokens.
    return found if found.isascii() and "NaN" not in found and "Infinity" not in found else None


def _uuid_text(hex32: str) -> str:
    if len(hex32) != 32:
        raise ValueError(hex32)
    return f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:]}"


def _utc(text: str) -> str:
    """A stored time in the read models' spelling: UTC with microseconds and ``+00:00``."""
    if len(text) == 32 and text.endswith("+00:00"):
        return text
    return iso(datetime.fromisoformat(text))
