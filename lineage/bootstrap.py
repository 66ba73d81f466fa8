"""The composition root: turns a database URL into an EventStore adapter.

The only module of ``lineage`` (with the CLI) that imports adapters and SQLAlchemy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from lineage.errors import ConfigurationError, StoreError
from lineage.ports import EventStore, PositionStore

SQLITE_DRIVERS = ("sqlite", "sqlite+pysqlite")
POSTGRES_DRIVERS = ("postgresql", "postgresql+psycopg", "postgres", "postgresql+psycopg2")


def open_store(url: str, *, create: bool = True) -> EventStore:
    """Open (creating tables if needed) the event store a URL names.

    Accepted: ``sqlite:///relative.db``, ``sqlite:////abs/path.db``, a bare file path (SQLite),
    ``postgresql+psycopg://user[:password]@host[:port]/db[?schema=name]``, ``memory://``.
    With ``create=False`` a SQLite file that does not exist is an error (read-only commands
    must not leave an empty database behind a mistyped path).
    """
    if url == "memory://":
        from lineage.adapters.memory import MemoryEventStore

        return MemoryEventStore()
    if "://" not in url:
        return _sqlite(url, create)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as error:
        raise ConfigurationError(
            f"LINEAGE_DATABASE_URL {url!r} is not a database URL ({error}); "
            "use sqlite:///path.db or postgresql+psycopg://user@host:5432/db"
        ) from None
    if parsed.drivername in SQLITE_DRIVERS:
        if not parsed.database or parsed.database == ":memory:":
            raise ConfigurationError(
                "SQLite needs a file (sqlite:///path.db); use memory:// for a throwaway store"
            )
        return _sqlite(parsed.database, create)
    if parsed.drivername in POSTGRES_DRIVERS:
        from lineage.adapters.eventstore import PostgresEventStore

        if not parsed.database:
            raise ConfigurationError(f"{url!r} names no database; add /dbname to the URL")
        schema = parsed.query.get("schema", "public")
        return PostgresEventStore(
            dbname=parsed.database,
            host=parsed.host or "127.0.0.1",
            port=parsed.port or 5432,
            user=parsed.username or "postgres",
            password=parsed.password or "",
            schema=schema if isinstance(schema, str) else schema[0],
            display=parsed.render_as_string(hide_password=True),
        )
    raise ConfigurationError(
        f"unsupported database {parsed.drivername!r} in {url!r}; use sqlite or postgresql+psycopg"
    )


def _sqlite(path: str, create: bool) -> EventStore:
    from lineage.adapters.eventstore import SQLiteEventStore

    file = Path(path).expanduser()
    if not create and not file.exists():
        raise StoreError(f"no lineage database at {file} (set --db or LINEAGE_DATABASE_URL)")
    if not file.parent.exists():
        raise StoreError(f"cannot create {file}: directory {file.parent} does not exist")
    return SQLiteEventStore(str(file.resolve()))


def open_positions(url: str) -> PositionStore:
    """The tracked-position table in the database ``url`` names (see ``open_store``)."""
    from lineage.adapters.positions import SqlAlchemyPositionStore
    from lineage.adapters.sql import engine_for

    return SqlAlchemyPositionStore(engine_for(url))


def open_read_models(url: str, store: EventStore, mapper: Any, *, catch_up: bool = True) -> Any:
    """The read models (tables created if needed) in the database ``url`` names, fed from
    ``store``: a ``lineage.projections.queries.ReadModels``."""
    from lineage.adapters.sql import engine_for
    from lineage.projections import ProjectionRunner, all_projections
    from lineage.projections.queries import ReadModels

    engine = engine_for(url)
    runner = ProjectionRunner(store, engine, mapper, all_projections())
    return ReadModels(runner, engine, catch_up=catch_up)
