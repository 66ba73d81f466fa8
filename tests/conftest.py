"""Shared fixtures.

PostgreSQL: tests marked ``postgres`` use ``LINEAGE_TEST_POSTGRES_URL``. Unset, they are
skipped (a laptop without PostgreSQL); set (as ``.ci/run`` does), an unreachable server is a
failure, never a skip. Each test gets its own schema, dropped afterwards, so the shared server
is never assumed empty and is left as found.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

POSTGRES_ENV = "LINEAGE_TEST_POSTGRES_URL"


def _libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL to a fresh schema on the test server; the schema is dropped after."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"{POSTGRES_ENV} is not set")
    schema = f"lineage_test_{uuid.uuid4().hex[:12]}"
    try:
        conn = psycopg.connect(_libpq_url(base.split("?")[0]), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.fail(f"{POSTGRES_ENV}={base} is set but unreachable: {error}")
    with conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        separator = "&" if "?" in base else "?"
        try:
            yield f"{base}{separator}schema={schema}"
        finally:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    return str(tmp_path / "lineage.db")


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """Every store: the in-memory fake, a SQLite file and PostgreSQL."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return str(tmp_path / "lineage.db")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def durable_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """The real stores only (SQLite file and PostgreSQL)."""
    if request.param == "sqlite":
        return str(tmp_path / "lineage.db")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def make_tracker() -> Iterator[Callable[..., Any]]:
    """Build trackers that are closed after the test even when it fails."""
    import lineage

    made: list[Any] = []

    def make(url: str, **kwargs: Any) -> Any:
        tracker = lineage.Tracker(url, **kwargs)
        made.append(tracker)
        return tracker

    yield make
    for tracker in made:
        with contextlib.suppress(Exception):  # the test already reported what went wrong
            tracker.close(timeout=30)
