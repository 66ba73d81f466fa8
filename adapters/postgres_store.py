"""The PostgreSQL event store: the library's PostgreSQL recorder with our event-id table and
synchronous commit (see ``lineage.adapters.eventstore`` for what both stores add).

Importing this module imports psycopg and psycopg_pool; ``bootstrap.open_store`` reaches it
only for a ``postgresql`` URL, so SQLite users never need them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier
from sqlalchemy import URL

from lineage.adapters.database import POSTGRES, Database
from lineage.adapters.eventstore import EVENT_IDS_TABLE, _RecorderEventStore
from lineage.errors import ReadOnlyStoreError, StoreError

MOVED_STREAM = UUID("6c696e65-6167-4500-8000-6d6f76656421")  # inserted twice: _refuse_moved


def _fewer_attempts(method: Any) -> Any:
    """``method`` without the library's retry (10 attempts, each waiting up to the pool's
    connect timeout: ~100 s per call against an unreachable server), with 2 attempts instead:
    enough to replace a pooled connection the server dropped; the writer retries past that
    with its own bounded policy (``retry_for_s``)."""
    return retry((InterfaceError, OperationalError), max_attempts=2, wait=0.2)(method.__wrapped__)


class _PostgresRecorder(PostgresApplicationRecorder):
    insert_events = _fewer_attempts(PostgresApplicationRecorder.insert_events)
    select_events = _fewer_attempts(PostgresApplicationRecorder.select_events)
    select_notifications = _fewer_attempts(PostgresApplicationRecorder.select_notifications)
    max_notification_id = _fewer_attempts(PostgresApplicationRecorder.max_notification_id)

    def __init__(self, datastore: PostgresDatastore) -> None:
        super().__init__(datastore)
        table = SQL("{0}.{1}").format(Identifier(datastore.schema), Identifier(EVENT_IDS_TABLE))
        self.sql_create_statements.append(
            SQL("CREATE TABLE IF NOT EXISTS {0} (event_id uuid PRIMARY KEY)").format(table)
        )
        self._insert_ids = SQL("INSERT INTO {0} (event_id) SELECT unnest(%s::uuid[])").format(table)
        self.select_ids = SQL("SELECT event_id FROM {0} WHERE event_id = ANY(%s::uuid[])").format(
            table
        )
        # Per-column binary arrays instead of the library's array of composite values, which
        # psycopg dumps as text with two regex substitutions per row: 41 -> ~13 ms per 1,000.
        self._insert_columns = SQL(
            "INSERT INTO {0}.{1} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::uuid[], %b::int8[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id"
        ).format(Identifier(datastore.schema), Identifier(self.events_table_name))
        # ``append(expect=)``: PostgreSQL has no plain statement that raises, so a stream that
        # moved past its expected version makes this insert one key twice: the transaction
        # fails as a version conflict does (a unique violation), and nothing is stored.
        self._refuse_moved = SQL(
            "INSERT INTO {0} (event_id) SELECT %s::uuid FROM generate_series(1, 2) "
            "WHERE EXISTS (SELECT 1 FROM unnest(%s::uuid[], %s::int8[]) AS e(stream, version) "
            "WHERE (SELECT coalesce(max(originator_version), 0) FROM {1}.{2} "
            "WHERE originator_id = e.stream) <> e.version)"
        ).format(table, Identifier(datastore.schema), Identifier(self.events_table_name))

    def _insert_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        event_ids = kwargs.get("event_ids", ())
        if event_ids:
            curs.execute(self._insert_ids, (list(event_ids),), prepare=True)

    def _insert_stored_events(self, curs: Any, stored_events: Sequence[StoredEvent],
                              **kwargs: Any) -> None:
        self._lock_table(curs)  # every writer waits here: the check below cannot race
        self._notify_channel(curs)
        expect = kwargs.get("expect", ())
        if expect:
            curs.execute(self._refuse_moved, (MOVED_STREAM, [stream for stream, _ in expect],
                                              [version for _, version in expect]))
        curs.execute(self._insert_columns, (
            [e.originator_id for e in stored_events],
            [e.originator_version for e in stored_events],
            [e.topic for e in stored_events],
            [e.state for e in stored_events],
        ), prepare=True)


class _DurablePostgresDatastore(PostgresDatastore):
    """The library's datastore, with synchronous commit forced on every connection."""

    def after_connect_func(self) -> Callable[[Any], None]:
        library_setup = super().after_connect_func()

        def after_connect(conn: Any) -> None:
            library_setup(conn)
            conn.cursor().execute("SET synchronous_commit = on")

        return after_connect


_FAILURE_CAUSES = (  # what the server (or the socket) said -> what to tell the user
    (re.compile(r'database "([^"]*)" does not exist'),
     lambda m, at: f'database "{m[1]}" does not exist on {at}'),
    (re.compile(r'role "([^"]*)" does not exist'),
     lambda m, at: f'user "{m[1]}" does not exist on {at}'),
    (re.compile(r'authentication failed for user "([^"]*)"'),
     lambda m, at: f'authentication failed for user "{m[1]}" on {at}'),
    (re.compile(r"Connection refused"),
     lambda m, at: f"connection refused by {at} (is PostgreSQL running and listening there?)"),
)


def check_connection(host: str, port: int, user: str, password: str, dbname: str,
                     timeout_s: int = 10) -> None:
    """Connect once, directly, and raise StoreError saying why when that fails (no database,
    no such user, bad password, connection refused), at once: the connection pool would only
    retry until its timeout and then say it could not get a connection."""
    at = f"{host}:{port}"
    try:
        psycopg.connect(host=host, port=port, user=user, password=password or None,
                        dbname=dbname, connect_timeout=timeout_s).close()
    except psycopg.Error as error:
        said = str(error)
        for pattern, explain in _FAILURE_CAUSES:
            match = pattern.search(said)
            if match:
                raise StoreError(explain(match, at)) from None
        detail = said.rpartition(" failed: ")[2] if " failed: " in said else said
        raise StoreError(f"could not connect to PostgreSQL on {at}: "
                         f"{' '.join(detail.split())}") from None


class PostgresEventStore(_RecorderEventStore):
    """Events in PostgreSQL (synchronous commit). Any number of writer processes.

    A role or database that may only read (``default_transaction_read_only``, a standby) gives
    a read-only store: the tables must exist already; ``append`` raises ReadOnlyStoreError."""

    library_errors = (*_RecorderEventStore.library_errors, psycopg.Error)

    def __init__(self, *, dbname: str, host: str, port: int, user: str, password: str,
                 schema: str = "public", pool_size: int = 2,
                 connect_timeout_s: float = 10.0) -> None:
        self._start_guard()
        self.database = Database(POSTGRES, url=URL.create(
            "postgresql+psycopg", username=user, password=password or None, host=host,
            port=port, database=dbname), schema=schema)
        self.display = self.database.display
        check_connection(host, port, user, password, dbname)
        with self._translated("open"):
            self.datastore = _DurablePostgresDatastore(
                dbname, host, port, user, password, schema=schema, pool_size=pool_size,
                max_overflow=4, lock_timeout=30, connect_timeout=connect_timeout_s,
            )
            self.recorder = _PostgresRecorder(self.datastore)
        try:
            with self._translated("open"):
                self._create_tables(schema)
        except ReadOnlyStoreError as error:
            self.read_only, self.read_only_reason = True, error.reason
            self.database = self.database.read_only_copy()
            self._check_tables()

    @property
    def location(self) -> str:
        return self.display

    def _create_tables(self, schema: str) -> None:
        """The library re-creates its type, table and function on every open; concurrent opens
        then fail ("tuple concurrently updated"). One advisory lock per schema serialises them."""
        key = f"lineage-schema:{schema}"
        with self.datastore.get_connection() as conn:  # autocommit: a session-level lock
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
            try:
                conn.execute(SQL("CREATE SCHEMA IF NOT EXISTS {0}").format(Identifier(schema)))
                self.recorder.create_table()
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))

    def _check_tables(self) -> None:
        with self._translated("open"), self.datastore.transaction(commit=False) as curs:
            curs.execute("SELECT to_regclass(%s) IS NOT NULL AS found",
                         (f"{self.datastore.schema}.{self.recorder.events_table_name}",))
            row = curs.fetchone()
            if row is None or not row["found"]:
                raise StoreError(f"not a lineage database: {self.display} has no lineage events")

    def positions(self, stream_id: UUID, versions: Sequence[int] | None = None) -> dict[int, int]:
        statement = SQL("SELECT originator_version, notification_id FROM {0}.{1} "
                        "WHERE originator_id = %s").format(
            Identifier(self.datastore.schema), Identifier(self.recorder.events_table_name))
        params: list[Any] = [stream_id]
        if versions is not None:
            statement += SQL(" AND originator_version = ANY(%s)")
            params.append(list(versions))
        with self._translated("read"), self.datastore.transaction(commit=False) as curs:
            curs.execute(statement, params)
            return {row["originator_version"]: row["notification_id"] for row in curs.fetchall()}

    def _select_rows(self, start: int, limit: int) -> Sequence[tuple[int, Any, int, str, bytes]]:
        # tuples, the stream id as text, and the binary protocol (bytea as it is, not hex):
        # psycopg's dict rows, UUID objects and hex decoding cost more than the hashing the
        # rows are read for
        statement = SQL("SELECT notification_id, originator_id::text, originator_version, topic, "
                        "state FROM {0}.{1} WHERE notification_id >= %s "
                        "ORDER BY notification_id LIMIT %s").format(
            Identifier(self.datastore.schema), Identifier(self.recorder.events_table_name))
        with self.datastore.transaction(commit=False) as curs, \
                curs.connection.cursor(row_factory=tuple_row, binary=True) as rows:
            rows.execute(statement, (start, limit))
            return rows.fetchall()

    def known_event_ids(self, event_ids: Iterable[str]) -> set[str]:
        with self._translated("read"), self.datastore.transaction(commit=False) as curs:
            curs.execute(self.recorder.select_ids, (list(event_ids),))
            return {row["event_id"].hex for row in curs.fetchall()}

    def close(self) -> None:
        self._wait_idle()
        self.datastore.close()
