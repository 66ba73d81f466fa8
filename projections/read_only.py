"""Read models for a store that can only be read (a read-only file, mount, role or URL).

Normally a query first catches the read models up, writing into the store's own database
(DESIGN §5). A read-only store cannot take those writes, so:

- when, at the first query, the read models in its database are current (their layout is
  this version's and every one has reached the head of the log), queries read them as they
  are: the answers are those of that moment;
- when they are behind (or absent), they are built from the events in a private in-memory
  SQLite database for this process, with one warning on the ``lineage`` logger (stderr when
  logging is not configured): the answers are correct, only slower to get on a large store.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from eventsourcing.persistence import Mapper
from sqlalchemy import Connection, Engine, inspect

from lineage.adapters.database import MEMORY, Database
from lineage.adapters.positions import positions as positions_table
from lineage.adapters.positions import read_position
from lineage.ports import EventStore
from lineage.projections.decoding import Projection
from lineage.projections.queries import ReadModels
from lineage.projections.runner import SCHEMA_KEY, ProjectionRunner
from lineage.projections.tables import SCHEMA_VERSION

log = logging.getLogger("lineage")


class ReadOnlyReadModels(ReadModels):
    """ReadModels for the read-only ``store`` whose database ``engine`` opens (read-only). The
    choice between its own read models and ones built in memory is made at the first query
    (or the first use of ``runner``), so a tracker that is only asked to write warns of
    nothing. Thread-safe like ReadModels."""

    engine: Engine

    def __init__(self, store: EventStore, engine: Engine, mapper: Mapper,
                 projections: Sequence[Projection]) -> None:
        super().__init__(self._make_runner, engine, catch_up=False)
        self._store, self._mapper, self._projections = store, mapper, list(projections)
        self._archive_engine = engine
        self._choice = threading.Lock()
        self._chosen = False

    @property
    def runner(self) -> ProjectionRunner:
        self._choose()
        return super().runner

    def catches_up(self) -> bool:
        self._choose()
        return self.auto_catch_up

    def close(self) -> None:
        super().close()
        self._archive_engine.dispose()

    def _conn(self) -> Connection:
        self._choose()
        return super()._conn()

    def _choose(self) -> None:
        with self._choice:
            if self._chosen:
                return
            if not is_current(self._store, self.engine, self._projections):
                log.warning("lineage: warning: %s is read-only and its read models are behind "
                            "its events: built them in memory for this process",
                            self._store.location)
                self.engine = Database(MEMORY).engine()
                self.auto_catch_up = True
            self._chosen = True

    def _make_runner(self) -> ProjectionRunner:
        return ProjectionRunner(self._store, self.engine, self._mapper, self._projections)


def is_current(store: EventStore, engine: Engine, projections: Sequence[Projection]) -> bool:
    """Whether the read models in ``engine``'s database answer for every event of ``store``."""
    head = store.max_position()
    with engine.connect() as conn:
        if not inspect(conn).has_table(positions_table.name):
            return False
        if read_position(conn, SCHEMA_KEY) != SCHEMA_VERSION:
            return False
        return all(read_position(conn, projection.name) >= head for projection in projections)
