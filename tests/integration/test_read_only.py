"""A read-only store answers every query from Python, and refuses every write at once.

SQLite opened with ``?mode=ro`` (the read-only mount, and the CLI, are in
``tests/e2e/test_cli_errors.py``); PostgreSQL in a database of its own made read-only with
``default_transaction_read_only`` (never the shared database).
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import lineage

WARNING = "is read-only and its read models are behind its events"


def record(url: str, directory: Path, *, query: bool) -> str:
    """A run with steps, a checkpoint and an alias; ``query``: catch the read models up."""
    checkpoint = directory / "ckpt.bin"
    checkpoint.write_bytes(b"weights")
    with lineage.Tracker(url) as tracker:
        run = tracker.start_run("archived")
        for step in range(5):
            run.log_step(step, {"loss": 1.0 / (step + 1)})
        ref = run.save_checkpoint(checkpoint, step=4)
        tracker.move_alias(ref.wait(), "best")
        run.finish()
        tracker.flush()
        if query:
            tracker.runs()
        return str(run.id)


def answers(tracker: Any, run_id: str) -> list[Any]:
    return [[view.id for view in tracker.runs()], tracker.run(run_id).steps,
            tracker.artifacts(), tracker.trace(run_id), tracker.audit(include_steps=True)]


def assert_writes_refused(tracker: Any, run_id: str, directory: Path) -> None:
    handle = tracker.run_handle(run_id)
    (directory / "data.bin").write_bytes(b"data")
    for write in (lambda: tracker.start_run("refused"),
                  lambda: handle.log_step(99, {"loss": 0.1}),
                  lambda: tracker.register_artifact(directory / "data.bin", type="dataset")):
        with pytest.raises(lineage.ReadOnlyStoreError, match="read-only") as raised:
            write()
        assert "\n" not in str(raised.value)
    tracker.flush()  # nothing was queued, so nothing is lost


@pytest.mark.parametrize("read_models", ["current", "behind"])
def test_sqlite_opened_read_only(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                 read_models: str) -> None:
    original, db = tmp_path / "original.db", tmp_path / "archive.db"
    run_id = record(str(original), tmp_path, query=read_models == "current")
    for suffix in ("", "-wal"):  # the archive keeps the read models as they were
        if Path(f"{original}{suffix}").exists():
            shutil.copy(f"{original}{suffix}", f"{db}{suffix}")
    with lineage.Tracker(str(original)) as writable:
        expected = answers(writable, run_id)
    before = db.read_bytes()
    with caplog.at_level(logging.WARNING, logger="lineage"), \
            lineage.Tracker(f"sqlite:///{db}?mode=ro") as tracker:
        assert tracker.store.read_only
        assert answers(tracker, run_id) == expected
        assert answers(tracker, run_id) == expected  # warned once, not per query
        assert_writes_refused(tracker, run_id, tmp_path)
    warned = [r for r in caplog.records if WARNING in r.getMessage()]
    assert len(warned) == (1 if read_models == "behind" else 0)
    assert db.read_bytes() == before


def test_a_read_only_tracker_that_only_writes_warns_of_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "archive.db"
    record(str(db), tmp_path, query=False)
    with caplog.at_level(logging.WARNING, logger="lineage"), \
            lineage.Tracker(f"sqlite:///{db}?mode=ro") as tracker, \
            pytest.raises(lineage.ReadOnlyStoreError):
        tracker.start_run("refused")
    assert not [r for r in caplog.records if WARNING in r.getMessage()]


@pytest.fixture
def read_only_postgres_database() -> Iterator[tuple[str, Any]]:
    """A database of our own on the test server (dropped afterwards): its URL, and an admin
    connection to make it read-only with."""
    base = os.environ.get("LINEAGE_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("LINEAGE_TEST_POSTGRES_URL is not set")
    name = f"lineage_ro_{uuid.uuid4().hex[:12]}"
    libpq = base.split("?")[0].replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(libpq, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield base.split("?")[0].rsplit("/", 1)[0] + f"/{name}", admin
        finally:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.mark.postgres
@pytest.mark.parametrize("read_models", ["current", "behind"])
def test_postgres_database_in_read_only_transactions(
        tmp_path: Path, read_only_postgres_database: tuple[str, Any], read_models: str) -> None:
    url, admin = read_only_postgres_database
    run_id = record(url, tmp_path, query=read_models == "current")
    expected = None
    if read_models == "current":  # (asking a writable tracker would catch them up)
        with lineage.Tracker(url) as writable:
            expected = answers(writable, run_id)
    name = url.rsplit("/", 1)[1]
    admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    with lineage.Tracker(url) as tracker:
        assert tracker.store.read_only
        got = answers(tracker, run_id)
        assert got[0] == [uuid.UUID(run_id)] and got[1] == 5 and len(got[2]) == 1
        if expected is not None:
            assert got == expected
        assert_writes_refused(tracker, run_id, tmp_path)
