"""The eventsourcing library's own recorder test case, run against our recorders (habit 5).

Our adapters subclass the library's SQLite and PostgreSQL application recorders (adding the
event-id table and, for SQLite, a faster batch insert); these cases check the subclasses still
keep every promise the library's recorders make. The recorders are built exactly as the
adapters build them (durable pool and pragmas, synchronous commit), on a temp file or a fresh
PostgreSQL schema (the ``postgres_url`` fixture creates and drops it).
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import types
from typing import TYPE_CHECKING, Any

import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore

from lineage.adapters.eventstore import EVENT_IDS_TABLE, SQLiteEventStore, _SQLiteRecorder
from lineage.adapters.postgres_store import PostgresEventStore, _PostgresRecorder
from lineage.bootstrap import open_store


def _import_library_test_case() -> Any:
    """``eventsourcing.tests.persistence`` imports the library's AES cipher, which needs the
    optional ``pycryptodome``. The recorder cases never use the cipher, so when pycryptodome is
    absent we import the module against a placeholder ``Crypto`` and remove the placeholder (and
    the half-imported ``eventsourcing.cipher``) at once, so nothing else ever sees them."""
    if importlib.util.find_spec("Crypto") is not None:
        from eventsourcing.tests.persistence import ApplicationRecorderTestCase
        return ApplicationRecorderTestCase
    placeholders = {name: types.ModuleType(name) for name in
                    ("Crypto", "Crypto.Cipher", "Crypto.Cipher.AES", "Crypto.Cipher._mode_gcm")}
    placeholders["Crypto.Cipher"].AES = placeholders["Crypto.Cipher.AES"]  # type: ignore[attr-defined]
    placeholders["Crypto.Cipher.AES"].key_size = (16, 24, 32)  # type: ignore[attr-defined]
    placeholders["Crypto.Cipher._mode_gcm"].GcmMode = object  # type: ignore[attr-defined]
    sys.modules.update(placeholders)
    try:
        from eventsourcing.tests.persistence import ApplicationRecorderTestCase
    finally:
        for name in [*placeholders, "eventsourcing.cipher"]:
            sys.modules.pop(name, None)
    return ApplicationRecorderTestCase


if TYPE_CHECKING:
    from eventsourcing.tests.persistence import ApplicationRecorderTestCase
else:
    ApplicationRecorderTestCase = _import_library_test_case()


class _OurRecorderCase:
    """Opens a fresh store per ``create_recorder`` call site (one per test) and closes it."""

    stores: list[Any]
    prepared: Any = None

    def setUp(self) -> None:
        super().setUp()  # type: ignore[misc]
        self.stores = []
        self.prepared = None

    def tearDown(self) -> None:
        # The library's concurrent case signals its reader threads to stop but does not join
        # them; the pool's close() closes connections still in use, and closing a sqlite3
        # connection another thread is querying crashes the interpreter. So wait for them.
        for thread in threading.enumerate():
            if thread.name.endswith("(read_continuously)"):
                thread.join(timeout=60)
        for store in self.stores:
            store.close()
        super().tearDown()  # type: ignore[misc]

    def open_store(self) -> Any:
        raise NotImplementedError

    def create_recorder(self) -> Any:
        if self.prepared is not None:  # a recorder a case set up before calling the base case
            return self.prepared
        store = self.open_store()
        self.stores.append(store)
        return store.recorder

    def test_insert_events_also_records_event_ids(self) -> None:
        """What we add: ids given to insert_events land in the event-id table, atomically."""
        recorder = self.create_recorder()
        store = self.stores[-1]
        event = StoredEvent(self.new_originator_id(), 1, "topic1", b"state1")  # type: ignore[attr-defined]
        recorder.insert_events([event], event_ids=["a" * 32])
        assert store.known_event_ids(["a" * 32, "b" * 32]) == {"a" * 32}
        assert recorder.max_notification_id() == 1


class TestOurSQLiteRecorder(_OurRecorderCase, ApplicationRecorderTestCase[_SQLiteRecorder]):
    @pytest.fixture(autouse=True)
    def _database_file(self, tmp_path: Any) -> None:
        self.tmp_path = tmp_path
        self.files = 0

    def open_store(self) -> SQLiteEventStore:
        self.files += 1
        store = SQLiteEventStore(str(self.tmp_path / f"recorder-{self.files}.db"))
        assert isinstance(store.datastore, SQLiteDatastore)
        assert isinstance(store.recorder, _SQLiteRecorder)
        return store

    def test_insert_subscribe(self) -> None:
        pytest.skip("the library's SQLiteApplicationRecorder has no subscribe() (it raises "
                    "NotImplementedError), so optional_test_insert_subscribe cannot apply")

    def test_creates_the_event_id_table(self) -> None:
        recorder = self.create_recorder()
        with recorder.datastore.transaction(commit=False) as c:
            c.execute("SELECT name FROM sqlite_master WHERE type='table'")
            assert EVENT_IDS_TABLE in {row[0] for row in c.fetchall()}

    def test_durability_pragmas_are_set(self) -> None:
        recorder = self.create_recorder()
        with recorder.datastore.transaction(commit=False) as c:
            c.execute("PRAGMA journal_mode")
            assert c.fetchone()[0].lower() == "wal"
            c.execute("PRAGMA synchronous")
            assert c.fetchone()[0] == 2  # FULL


@pytest.mark.postgres
class TestOurPostgresRecorder(_OurRecorderCase, ApplicationRecorderTestCase[_PostgresRecorder]):
    @pytest.fixture(autouse=True)
    def _fresh_schema(self, postgres_url: str) -> None:
        self.url = postgres_url

    def open_store(self) -> PostgresEventStore:
        store = open_store(self.url)
        assert isinstance(store, PostgresEventStore)
        assert isinstance(store.datastore, PostgresDatastore)
        assert isinstance(store.recorder, _PostgresRecorder)
        assert store.datastore.schema == self.url.rsplit("schema=", 1)[1]
        return store

    def _prepare_with_pool(self, size: int) -> None:
        """Make the base case's ``create_recorder`` return a recorder whose pool holds ``size``
        connections, as the library's own Postgres tests do before their concurrent cases."""
        recorder = self.create_recorder()
        self.stores[-1].datastore.pool.open()
        self.stores[-1].datastore.pool.resize(size, size)
        self.prepared = recorder

    def test_concurrent_no_conflicts(self, initial_position: int = 0) -> None:
        self._prepare_with_pool(12)
        super().test_concurrent_no_conflicts()

    def test_concurrent_throughput(self) -> None:
        self._prepare_with_pool(10)
        super().test_concurrent_throughput()

    def test_insert_subscribe(self) -> None:
        """The library's LISTEN/NOTIFY subscription still works on our recorder."""
        self._prepare_with_pool(3)
        super().optional_test_insert_subscribe()

    def test_durability_settings(self) -> None:
        recorder = self.create_recorder()
        with recorder.datastore.transaction(commit=False) as curs:
            curs.execute("SHOW synchronous_commit")
            assert curs.fetchone()["synchronous_commit"] == "on"
