"""The database a URL names, parsed once, and SQLAlchemy engines on it for the read side.

One URL names both the events (eventsourcing recorders, opened by ``lineage.bootstrap``) and the
read models, positions and anything else we keep in tables (SQLAlchemy Core, the same SQL on
SQLite and PostgreSQL). ``Database.parse`` is the one place a URL is read; the event store and
the engines are both opened from the ``Database`` it returns.

SQLite: WAL, ``busy_timeout`` 30 s, and real transactions (the pysqlite driver's implicit
transactions start late and deadlock-upgrade under a concurrent writer, so we emit ``BEGIN``
ourselves, ``BEGIN IMMEDIATE`` for connections with the ``lineage_write`` execution option).
Read models use ``synchronous=NORMAL``: they are rebuildable, and rows and position still
commit atomically. PostgreSQL: ``?schema=name`` becomes the connection's ``search_path``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from lineage.errors import ConfigurationError

WRITE = {"lineage_write": True}
SCHEMA_LOCK_KEY = 0x6C696E66  # the advisory lock around creating our tables (PostgreSQL)
SQLITE_DRIVERS = ("sqlite", "sqlite+pysqlite")
POSTGRES_DRIVERS = ("postgresql", "postgresql+psycopg", "postgres", "postgresql+psycopg2")
MEMORY, SQLITE, POSTGRES = "memory", "sqlite", "postgresql"


@dataclass(frozen=True)
class Database:
    """Where a store lives: ``kind`` memory, sqlite (``path``, absolute) or postgresql
    (``url``: SQLAlchemy URL on psycopg 3 without the ``schema`` query, and ``schema``)."""

    kind: str
    path: str | None = None
    url: URL | None = None
    schema: str = "public"

    @classmethod
    def parse(cls, text: str) -> Database:
        """Accepted: ``memory://``, ``sqlite:///relative.db``, ``sqlite:////abs/path.db``, a
        bare file path, ``postgresql+psycopg://user[:password]@host[:port]/db[?schema=name]``
        (``postgresql://`` and ``postgres://`` too). Raises ConfigurationError naming the rule."""
        if text == "memory://":
            return cls(MEMORY)
        if "://" not in text:
            return cls(SQLITE, path=_absolute(text))
        try:
            parsed = make_url(text)
        except (ArgumentError, ValueError) as error:
            raise ConfigurationError(
                f"LINEAGE_DATABASE_URL {text!r} is not a database URL ({error}); "
                "use sqlite:///path.db or postgresql+psycopg://user@host:5432/db") from None
        if parsed.drivername in SQLITE_DRIVERS:
            if not parsed.database or parsed.database == ":memory:":
                raise ConfigurationError(
                    "SQLite needs a file (sqlite:///path.db); use memory:// for a throwaway store")
            return cls(SQLITE, path=_absolute(parsed.database))
        if parsed.drivername in POSTGRES_DRIVERS:
            if not parsed.database:
                raise ConfigurationError(f"{text!r} names no database; add /dbname to the URL")
            schema = parsed.query.get("schema", "public")
            return cls(POSTGRES, url=parsed.difference_update_query(["schema"]).set(
                drivername="postgresql+psycopg"),
                schema=schema if isinstance(schema, str) else schema[0])
        raise ConfigurationError(
            f"unsupported database {parsed.drivername!r} in {text!r}; use sqlite or postgresql+psycopg")

    @property
    def display(self) -> str:
        """For people: the file, or the URL without its password."""
        if self.kind == POSTGRES and self.url is not None:
            shown = self.url.render_as_string(hide_password=True)
            return shown if self.schema == "public" else f"{shown}?schema={self.schema}"
        return self.path or "memory://"

    def engine(self) -> Engine:
        """A new SQLAlchemy engine on this database (``memory``: a private in-memory SQLite,
        so one engine per in-memory store: share it rather than calling this twice)."""
        if self.kind == MEMORY:
            engine = create_engine("sqlite://", poolclass=StaticPool,
                                   connect_args={"check_same_thread": False})
            _sqlite_transactions(engine, memory=True)
            return engine
        if self.kind == SQLITE:
            engine = create_engine(f"sqlite:///{self.path}",
                                   connect_args={"check_same_thread": False, "timeout": 30})
            _sqlite_transactions(engine, memory=False)
            return engine
        connect_args: dict[str, Any] = {"connect_timeout": 10,
                                        "options": f"-csearch_path={self.schema}"}
        url: Any = self.url
        return create_engine(url, connect_args=connect_args, pool_pre_ping=True, pool_size=3,
                             max_overflow=4)


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().resolve())


def engine_for(url: str | Database) -> Engine:
    """An engine on the database ``url`` names (see ``Database.parse``)."""
    return (url if isinstance(url, Database) else Database.parse(url)).engine()


@contextmanager
def schema_change(engine: Engine) -> Iterator[Connection]:
    """A transaction for creating tables that other processes may be creating at the same
    moment: SQLite takes the write lock first (``BEGIN IMMEDIATE``: no read-then-write upgrade
    to fail with "database is locked"), PostgreSQL serialises on one advisory lock (concurrent
    ``CREATE TABLE IF NOT EXISTS`` collide on the catalogue)."""
    with engine.connect().execution_options(**WRITE) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        yield conn


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
