"""Events a read model cannot apply: skipped, recorded with the reason, never blocking.

One event that a read model cannot apply (an event written by an older version or another
writer, a hand-edited store, a bug: a step beyond 64 bits, an unknown topic, a payload that does
not decode) must not stop that read model, or every query behind it, for ever. So the runner
(``lineage.projections.runner``) applies a batch normally and, only when that fails, redoes it
here: each read model applies the batch inside a SAVEPOINT; a part that fails is split in
halves, down to the single events that fail on their own. Those are rolled back (their rows
only: the rest of the batch stays) and recorded in ``lineage_quarantine`` (read model,
position, event id, topic, originator, reason), in the transaction that moves the read
model's position. A rebuild re-derives the same list: the read models are batching-invariant
and a failure is a function of the events before it.

Failures of the database itself (``is_systemic``: a lost connection, a lock timeout, a full
disk, out of memory) are not the event's fault: they propagate, nothing is quarantined, and
the next catch-up retries the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import Mapper, Notification
from sqlalchemy import Connection, delete, func, select, tuple_

from lineage.errors import StoreError
from lineage.projections.decoding import Item, Projection, decode
from lineage.projections.tables import quarantine
from lineage.timestamps import iso

REASON_LENGTH = 500
# DB-API error classes (sqlite3, psycopg, and SQLAlchemy's wrappers share the names) that say
# the database failed, not the event: matched by name so no driver needs importing.
_SYSTEMIC_NAMES = frozenset({"OperationalError", "InterfaceError", "DisconnectionError"})
# PostgreSQL SQLSTATE classes that say the same (psycopg raises some as ProgrammingError): 08
# connection, 25 transaction state (a read-only transaction), 42 schema or privileges (a table
# or column gone, permission denied), 53 resources (disk full), 57 operator intervention, 58
# system, XX internal. Data errors (22 out of range, 23 integrity) are the event's.
_SYSTEMIC_SQLSTATE = ("08", "25", "42", "53", "57", "58", "XX")


@dataclass(frozen=True)
class Failure:
    """An event a read model could not apply (or nobody could decode) and why."""

    position: int
    reason: str
    event_id: str | None = None


def is_systemic(error: BaseException) -> bool:
    """True when ``error`` is the database's failure (retry later), not the event's: judged on
    it and on the driver's error behind it (``_causes``)."""
    for cause in _causes(error):
        if isinstance(cause, (MemoryError, ConnectionError, TimeoutError)):
            return True
        if getattr(cause, "connection_invalidated", False):
            return True
        if type(cause).__name__ == "DatabaseError":  # the bare class: corruption, not data
            return True
        if str(getattr(cause, "sqlstate", None) or "")[:2] in _SYSTEMIC_SQLSTATE:
            return True
        if any(klass.__name__ in _SYSTEMIC_NAMES for klass in type(cause).__mro__):
            return True
    return False


def reason_of(error: BaseException) -> str:
    """``Class: first line of the message`` of the driver's error when one is wrapped (by our
    StoreError, by SQLAlchemy): no SQL text, parameters or paths, so the same failure always
    reads the same."""
    shown = _causes(error)[-1]
    lines = str(shown).strip().splitlines()
    return f"{type(shown).__name__}: {lines[0] if lines else ''}"[:REASON_LENGTH]


def _causes(error: BaseException) -> list[BaseException]:
    """``error`` and the errors it wraps: the ``StoreError`` our engines raise
    (``lineage.adapters.errors``) wraps the driver's or SQLAlchemy's, which wraps the driver's
    (``orig``). Other chains (a decoding error's cause) are not followed: the outer error
    says more."""
    chain = [error]
    for _ in range(5):
        inner = getattr(chain[-1], "orig", None)
        if inner is None and isinstance(chain[-1], StoreError):
            inner = chain[-1].__cause__
        if not isinstance(inner, BaseException):
            break
        chain.append(inner)
    return chain


def decode_each(notifications: Sequence[Notification],
                mapper: Mapper) -> tuple[list[Item], list[Failure]]:
    """``decode`` of the batch; when it fails, note by note, with the failures apart."""
    try:
        return decode(notifications, mapper), []
    except Exception as error:  # any event's failure: it must not stop the read model
        if is_systemic(error):
            raise
    items: list[Item] = []
    failures: list[Failure] = []
    for note in notifications:
        try:
            items += decode([note], mapper)
        except Exception as error:  # any event's failure: it must not stop the read model
            if is_systemic(error):
                raise
            failures.append(Failure(note.id, f"cannot decode: {reason_of(error)}"))
    return items, failures


def apply_guarded(projection: Projection, items: Sequence[Item], conn: Connection) -> list[Failure]:
    """Apply ``items`` in a savepoint; on failure, halves of them, down to the single events
    that fail alone. Returns those (their changes rolled back); raises systemic errors."""
    if not items:
        return []
    try:
        with conn.begin_nested():
            projection.apply(items, conn)
        return []
    except Exception as error:  # any event's failure: it must not stop the read model
        if is_systemic(error):
            raise
        if len(items) == 1:
            return [Failure(items[0].position, reason_of(error), _event_id(items[0].event))]
    middle = len(items) // 2
    return (apply_guarded(projection, items[:middle], conn)
            + apply_guarded(projection, items[middle:], conn))


def record(conn: Connection, name: str, failures: Sequence[Failure],
           notes: dict[int, Notification]) -> None:
    """Write ``failures`` of read model ``name`` (``notes``: the batch, by position)."""
    if not failures:
        return
    now = iso(datetime.now(UTC))
    conn.execute(quarantine.insert(), [
        {"read_model": name, "position": failure.position, "event_id": failure.event_id,
         "topic": notes[failure.position].topic,
         "originator_id": str(notes[failure.position].originator_id),
         "originator_version": notes[failure.position].originator_version,
         "reason": failure.reason, "quarantined_at": now}
        for failure in failures])


def clear(conn: Connection, name: str) -> None:
    conn.execute(delete(quarantine).where(quarantine.c.read_model == name))


def counts(conn: Connection) -> dict[str, int]:
    """How many events each read model has quarantined (read models with none are absent)."""
    query = select(quarantine.c.read_model, func.count()).group_by(quarantine.c.read_model)
    return {name: count for name, count in conn.execute(query)}


def listed(conn: Connection, names: Sequence[str] = (), after: tuple[str, int] | None = None,
           limit: int | None = None) -> list[dict[str, Any]]:
    """The quarantined events (of read models ``names``; all when empty), by read model and
    position, as dicts of the table's columns: ``limit`` of them (all when None) after the
    (read model, position) ``after`` (a page: its key, not an offset)."""
    query = select(quarantine).order_by(quarantine.c.read_model, quarantine.c.position)
    if names:
        query = query.where(quarantine.c.read_model.in_(list(names)))
    if after is not None:
        query = query.where(tuple_(quarantine.c.read_model, quarantine.c.position) > after)
    if limit is not None:
        query = query.limit(limit)
    return [dict(row._mapping) for row in conn.execute(query)]


def _event_id(event: Any) -> str | None:
    found = getattr(event, "event_id", None)
    return None if found is None else str(found)[:36]
