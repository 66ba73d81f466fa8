"""Running projections: follow the notification log, exactly once, resumably (DESIGN §5).

Each projection has its own tracked position (``lineage_positions``). A batch of notifications
is decoded once; each projection whose position is behind applies the part it has not seen,
and its rows and its new position are written in ONE transaction. Killed at any moment, a
projection resumes from its last committed position: no duplicate, no gap. Notification ids
may have gaps (PostgreSQL); the runner only ever asks for "ids after the last one I saw".

An event a read model cannot apply is rolled back for that read model alone, recorded in
``lineage_quarantine`` with the reason, and skipped (``lineage.projections.quarantine``): the
batch is applied normally, and redone event by event in savepoints only when it fails.

Only one runner may project into a database at a time: ``ProjectionLock`` guards it (a
PostgreSQL advisory lock, a file lock next to a SQLite file).
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import Mapper
from sqlalchemy import Connection, Engine, text

import lineage.projections.quarantine as quarantine
from lineage.adapters.database import WRITE, schema_change
from lineage.adapters.positions import metadata as positions_metadata
from lineage.adapters.positions import read_position, write_position
from lineage.errors import LineageError, ProjectionBusyError
from lineage.ports import EventStore
from lineage.projections.batching import BATCH, BATCH_STEPS, batches
from lineage.projections.decoding import Projection
from lineage.projections.quarantine import Failure, apply_guarded, decode_each, is_systemic
from lineage.projections.tables import SCHEMA_VERSION
from lineage.projections.tables import metadata as read_models

SCHEMA_KEY = "__read_model_schema__"
ALL_NAMES = ("traces", "registry", "edges", "audit", "step_metrics")
log = logging.getLogger("lineage.projections")


@dataclass(frozen=True)
class Status:
    name: str
    position: int
    head: int
    quarantined: int = 0  # events this read model skipped (``ProjectionRunner.quarantined``)

    @property
    def lag(self) -> int:
        return max(self.head - self.position, 0)


Progress = Callable[[int, int], None]  # (position reached, head)


class ProjectionRunner:
    def __init__(self, store: EventStore, engine: Engine, mapper: Mapper,
                 projections: Sequence[Projection], *, batch_size: int = BATCH,
                 batch_steps: int = BATCH_STEPS, lock: ProjectionLock | None = None) -> None:
        """``batch_size`` notifications and about ``batch_steps`` steps at most per batch
        (``lineage.projections.batching``)."""
        self.store = store
        self.engine = engine
        self.mapper = mapper
        self.projections = list(projections)
        self.batch_size = batch_size
        self.batch_steps = batch_steps
        self.lock = lock or ProjectionLock.for_engine(engine)
        self._thread_lock = threading.Lock()
        with schema_change(self.engine) as conn:
            positions_metadata.create_all(conn)
        self._upgrade_if_needed()
        with schema_change(self.engine) as conn:
            read_models.create_all(conn, tables=[quarantine.quarantine])
            for projection in self.projections:
                projection.tables[0].metadata.create_all(conn, tables=list(projection.tables))

    def status(self) -> list[Status]:
        head = self.store.max_position()
        with self.engine.connect() as conn:
            counts = quarantine.counts(conn)
            return [Status(p.name, read_position(conn, p.name), head, counts.get(p.name, 0))
                    for p in self.projections]

    def quarantined(self, names: Sequence[str] = (), after: tuple[str, int] | None = None,
                    limit: int | None = None) -> list[dict[str, Any]]:
        """The events the read models (``names``; all when empty) skipped because applying
        them failed, by read model and position: dicts with read_model, position, event_id,
        topic, originator_id, originator_version, reason, quarantined_at (a page:
        ``quarantine.listed``). As of now: no catch-up first."""
        with self.engine.connect() as conn:
            return quarantine.listed(conn, names, after, limit)

    def catch_up(self, progress: Progress | None = None, *, wait_s: float = 10.0) -> int:
        """Project everything stored so far; returns how many notifications were applied.

        When another process holds the projection lock, wait (up to ``wait_s``) for it to
        reach the head instead, so a query right after a write still sees it.
        """
        with self._thread_lock:
            if not self.lock.acquire():
                self._wait_for_others(wait_s)
                return 0
            try:
                return self._catch_up(progress)
            finally:
                self.lock.release()

    def rebuild(self, names: Sequence[str] = (), progress: Progress | None = None) -> int:
        """Drop and re-project the named read models (all when none) from position 0."""
        chosen = [p for p in self.projections if not names or p.name in names]
        unknown = set(names) - {p.name for p in self.projections}
        if unknown:
            raise LineageError(f"unknown read model(s): {', '.join(sorted(unknown))}; "
                               f"known: {', '.join(p.name for p in self.projections)}")
        with self._thread_lock:
            if not self.lock.acquire():
                raise ProjectionBusyError("projections are running in another process; stop it first")
            try:
                for projection in chosen:
                    self._reset(projection)
                return self._catch_up(progress)
            finally:
                self.lock.release()

    def follow(self, stop: threading.Event, *, poll_s: float = 0.5,
               on_batch: Callable[[int], None] | None = None) -> None:
        """Project continuously until ``stop`` is set (polling; woken by NOTIFY on PostgreSQL)."""
        with self._thread_lock:
            if not self.lock.acquire():
                raise ProjectionBusyError("projections are already running against this database")
            try:
                with self._wakeups(poll_s) as wait:
                    while not stop.is_set():
                        applied = self._catch_up(None)
                        if on_batch is not None:
                            on_batch(applied)
                        if not applied:
                            wait()
            finally:
                self.lock.release()

    # -- the loop ------------------------------------------------------------------------------

    def _catch_up(self, progress: Progress | None) -> int:
        with self.engine.connect() as conn:
            positions = {p.name: read_position(conn, p.name) for p in self.projections}
        head = self.store.max_position()
        start = min(positions.values(), default=head) + 1
        applied = 0
        for notifications in batches(self.store, start, head, max_notifications=self.batch_size,
                                     max_steps=self.batch_steps):
            last = notifications[-1].id
            self._apply(notifications, positions, last)
            for name in positions:
                positions[name] = max(positions[name], last)
            applied += len(notifications)
            if progress is not None:
                progress(last, head)
        return applied

    def _apply(self, notifications: Sequence[Any], positions: dict[str, int], last: int) -> None:
        """One batch into every read model behind it, rows and positions in one transaction.
        The fast path applies it whole; when that fails, the batch is redone with each read
        model in savepoints, quarantining the events that fail (module doc)."""
        items, undecodable = decode_each(notifications, self.mapper)
        try:
            with self._writing() as conn:
                skipped = 0
                for projection in self.projections:
                    after = positions[projection.name]
                    unseen = [item for item in items if item.position > after]
                    if unseen:
                        projection.apply(unseen, conn)
                    skipped += self._advance(conn, projection.name, after, last,
                                             undecodable, notifications)
            self._warn(skipped, notifications)
            return
        except Exception as error:  # one bad event must not stop every read model: redo
            if is_systemic(error):
                raise
        with self._writing() as conn:
            skipped = 0
            for projection in self.projections:
                after = positions[projection.name]
                failed = apply_guarded(projection, [i for i in items if i.position > after], conn)
                skipped += self._advance(conn, projection.name, after, last,
                                         sorted(undecodable + failed, key=lambda f: f.position),
                                         notifications)
        self._warn(skipped, notifications)

    def _advance(self, conn: Connection, name: str, after: int, last: int,
                 failures: Sequence[Failure], notifications: Sequence[Any]) -> int:
        """Record the read model's quarantined events past ``after`` and its new position;
        returns how many it quarantined."""
        mine = [failure for failure in failures if failure.position > after]
        if mine:
            quarantine.record(conn, name, mine, {note.id: note for note in notifications})
        write_position(conn, name, max(last, after))
        return len(mine)

    @staticmethod
    def _warn(skipped: int, notifications: Sequence[Any]) -> None:
        if skipped:  # once per batch: each is quarantined once, and listed by project status
            log.warning("lineage: warning: read models skipped events they cannot apply (%d in "
                        "all) in positions %d-%d; 'lineage project status' lists them", skipped,
                        notifications[0].id, notifications[-1].id)

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            yield conn

    def _upgrade_if_needed(self) -> None:
        """Read models written by another table layout are dropped and rebuilt from the events
        (they are derived data); the layout version is kept as a pseudo-position."""
        with self.engine.connect() as conn:
            version = read_position(conn, SCHEMA_KEY)
        if version == SCHEMA_VERSION or not self.lock.acquire():
            return
        try:
            with schema_change(self.engine) as conn:
                read_models.drop_all(conn)
                read_models.create_all(conn)
                for name in {p.name for p in self.projections} | set(ALL_NAMES):
                    write_position(conn, name, 0)
                write_position(conn, SCHEMA_KEY, SCHEMA_VERSION)
        finally:
            self.lock.release()

    def _reset(self, projection: Projection) -> None:
        # One transaction: a rebuild killed half-way leaves the old rows and position, never
        # empty tables with a position at the head.
        tables = list(projection.tables)
        metadata = tables[0].metadata
        with self._writing() as conn:
            metadata.drop_all(conn, tables=tables)
            metadata.create_all(conn, tables=tables)
            quarantine.clear(conn, projection.name)
            write_position(conn, projection.name, 0)

    def _wait_for_others(self, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if all(status.lag == 0 for status in self.status()):
                return
            time.sleep(0.05)

    @contextmanager
    def _wakeups(self, poll_s: float) -> Iterator[Callable[[], None]]:
        """A ``wait()`` that returns on a NOTIFY from the event store (PostgreSQL) or after
        ``poll_s`` seconds, whichever comes first."""
        if self.engine.dialect.name != "postgresql":
            yield lambda: time.sleep(poll_s)
            return
        raw = self.engine.raw_connection()
        driver: Any = raw.driver_connection
        raw.detach()  # autocommit and LISTENing: closed at the end, never back in the pool
        try:
            driver.autocommit = True
            driver.execute("LISTEN stored_events")

            def wait() -> None:
                for _ in driver.notifies(timeout=poll_s, stop_after=1):
                    pass

            yield wait
        finally:
            raw.close()


class ProjectionLock:
    """At most one projection runner per database (across processes)."""

    @staticmethod
    def for_engine(engine: Engine) -> ProjectionLock:
        if engine.dialect.name == "postgresql":
            return PostgresAdvisoryLock(engine)
        database = engine.url.database
        if not database or database == ":memory:":
            return ProjectionLock()
        return FileLock(f"{database}.projections.lock")

    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass


class HeldLock(ProjectionLock):
    """The lock of a caller that already holds this database's projection lock (``lineage
    migrate`` holds it from before it rewrites the log until the read models are rebuilt)."""


class FileLock(ProjectionLock):
    """A lock file next to the SQLite database, locked by the OS (see ``lock_file``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not lock_file(fd, True):
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            lock_file(self._fd, False)
            os.close(self._fd)
            self._fd = None


def lock_file(fd: int, lock: bool) -> bool:
    """Lock (without blocking) or unlock the open file ``fd``; False when another open file
    holds the lock. The OS drops it when the holder exits, even on a crash. ``fcntl.flock``
    where there is fcntl (POSIX); else ``msvcrt.locking`` of the first byte (Windows)."""
    try:
        import fcntl
    except ImportError:
        msvcrt: Any = importlib.import_module("msvcrt")
        os.lseek(fd, 0, os.SEEK_SET)  # msvcrt locks bytes from the current position
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK if lock else msvcrt.LK_UNLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB if lock else fcntl.LOCK_UN)
    except BlockingIOError:
        return False
    return True


class PostgresAdvisoryLock(ProjectionLock):
    KEY = 0x6C696E65  # "line"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None

    def acquire(self) -> bool:
        conn = self.engine.connect()
        schema = conn.execute(text("SELECT current_schema()")).scalar()
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k, hashtext(:s))"),
                           {"k": self.KEY, "s": str(schema)}).scalar()
        conn.commit()
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def release(self) -> None:
        if self._conn is not None:
            self._conn.execute(text("SELECT pg_advisory_unlock_all()"))
            self._conn.commit()
            self._conn.close()
            self._conn = None
