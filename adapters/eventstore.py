"""Event-store adapters on the eventsourcing library's own recorders.

Why these recorders: measured on this machine (issue 2), the library's ``eventsourcing.sqlite``
and ``eventsourcing.postgres`` recorders appended batches 1.1-3.4x faster than the
``eventsourcing-sqlalchemy`` ones, and one SQLAlchemy URL still picks either
(``lineage.bootstrap.open_store``). ``bench/ingest.py`` measures ours against raw driver writes.

What we add to the library's recorders: a ``lineage_event_ids`` table written in the same
transaction as the events, so a retried write with the same event id stores nothing, durably;
and explicit durability settings (SQLite WAL + ``synchronous=FULL``; PostgreSQL
``synchronous_commit=on``).

Errors: every library error (the recorders', the drivers', the OS's) leaves a store as our
StoreError, translated by ``lineage.adapters.errors.store_error``.

Read-only stores: a SQLite file this process cannot write (the file, or its directory without
``-wal``/``-shm`` files to write to, or a read-only mount), or opened with ``read_only=True``, is
opened with ``mode=ro``: reads work, ``append`` raises ReadOnlyStoreError at once, and nothing
is created (a file without our tables is "not a lineage database").

The PostgreSQL store lives in ``lineage.adapters.postgres_store`` and is imported only when one
is opened, so the SQLite path works without psycopg or psycopg_pool installed.
"""

from __future__ import annotations

import os
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
from lineage.adapters.errors import store_error
from lineage.errors import ReadOnlyStoreError, StoreError
from lineage.ports import DuplicateEventError, VersionConflictError, repeated

EVENT_IDS_TABLE = "lineage_event_ids"


class _DurableSQLitePool(SQLiteConnectionPool):
    """The library's pool, plus the pragmas that make "acknowledged" mean "on disk"; a
    read-only pool neither switches the journal mode nor lets a statement write."""

    def __init__(self, *, db_name: str, lock_timeout: float, read_only: bool) -> None:
        super().__init__(db_name=db_name, lock_timeout=lock_timeout)  # type: ignore[arg-type]
        self.read_only = read_only
        self.is_journal_mode_wal = read_only  # the library switches to WAL only when False

    def _create_connection(self) -> SQLiteConnection:
        connection = super()._create_connection()
        raw: sqlite3.Connection = connection._sqlite_conn
        raw.execute("PRAGMA query_only=ON" if self.read_only else "PRAGMA synchronous=FULL")
        raw.execute("PRAGMA foreign_keys=ON")
        return connection


class _SQLiteRecorder(SQLiteApplicationRecorder):
    def create_table(self) -> None:
        """Create the tables that are missing. When they all exist (every open but the first)
        this only reads; when not, it takes the write lock first (``BEGIN IMMEDIATE``, so it
        waits for busy writers instead of failing "database is locked" on a read-to-write
        upgrade), then creates them."""
        if self.tables_exist():
            return
        with self.datastore.get_connection(commit=True) as connection:
            raw: sqlite3.Connection = connection._sqlite_conn
            raw.execute("BEGIN IMMEDIATE")
            try:
                for statement in self.create_table_statements:
                    raw.execute(statement)
            except BaseException:
                raw.execute("ROLLBACK")
                raise
            raw.execute("COMMIT")

    def tables_exist(self) -> bool:
        names = (self.events_table_name, EVENT_IDS_TABLE)
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)",
                      names)
            return bool(c.fetchone()[0] == len(names))

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
        for stream, version in kwargs.get("expect", ()):  # under the write lock: no race
            c.execute(f"SELECT MAX(originator_version) FROM {self.events_table_name} "
                      "WHERE originator_id=?", (stream.hex,))
            if (c.fetchone()[0] or 0) != version:  # rolled back; append says VersionConflict
                raise IntegrityError(f"stream {stream} moved past version {version}")
        # The writer holds the database's write lock, and the highest rowid never goes down
        # (only ``lineage migrate`` deletes rows, and it stores their replacement at the last
        # rowid it deleted), so the new rowids (notification ids) are the last
        # len(stored_events) ones.
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
    read_only = False
    read_only_reason = "opened read-only"
    # What the recorders and their drivers raise (the PostgreSQL store adds psycopg's).
    library_errors: tuple[type[BaseException], ...] = (PersistenceError, sqlite3.Error, OSError)

    def append(self, events: Sequence[StoredEvent], event_ids: Sequence[str],
               expect: Sequence[tuple[UUID, int]] = ()) -> None:
        if not events:
            return
        if self.read_only:
            raise ReadOnlyStoreError(self.location, self.read_only_reason)
        try:
            with self._in_flight():
                self.recorder.insert_events(events, event_ids=event_ids, expect=expect)
        except IntegrityError:
            known = self.known_event_ids(event_ids) | repeated(event_ids)
            if known:
                raise DuplicateEventError(known) from None
            raise VersionConflictError() from None
        except self.library_errors as error:
            if _pipeline_aborted(error):
                # psycopg's pipeline may report "an earlier statement failed" instead of that
                # statement's IntegrityError: look for the duplicate it most likely was.
                known = self.known_event_ids(event_ids) | repeated(event_ids)
                if known:
                    raise DuplicateEventError(known) from None
            raise store_error(error, self.location, "append to") from error

    def read_stream(self, stream_id: UUID, *, after: int | None = None,
                    desc: bool = False, limit: int | None = None) -> Sequence[StoredEvent]:
        with self._translated("read"):
            return self.recorder.select_events(stream_id, gt=after, desc=desc, limit=limit)

    def read_log(self, start: int, limit: int, topics: Sequence[str] = ()) -> Sequence[Notification]:
        with self._translated("read"):
            return self.recorder.select_notifications(start, limit, topics=topics)

    def read_rows(self, start: int, limit: int) -> Sequence[tuple[int, Any, int, str, bytes]]:
        with self._translated("read"):
            return self._select_rows(start, limit)

    def _select_rows(self, start: int, limit: int) -> Sequence[tuple[int, Any, int, str, bytes]]:
        raise NotImplementedError

    def max_position(self) -> int:
        with self._translated("read"):
            return self.recorder.max_notification_id() or 0

    @contextmanager
    def _translated(self, verb: str) -> Iterator[None]:
        try:
            with self._in_flight():
                yield
        except self.library_errors as error:
            raise store_error(error, self.location, verb) from error

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
                raise StoreError(f"{self.location} is closed")
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
    """Events in one SQLite file (WAL, synchronous=FULL). One writer process per file.

    Read-only (see the module's docstring) when ``read_only`` or when the file cannot be
    written; raises StoreError when the file cannot be opened or is not a lineage database."""

    def __init__(self, path: str, *, lock_timeout_s: float = 30.0,
                 read_only: bool = False) -> None:
        self._start_guard()
        self.path = path
        self.database = Database(SQLITE, path=path, lock_timeout_s=lock_timeout_s)
        reason = "opened read-only" if read_only else _not_writable(path)
        try:
            self._open(reason)
        except ReadOnlyStoreError as error:  # SQLite refused a write our checks did not foresee
            if reason is not None:
                raise
            self.datastore.close()
            self._open(error.reason)

    def _open(self, read_only: str | None) -> None:
        """Open the pool and check or create the tables; ``read_only`` is None or why not."""
        if read_only is not None:
            self.read_only, self.read_only_reason = True, read_only
            self.database = self.database.read_only_copy()
        name = self.database.sqlite_uri() if read_only is not None else self.path
        self.datastore = SQLiteDatastore(name, lock_timeout=int(self.database.lock_timeout_s))
        self.datastore.pool.close()
        self.datastore.pool = _DurableSQLitePool(db_name=name, read_only=read_only is not None,
                                                 lock_timeout=self.database.lock_timeout_s)
        self.recorder = _SQLiteRecorder(self.datastore)
        with self._translated("open"):
            if read_only is None:
                self.recorder.create_table()
            elif not self.recorder.tables_exist():
                raise StoreError(f"not a lineage database: {self.path} has no lineage events")

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

    def _select_rows(self, start: int, limit: int) -> Sequence[tuple[int, Any, int, str, bytes]]:
        with self.datastore.transaction(commit=False) as c:
            raw: sqlite3.Cursor = c.sqlite_cursor
            raw.row_factory = None  # plain tuples: the library's sqlite3.Row costs more
            raw.execute(f"SELECT rowid, originator_id, originator_version, topic, state FROM "
                        f"{self.recorder.events_table_name} WHERE rowid >= ? ORDER BY rowid "
                        "LIMIT ?", (start, limit))
            return raw.fetchall()

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


def _pipeline_aborted(error: BaseException) -> bool:
    cause = error.__cause__
    return cause is not None and type(cause).__name__ == "PipelineAborted"


def _not_writable(path: str) -> str | None:
    """Why this process cannot write the SQLite file ``path`` (None: it can, or the file does
    not exist yet). SQLite also writes ``-wal`` and ``-shm`` files beside it."""
    if not os.path.exists(path):
        return None
    if not os.access(path, os.W_OK):
        return "the file or its file system is read-only"
    beside = [f"{path}-wal", f"{path}-shm"]
    if not os.access(os.path.dirname(path) or ".", os.W_OK) and not all(
            os.access(each, os.W_OK) for each in beside):
        return "its directory is read-only"
    return None


def _chunks(values: list[int] | None, size: int = 500) -> Iterator[list[int] | None]:
    """``values`` in chunks of at most ``size`` (one None chunk for "all")."""
    if values is None:
        yield None
        return
    for start in range(0, len(values), size):
        yield values[start:start + size]
