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

Read-only (``Database.read_only``: a ``?mode=ro`` URL, or a store that found it cannot write):
SQLite connects with the URI ``mode=ro`` (and ``immutable=1`` where no ``-shm`` file can be
created, such as a read-only mount), PostgreSQL with ``default_transaction_read_only``. Every
engine raises our StoreError instead of the driver's errors (``lineage.adapters.errors``).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import URL, Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import QueuePool, StaticPool

from lineage.adapters.errors import translate_engine_errors
from lineage.errors import ConfigurationError, ValidationError

WRITE = {"lineage_write": True}
SCHEMA_LOCK_KEY = 0x6C696E66  # the advisory lock around creating our tables (PostgreSQL)
SQLITE_DRIVERS = ("sqlite", "sqlite+pysqlite")
POSTGRES_DRIVERS = ("postgresql", "postgresql+psycopg", "postgres", "postgresql+psycopg2")
MEMORY, SQLITE, POSTGRES = "memory", "sqlite", "postgresql"


@dataclass(frozen=True)
class Database:
    """Where a store lives: ``kind`` memory, sqlite (``path``, absolute) or postgresql
    (``url``: SQLAlchemy URL on psycopg 3 without the ``schema`` query, and ``schema``);
    ``read_only``: connect so that nothing can be written; ``lock_timeout_s``: how long SQLite
    waits for another process's lock before "database is locked"."""

    kind: str
    path: str | None = None
    url: URL | None = None
    schema: str = "public"
    read_only: bool = False
    lock_timeout_s: float = 30.0

    @classmethod
    def parse(cls, text: str) -> Database:
        """Accepted: ``memory://``, ``sqlite:///relative.db``, ``sqlite:////abs/path.db``, a
        bare file path, ``postgresql+psycopg://user[:password]@host[:port]/db[?schema=name]``
        (``postgresql://`` and ``postgres://`` too); ``?mode=ro`` on a sqlite URL opens it
        read-only. Raises ConfigurationError naming the rule, ValidationError when ``text`` is
        not a string or path."""
        if not isinstance(text, str):
            raise ValidationError("database_url", "must be a URL or a file path (a string), "
                                  f"got {type(text).__name__}", text)
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
            read_only = parsed.query.get("mode") == "ro"
            return cls(SQLITE, path=_absolute(parsed.database), read_only=read_only)
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
            engine = self._sqlite_engine()
            _sqlite_transactions(engine, memory=False, read_only=self.read_only,
                                 timeout_s=self.lock_timeout_s)
        else:
            options = f"-csearch_path={self.schema}"
            if self.read_only:
                options += " -cdefault_transaction_read_only=on"
            url: Any = self.url
            engine = create_engine(url, connect_args={"connect_timeout": 10, "options": options},
                                   pool_pre_ping=True, pool_size=3, max_overflow=4)
        translate_engine_errors(engine, self.display)
        return engine

    def read_only_copy(self) -> Database:
        """This database, opened read-only."""
        return replace(self, read_only=True)

    def sqlite_uri(self) -> str:
        """The SQLite URI to open ``path`` read-only. ``immutable=1`` where SQLite could not
        create the ``-shm`` file it needs to read a WAL database (a read-only directory or
        mount): then no other process can be writing there either."""
        path = str(self.path)
        uri = f"file:{quote(path)}?mode=ro"
        directory = os.path.dirname(path) or "."
        if not os.path.exists(f"{path}-shm") and not os.access(directory, os.W_OK):
            uri += "&immutable=1"
        return uri

    def _sqlite_engine(self) -> Engine:
        timeout = self.lock_timeout_s
        if not self.read_only:
            return create_engine(f"sqlite:///{self.path}",
                                 connect_args={"check_same_thread": False, "timeout": timeout})
        uri = self.sqlite_uri()
        return create_engine("sqlite://", poolclass=QueuePool, creator=lambda: sqlite3.connect(
            uri, uri=True, check_same_thread=False, timeout=timeout))


def _absolute(path: str) -> str:
    try:
        return str(Path(path).expanduser().resolve())
    except (RuntimeError, OSError) as error:  # a symlink loop (RuntimeError before 3.13)
        raise ValidationError("database_url", f"cannot resolve the path {path!r} ({error})",
                              path) from None


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


def _sqlite_transactions(engine: Engine, *, memory: bool, read_only: bool = False,
                         timeout_s: float = 30.0) -> None:
    timeout_ms = int(timeout_s * 1000)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see module doc)
        cursor = dbapi_connection.cursor()
        if read_only:
            cursor.execute("PRAGMA query_only=ON")
        elif not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={timeout_ms}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get("lineage_write")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
