"""SQLAlchemy engines for the read side, on the same database as the event store.

One URL names both: the events (eventsourcing recorders) and the read models, positions and
anything else we keep in tables (SQLAlchemy Core, the same SQL on SQLite and PostgreSQL).

SQLite: WAL, ``busy_timeout`` 30 s, and real transactions (the pysqlite driver's implicit
transactions start late and deadlock-upgrade under a concurrent writer, so we emit ``BEGIN``
ourselves, ``BEGIN IMMEDIATE`` for connections with the ``lineage_write`` execution option).
Read models use ``synchronous=NORMAL``: they are rebuildable, and rows and position still
commit atomically. PostgreSQL: ``?schema=name`` becomes the connection's ``search_path``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

WRITE = {"lineage_write": True}


def engine_for(url: str) -> Engine:
    """An engine for ``url`` (a SQLAlchemy URL, a bare SQLite path or ``memory://``)."""
    if url == "memory://":
        engine = create_engine("sqlite://", poolclass=StaticPool,
                               connect_args={"check_same_thread": False})
        _sqlite_transactions(engine, memory=True)
        return engine
    if "://" not in url:
        url = f"sqlite:///{url}"
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})
        _sqlite_transactions(engine, memory=False)
        return engine
    schema = parsed.query.get("schema")
    parsed = parsed.difference_update_query(["schema"]).set(drivername="postgresql+psycopg")
    connect_args: dict[str, Any] = {"connect_timeout": 10}
    if schema:
        connect_args["options"] = f"-csearch_path={schema if isinstance(schema, str) else schema[0]}"
    return create_engine(parsed, connect_args=connect_args, pool_pre_ping=True, pool_size=3,
                         max_overflow=4)


def _sqlite_transactions(engine: Engine, *, memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see module doc)
        cursor = dbapi_connection.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get("lineage_write")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
