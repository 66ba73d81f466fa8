"""Turning a page of notifications into what projections consume, once per batch.

Step events are most of the log, stored many to a row: each stored step row becomes ONE item,
a ``StepBlock`` (``lineage.codec.step_block``, shared with the span builder and the queries),
whose columns the read models take whole; every other event is decoded by the mapper into its
domain event class.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from eventsourcing.persistence import Mapper, Notification
from sqlalchemy import Connection, Table

from lineage.codec.dispatch import Dispatcher
from lineage.codec.jsontext import strict_dumps
from lineage.codec.step_read import BlockCodec
from lineage.domain.steps import StepsRecorded


class Item(NamedTuple):
    """One decoded notification: its position, kind (``Run.Started``...), event (a
    ``StepBlock`` for a step row, type ``StepsRecorded``) and event class (what handlers are
    keyed by)."""

    position: int
    kind: str
    event: Any
    type: type


class Projection(Protocol):
    """One read model: ``apply`` writes the rows for a batch of items using the caller's
    connection (the runner's transaction, which also moves the read model's position)."""

    name: str
    tables: Sequence[Table]

    def apply(self, items: Sequence[Item], conn: Connection) -> None: ...


def decode(notifications: Sequence[Notification], mapper: Mapper) -> list[Item]:
    blocks = BlockCodec(mapper)
    items = []
    for note in notifications:
        if blocks.is_step(note.topic):
            items.append(Item(note.id, "StepsRecorded", blocks.decode(note, note.id), StepsRecorded))
        else:
            event = mapper.to_domain_event(note)
            items.append(Item(note.id, type(event).__qualname__, event, type(event)))
    return items


# Compact, strict JSON for JSON columns, so ``json_extract`` / ``::jsonb`` work on them (NaN
# and +-Infinity as strings; ``loads`` and ``numbers`` turn them back into floats).
dumps = strict_dumps


def loads(text: str | None) -> Any:
    """A JSON column back (``{}`` for NULL or empty). The columns hold ``dumps`` output, so
    the decoder's scanner reads them without ``json.loads``'s checks around it (a read
    model's span query parses two per span)."""
    if not text:
        return {}
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return json.loads(text)  # says what is wrong
    return value if end == len(text) else json.loads(text)


def numbers(text: str | None) -> dict[str, float]:
    """A metrics column back as floats (``"NaN"``/``"Infinity"`` strings restored)."""
    values: dict[str, Any] = loads(text)
    if not text or ('"NaN"' not in text and 'Infinity"' not in text):
        return values
    return {key: _NON_FINITE[item] if isinstance(item, str) and item in _NON_FINITE else item
            for key, item in values.items()}


_NON_FINITE = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
_scan: Any = getattr(json.JSONDecoder(), "scan_once")  # noqa: B009 (not in the typeshed stubs)


class Dispatching(Dispatcher):
    """A projection that reacts to events by type (``lineage.codec.dispatch``): the method
    marked ``@handles(Run.Started)`` gets ``(conn, position, event)``; events a projection has
    no handler for are skipped."""

    def apply(self, items: Sequence[Item], conn: Any) -> None:
        for item in items:
            handler = self.handler(item.type)
            if handler is not None:
                handler(conn, item.position, item.event)
