"""Event-store adapters on the eventsourcing library's own recorders.

Why these recorders: measured on this machine (issue 2), the library's ``eventsourcing.sqlite``
and ``eventsourcing.postgres`` recorders appended batches 1.1-3.4x faster than the
``eventsourcing-sqlalchemy`` ones, and one SQLAlchemy URL still picks either
(``lineage.bootstrap.open_store``). ``bench/ingest.py`` measures ours against raw driver writes.

What we add to the library's recorders: a ``lineage_event_ids`` table written in the same
transaction as the events, so a retried write with the same event id stores nothing, durably;
and explicit durability settings (SQLite WAL + ``synchronous=FULL``; PostgreSQL
``synchronous_commit=on``).

The PostgreSQL store lives in ``lineage.adapters.postgres_store`` and is imported only when one
is opened, so the SQLite path works without psycopg or psycopg_pool installed.
"""

from __future__ import annotations

import errno
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    IntegrityError,
    Notification,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteCursor,
    SQLiteDatastore,
)

from lineage.adapters.database import SQLITE, Database
from lineage.errors import DISK_FULL, READ_ONLY, UNREACHABLE, StoreError
from lineage.ports import DuplicateEventError, VersionConflictError, repeated

EVENT_IDS_TABLE = "lineage_event_ids"


class _DurableSQLitePool(SQLiteConnectionPool):
    """The library's pool, plus the pragmas that make "acknowledged" mean "on disk"."""

    def _create_connection(self) -> SQLiteConnection:
        connection = super()._create_connection()
        raw: sqlite3.Connection = connection._sqlite_conn
        raw.execute("PRAGMA synchronous=FULL")
        raw.execute("PRAGMA foreign_keys=ON")
        return connection


class _SQLiteRecorder(SQLiteApplicationRecorder):
    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {EVENT_IDS_TABLE} "
            "(event_id TEXT PRIMARY KEY) WITHOUT ROWID",
        ]

    def _insert_events(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent],
                       **kwargs: Any) -> Sequence[int] | None:
        # executemany instead of the library's execute-per-row: ~2x faster for batches.
        c.executemany(
            self.insert_events_statement,
            [(e.originator_id.hex if isinstance(e.originator_id, UUID) else e.originator_id,
              e.originator_version, e.topic, e.state) for e in stored_events],
        )
        c.executemany(
            f"INSERT INTO {EVENT_IDS_TABLE} VALUES (?)",
            [(event_id,) for event_id in kwargs.get("event_ids", ())],
        )
        # The writer holds the database's write lock and rows are never deleted, so the new
        # rowids (notification ids) are the last len(stored_events) ones.
        c.execute(f"SELECT MAX(rowid) FROM {self.events_table_name}")
        last = c.fetchone()[0]
        return list(range(last - len(stored_events) + 1, last + 1))


    def select_notifications(self, start: int | None, limit: int, stop: int | None = None,
                             topics: Sequence[str] = (), *,
                             inclusive_of_start: bool = True) -> Sequence[Notification]:
        """The library's query, with ~3x cheaper rows: projections read the whole log through
        here. Stream ids are cached (a log has few streams and many events per stream)."""
        clauses: list[str] = []
        params: list[int | str] = []
        if start is not None:
            clauses.append("rowid>=?" if inclusive_of_start else "rowid>?")
            params.append(start)
        if stop is not None:
            clauses.append("rowid<=?")
            params.append(stop)
        if topics:
            clauses.append(f"topic IN ({','.join('?' * len(topics))})")
            params.extend(topics)
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        statement = (f"SELECT rowid, originator_id, originator_version, topic, state "
                     f"FROM {self.events_table_name} {where}ORDER BY rowid LIMIT ?")
        with self.datastore.transaction(commit=False) as c:
            c.execute(statement, [*params, limit])
            rows = c.fetchall()
        streams = _STREAM_IDS
        notifications = []
        for rowid, originator_id, version, topic, state in rows:
            stream = streams.get(originator_id)
            if stream is None:
                stream = self.convert_originator_id(originator_id)
                if len(streams) < 100_000:
                    streams[originator_id] = stream
            notification = _new(Notification)
            _set(notification, "__dict__", {"id": rowid, "originator_id": stream,
                                            "originator_version": version, "topic": topic,
                                            "state": state})
            notifications.append(notification)
        return notifications


_STREAM_IDS: dict[str, UUID | str] = {}  # hex -> UUID: a pure mapping, shared by every store
_new = object.__new__
_set = object.__setattr__  # what the library's mapper does to build frozen events fast


class _RecorderEventStore:
    """The shared half of both adapters: translate library errors into ours, in one place."""

    recorder: Any  # the library's SQLite or PostgreSQL application recorder, extended above

    def append(self, events: Sequence[StoredEvent], event_ids: Sequence[str]) -> None:
        if not events:
            return
        try:
            with self._in_flight():
                self.recorder.insert_events(events, event_ids=event_ids)
        except IntegrityError:
            known = self.known_event_ids(event_ids) | repeated(event_ids)
            if known:
                raise DuplicateEventError(known) from None
            raise VersionConflictError() from None
        except PersistenceError as error:
            raise StoreError(f"could not append to {self.location}: {error}",
                             reason_of(error)) from error

    def read_stream(self, stream_id: UUID, *, after: int | None = None,
                    desc: bool = False, limit: int | None = None) -> Sequence[StoredEvent]:
        with self._translated("read"):
            return self.recorder.select_events(stream_id, gt=after, desc=desc, limit=limit)

    def read_log(self, start: int, limit: int, topics: Sequence[str] = ()) -> Sequence[Notification]:
        with self._translated("read"):
            return self.recorder.select_notifications(start, limit, topics=topics)

    def max_position(self) -> int:
        with self._translated("read"):
            return self.recorder.max_notification_id() or 0

    @contextmanager
    def _translated(self, verb: str) -> Iterator[None]:
        try:
            with self._in_flight():
                yield
        except PersistenceError as error:
            raise StoreError(f"could not {verb} {self.location}: {error}",
                             reason_of(error)) from error

    def _start_guard(self) -> None:
        self._users = 0
        self._closed = False
        self._idle = threading.Condition()

    @contextmanager
    def _in_flight(self) -> Iterator[None]:
        """Count operations in progress, so ``close`` never closes a connection under one
        (the sqlite3 module crashes the process when that happens)."""
        with self._idle:
            if self._closed:
                raise StoreError(f"{self.location} is closed", "the store is closed")
            self._users += 1
        try:
            yield
        finally:
            with self._idle:
                self._users -= 1
                self._idle.notify_all()

    def _wait_idle(self, timeout: float = 30.0) -> None:
        with self._idle:
            self._closed = True
            self._idle.wait_for(lambda: self._users == 0, timeout)

    @property
    def location(self) -> str:
        raise NotImplementedError

    def known_event_ids(self, event_ids: Iterable[str]) -> set[str]:
        raise NotImplementedError


class SQLiteEventStore(_RecorderEventStore):
    """Events in one SQLite file (WAL, synchronous=FULL). One writer process per file."""

    def __init__(self, path: str, *, lock_timeout_s: int = 30) -> None:
        self._start_guard()
        self.path = path
        self.database = Database(SQLITE, path=path)
        self.datastore = SQLiteDatastore(path, lock_timeout=lock_timeout_s)
        self.datastore.pool.close()
        self.datastore.pool = _DurableSQLitePool(db_name=path, lock_timeout=lock_timeout_s)
        self.recorder = _SQLiteRecorder(self.datastore)
        with self._translated("open"):
            self.recorder.create_table()

    @property
    def location(self) -> str:
        return self.path

    def positions(self, stream_id: UUID, versions: Sequence[int] | None = None) -> dict[int, int]:
        # The library's SQLite application recorder numbers notifications by rowid.
        sql = (f"SELECT originator_version, rowid FROM {self.recorder.events_table_name} "
               "WHERE originator_id = ?")
        wanted = None if versions is None else list(versions)
        found: dict[int, int] = {}
        with self._translated("read"), self.datastore.transaction(commit=False) as c:
            for chunk in _chunks(wanted):
                extra = "" if chunk is None else f" AND originator_version IN ({','.join('?' * len(chunk))})"
                c.execute(sql + extra, [stream_id.hex, *(chunk or [])])
                found.update((row[0], row[1]) for row in c.fetchall())
        return found

    def known_event_ids(self, event_ids: Iterable[str]) -> set[str]:
        hexes = list(event_ids)
        found: set[str] = set()
        with self._translated("read"), self.datastore.transaction(commit=False) as c:
            for start in range(0, len(hexes), 500):
                chunk = hexes[start:start + 500]
                c.execute(
                    f"SELECT event_id FROM {EVENT_IDS_TABLE} WHERE event_id IN "
                    f"({','.join('?' * len(chunk))})",
                    chunk,
                )
                found.update(row[0] for row in c.fetchall())
        return found

    def integrity_check(self) -> str:
        with self._translated("check"), self.datastore.transaction(commit=False) as c:
            c.execute("PRAGMA integrity_check")
            return str(c.fetchone()[0])

    def close(self) -> None:
        self._wait_idle()
        self.datastore.close()


_SQLSTATES = {"53100": DISK_FULL, "25006": READ_ONLY}  # disk_full, read_only_sql_transaction
_ERRNOS = {errno.ENOSPC: DISK_FULL, errno.EDQUOT: DISK_FULL, errno.EROFS: READ_ONLY}


def reason_of(error: BaseException) -> str:
    """Why a store operation failed, in words: ``DISK_FULL``, ``READ_ONLY``, ``UNREACHABLE``
    (no connection to the server), else the driver's message. Looks through the chain of
    causes (the library wraps the sqlite3 / psycopg error)."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            break
        found = _reason_here(seen)
        if found is not None:
            return found
        seen = seen.__cause__ or seen.__context__
    return str(error)


def _reason_here(error: BaseException) -> str | None:
    name = getattr(error, "sqlite_errorname", None)
    if name is not None:
        if name == "SQLITE_FULL":
            return DISK_FULL
        if name.startswith("SQLITE_READONLY"):  # and its extended codes (_DBMOVED...)
            return READ_ONLY
    if isinstance(error, OSError) and error.errno in _ERRNOS:
        return _ERRNOS[error.errno]
    sqlstate = getattr(error, "sqlstate", None)
    if sqlstate in _SQLSTATES:
        return _SQLSTATES[sqlstate]
    kind = type(error)
    # psycopg raises OperationalError with no SQLSTATE when it has no (working) connection:
    # refused, reset, timed out, or the pool could not get one (PoolTimeout is a subclass).
    if kind.__module__.startswith("psycopg") and sqlstate is None and any(
            base.__name__ == "OperationalError" for base in kind.__mro__):
        return UNREACHABLE
    if sqlstate is not None and sqlstate.startswith(("08", "57P")):
        return UNREACHABLE  # connection_exception; the server shutting down or starting up
    return None


def _chunks(values: list[int] | None, size: int = 500) -> Iterator[list[int] | None]:
    """``values`` in chunks of at most ``size`` (one None chunk for "all")."""
    if values is None:
        yield None
        return
    for start in range(0, len(values), size):
        yield values[start:start + size]
