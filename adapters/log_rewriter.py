"""Rewriting rows of the log in place (``lineage.ports.LogRewriter``), for ``lineage migrate``.

The rows are the eventsourcing library's (``stored_events``: originator_id, originator_version,
topic, state), numbered by SQLite's ``rowid`` or PostgreSQL's ``notification_id`` column (a
``bigserial`` with a unique index, which takes an explicit value). ``replace`` deletes a run of
rows and stores their replacement at the position of the last one, so the log keeps its order,
no other row moves, and the highest position never goes down (SQLite numbers new rows from the
highest rowid, PostgreSQL from its sequence): readers of the log already allow gaps
(``lineage.ports.EventStore.read_log``), and a migration only adds some.

Concurrency: each ``replace`` is one transaction that holds the write lock writers take
(SQLite ``BEGIN IMMEDIATE``; PostgreSQL the library's ``LOCK TABLE ... IN EXCLUSIVE MODE``), so
the log's commit order stays its position order. On SQLite the rewriter also refuses to open
while any other process has the file open (``others_have_open``): a training run, a query, a
``lineage project follow``. PostgreSQL cannot tell us who else is connected to a schema; the
caller holds the projection lock, and the README says to stop exporters first.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, text

from lineage.adapters.database import POSTGRES, WRITE, Database, schema_change
from lineage.adapters.errors import store_error
from lineage.adapters.eventstore import EVENT_IDS_TABLE
from lineage.adapters.positions import metadata as positions_metadata
from lineage.adapters.positions import write_position
from lineage.errors import LOCKED, StoreError
from lineage.ports import LogRow

EVENTS_TABLE = "stored_events"  # the library's default, which both event stores use


class SqlAlchemyLogRewriter:
    """``LogRewriter`` on a SQLite file or a PostgreSQL schema. One thread.

    Raises StoreError on opening a SQLite file that another process has open (``kind``
    ``database is locked``), and, like every engine of ours, StoreError for any failure."""

    def __init__(self, database: Database, *, lock_timeout_s: float = 30.0) -> None:
        self.database = database
        self.postgres = database.kind == POSTGRES
        if not self.postgres and others_have_open(str(database.path)):
            raise StoreError(
                f"database is locked: another process has {database.display} open (a training "
                "run, a query, lineage project follow...); stop it, then run lineage migrate "
                "again", LOCKED)
        self.lock_timeout_s = lock_timeout_s
        self.engine = database.engine()
        self._id = "notification_id" if self.postgres else "rowid"
        with schema_change(self.engine) as conn:
            positions_metadata.create_all(conn)
        self._streams: dict[str, UUID] = {}  # SQLite stores stream ids as hex
        self._write = self.engine.connect().execution_options(**WRITE)
        self._read = self.engine.connect()
        if not self.postgres:  # events are durable on commit, like the event store's
            raw: Any = self._write.connection.dbapi_connection
            raw.execute("PRAGMA synchronous=FULL")

    @property
    def location(self) -> str:
        return self.database.display

    def scan(self, after: int, limit: int, topic: str) -> Sequence[LogRow]:
        mark = "%s" if self.postgres else "?"
        statement = (f"SELECT {self._id}, originator_id, originator_version, topic, "
                     f"CASE WHEN topic = {mark} THEN state END FROM {EVENTS_TABLE} "
                     f"WHERE {self._id} > {mark} ORDER BY {self._id} LIMIT {mark}")
        with self._read.begin():
            rows = self._read.exec_driver_sql(statement, (topic, after, limit)).all()
        if self.postgres:
            return [LogRow(p, o, v, t, None if s is None else bytes(s)) for p, o, v, t, s in rows]
        streams = self._streams
        found = []
        for position, stream, version, kind, state in rows:
            uuid = streams.get(stream)
            if uuid is None:
                uuid = streams[stream] = UUID(hex=stream)
            found.append(LogRow(position, uuid, version, kind, state))
        if len(streams) > 100_000:  # a log has few streams; stay bounded anyway
            streams.clear()
        return found

    def head(self) -> int:
        with self._read.begin():
            return int(self._read.execute(
                text(f"SELECT MAX({self._id}) FROM {EVENTS_TABLE}")).scalar() or 0)

    def positions(self) -> dict[str, int]:
        with self._read.begin():
            rows = self._read.execute(text("SELECT name, position FROM lineage_positions")).all()
        return {name: int(position) for name, position in rows}

    def replace(self, rows: Sequence[LogRow], new: Any, drop_ids: Sequence[str],
                positions: dict[str, int]) -> None:
        first, last = rows[0].position, rows[-1].position
        with self._write.begin():
            conn = self._write
            if self.postgres:
                conn.execute(text(f"SET LOCAL lock_timeout = '{int(self.lock_timeout_s)}s'"))
                conn.execute(text(f"LOCK TABLE {EVENTS_TABLE} IN EXCLUSIVE MODE"))
            deleted = conn.execute(text(f"DELETE FROM {EVENTS_TABLE} WHERE {self._id} "
                                        "BETWEEN :first AND :last"),
                                   {"first": first, "last": last}).rowcount
            if deleted != len(rows):
                raise StoreError(f"could not migrate {self.location}: positions {first}-{last} "
                                 f"hold {deleted} rows, not the {len(rows)} read (did another "
                                 "process rewrite the log?); nothing of them was changed")
            self._insert(conn, last, new)
            self._drop_ids(conn, drop_ids)
            for name, position in positions.items():
                write_position(conn, name, position)

    def _insert(self, conn: Connection, position: int, new: Any) -> None:
        stream = new.originator_id if self.postgres else new.originator_id.hex
        conn.execute(text(f"INSERT INTO {EVENTS_TABLE} ({self._id}, originator_id, "
                          "originator_version, topic, state) VALUES (:position, :stream, "
                          ":version, :topic, :state)"),
                     {"position": position, "stream": stream, "version": new.originator_version,
                      "topic": new.topic, "state": new.state})

    def _drop_ids(self, conn: Connection, drop_ids: Sequence[str]) -> None:
        if not drop_ids:
            return
        if self.postgres:
            conn.exec_driver_sql(f"DELETE FROM {EVENT_IDS_TABLE} WHERE event_id = ANY(%s)",
                                 ([UUID(hex=each) for each in drop_ids],))
        else:
            conn.exec_driver_sql(f"DELETE FROM {EVENT_IDS_TABLE} WHERE event_id = ?",
                                 [(each,) for each in drop_ids])

    def size_bytes(self) -> int:
        if not self.postgres:
            path = str(self.database.path)
            return sum(os.path.getsize(each) for each in (path, f"{path}-wal")
                       if os.path.exists(each))
        with self._read.begin():
            return int(self._read.execute(text(
                "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'm')")).scalar())

    def vacuum(self) -> None:
        if self.postgres:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                for table in (EVENTS_TABLE, EVENT_IDS_TABLE):
                    conn.execute(text(f"VACUUM (FULL, ANALYZE) {table}"))
            return
        raw: Any = self._write.connection.dbapi_connection
        try:
            raw.execute("VACUUM")
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as error:
            raise store_error(error, self.location, "vacuum") from error

    def close(self) -> None:
        self._read.close()
        self._write.close()
        self.engine.dispose()


def others_have_open(path: str, timeout_s: float = 1.0) -> bool:
    """Whether another connection (in any process) has the SQLite file ``path`` open: taking
    the file in exclusive locking mode fails while one does (in WAL mode every connection that
    has read the file holds a shared lock until it closes). Takes and releases the lock."""
    conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None)
    try:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("COMMIT")
    except sqlite3.OperationalError as error:
        if "locked" in str(error) or "busy" in str(error):
            return True
        raise store_error(error, path, "open") from error
    finally:
        conn.close()
    return False
