"""The envelope every stored event carries (DESIGN §3)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from eventsourcing.domain import Aggregate, DomainEvent

ENVELOPE_FIELDS = ("event_id", "occurred_at", "occurred_at_raw", "source", "tenant_id", "actor")


class Origin(NamedTuple):
    """Where events come from and who writes them: the same on every event one tracker
    records (its settings ``source``, ``tenant_id`` and ``actor``)."""

    source: str
    tenant_id: str
    actor: str


@dataclass(frozen=True)
class EnvelopeFields:
    """The envelope's fields, declared once for ``Envelope`` and both event bases.

    ``event_id`` is the idempotency key: a write with an event id already stored is a no-op.
    ``occurred_at`` is UTC with microseconds; ``occurred_at_raw`` keeps what the caller gave
    when it was not already that.

    Not slotted: the library stores an event's ``__dict__``. The event bases list this class
    before the library's event class, so these fields follow the library's own (``timestamp``
    and the rest) in an event: the stored layout (``lineage.codec.steps``) relies on that order.
    """

    event_id: UUID
    occurred_at: datetime
    occurred_at_raw: str | None
    source: str
    tenant_id: str
    actor: str


@dataclass(frozen=True, slots=True)
class Envelope(EnvelopeFields):
    """Who said what happened, and when it happened.

    The time the event was recorded is the event's ``timestamp`` (exposed as ``recorded_at``),
    set by the writer when it commits.
    """

    def fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ENVELOPE_FIELDS}


class EnvelopedEvent(EnvelopeFields, Aggregate.Event):
    """Base of every aggregate event: the library's id, version and timestamp plus the envelope."""

    @property
    def recorded_at(self) -> datetime:
        return self.timestamp


class LogEvent(EnvelopeFields, DomainEvent):
    """Base of the events on append-only log streams (steps, heartbeats), which are never
    replayed into an aggregate: the library's id, version and timestamp plus the envelope."""

    @property
    def recorded_at(self) -> datetime:
        return self.timestamp
