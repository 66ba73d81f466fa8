"""Library errors (sqlite3, psycopg, SQLAlchemy, the eventsourcing recorders, the OS) become
ours here, in one place (STYLE habit 3): the event stores (``lineage.adapters.eventstore``) call
:func:`store_error` around every recorder call, and every SQLAlchemy engine we create
(``lineage.adapters.database``, so the read models, positions and projection runner too)
translates through :func:`translate_engine_errors`.

What a user sees is one ``StoreError`` line that says what happened and where:

- ``database is locked``: another process kept the write lock for the whole lock timeout;
- ``disk full``: the database or the disk is full;
- ``read-only``: the store cannot be written (``ReadOnlyStoreError``);
- ``not a lineage database``: the file is not a SQLite database;
- otherwise ``could not VERB LOCATION: the library's message``.
"""

from __future__ import annotations

import errno
import sqlite3
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import DBAPIError

from lineage.errors import ReadOnlyStoreError, StoreError

# SQLite's primary result codes (the low byte of ``sqlite_errorcode``) and PostgreSQL SQLSTATEs.
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 5, 6, 8
_SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 13, 14, 26
_PG_READ_ONLY, _PG_DISK_FULL = "25006", "53100"
_PG_LOCKED = ("55P03", "57014", "40P01")  # lock not available, statement timeout, deadlock


def store_error(error: BaseException, location: str, verb: str) -> StoreError:
    """Our error for ``error`` (raised by a library while doing ``verb`` on ``location``).
    Our own errors are returned unchanged."""
    if isinstance(error, StoreError):
        return error
    cause = _library_cause(error)
    message = str(cause) or type(cause).__name__
    kind = _kind(cause)
    if kind == "read-only":
        return ReadOnlyStoreError(location, message)
    if kind == "locked":
        return StoreError(f"database is locked: could not {verb} {location}: another process "
                          f"held the lock for the whole lock timeout ({message}); try again "
                          "later, or raise LINEAGE_LOCK_TIMEOUT_S")
    if kind == "full":
        return StoreError(f"disk full: could not {verb} {location} ({message}); free some "
                          "space and try again")
    if kind == "not a database":
        return StoreError(f"not a lineage database: {location} is not a SQLite database")
    if kind == "cannot open":
        return StoreError(f"cannot open {location}: {message} (check that it is a file and "
                          "that its directory exists and is readable)")
    return StoreError(f"could not {verb} {location}: {message}")


def translate_engine_errors(engine: Engine, location: str) -> None:
    """Make ``engine`` raise StoreError (see :func:`store_error`) instead of the driver's
    errors, for statements, commits and new connections alike."""

    @event.listens_for(engine, "handle_error")
    def _translate(context: Any) -> None:
        error = context.sqlalchemy_exception or context.original_exception
        if context.is_disconnect and context.is_pre_ping:
            return  # the pool handles a stale connection itself
        raise store_error(error, location, "use") from context.original_exception


def _library_cause(error: BaseException) -> BaseException:
    """The driver's own error behind wrappers (SQLAlchemy's, the eventsourcing library's)."""
    seen: BaseException | None = error
    for _ in range(5):
        if seen is None:
            break
        if isinstance(seen, (sqlite3.Error, OSError)) or hasattr(seen, "sqlstate"):
            return seen
        seen = seen.orig if isinstance(seen, DBAPIError) else seen.__cause__
    return error


def _kind(error: BaseException) -> str | None:
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        text = str(error).lower()
        if primary == _SQLITE_READONLY or "readonly database" in text:
            return "read-only"
        if primary in (_SQLITE_BUSY, _SQLITE_LOCKED) or "is locked" in text:
            return "locked"
        if primary == _SQLITE_FULL or "disk is full" in text:
            return "full"
        if primary == _SQLITE_NOTADB or "not a database" in text:
            return "not a database"
        if primary == _SQLITE_CANTOPEN or "unable to open" in text:
            return "cannot open"
        return None
    if isinstance(error, OSError):
        return {errno.EROFS: "read-only", errno.ENOSPC: "full"}.get(error.errno or 0)
    sqlstate = getattr(error, "sqlstate", None)
    if sqlstate == _PG_READ_ONLY:
        return "read-only"
    if sqlstate == _PG_DISK_FULL:
        return "full"
    if sqlstate in _PG_LOCKED:
        return "locked"
    return None
