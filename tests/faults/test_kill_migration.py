"""Fault injection: ``lineage migrate`` SIGKILLed part-way, then run again.

On each durable store (a SQLite file, a fresh PostgreSQL schema) the legacy store of
``tests/integration/test_migrate.py`` is built once and cloned. The clone is migrated without
interruption. The original is migrated by a child process that is SIGKILLed (no atexit, no
rollback but the database's own) at several points: right after a group committed, a few
milliseconds later (often inside the next group's transaction), and while the read models are
rebuilt. The store is sealed before (issue 14). After each kill a fresh tracker reads every step
back equal (its read models rebuilt, since the migration marked them stale) and the seal still
verifies. Then the migration is run to the end, and the log, the event-id index and the read
models equal the uninterrupted clone's, and the seal verifies.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import text

import lineage
from lineage.adapters.database import Database
from lineage.adapters.signing import generate_key
from lineage.codec.step_block import STEPS_TOPIC
from lineage.codec.steps import STEP_TOPIC
from tests.conftest import POSTGRES_ENV
from tests.faults.test_kill_background import kill_after
from tests.integration.test_migrate import legacy_scenario, log_rows, migrate, snapshot
from tests.integration.test_read_models import dump

pytestmark = pytest.mark.slow
STEP_TOPICS = (STEP_TOPIC, STEPS_TOPIC)

CHILD = textwrap.dedent("""
    import sys
    from lineage.bootstrap import open_step_migration
    with open_step_migration(sys.argv[1]) as migration:
        replace = migration.rewriter.replace
        def replaced(*args, **kwargs):
            replace(*args, **kwargs)
            print("group", flush=True)
        migration.rewriter.replace = replaced
        migration.compact()
        print("compacted", flush=True)
        migration.refresh(lambda at, head: print("projected", at, flush=True))
        print("refreshed", flush=True)
""")
# (lines to read before the kill, then how long to wait): after the first group, inside a later
# group's transaction, mid-compaction, while rebuilding the read models
KILLS = [(1, 0.0), (3, 0.004), (8, 0.001), ("compacted", 0.002)]


def stored(url: str) -> dict[str, Any]:
    """The log's rows (position, stream, version, topic, state) and the event-id index."""
    engine = Database.parse(url).engine()
    try:
        with engine.connect() as conn:
            position = "notification_id" if engine.dialect.name == "postgresql" else "rowid"
            events = conn.execute(text(
                f"SELECT {position}, originator_id, originator_version, topic, state "
                f"FROM stored_events ORDER BY {position}")).all()
            ids = conn.execute(text("SELECT event_id FROM lineage_event_ids ORDER BY 1")).all()
        return {"events": [tuple(row) for row in events], "ids": [row[0] for row in ids]}
    finally:
        engine.dispose()


@contextlib.contextmanager
def clone(url: str, folder: Path) -> Iterator[str]:
    """A copy of the store at ``url`` (its log and event ids), at another URL."""
    if not url.startswith("postgresql"):
        copy = str(folder / "clone.db")
        with contextlib.closing(sqlite3.connect(url)) as source, \
                contextlib.closing(sqlite3.connect(copy)) as target:
            source.backup(target)
        yield copy
        return
    base = os.environ[POSTGRES_ENV]
    schema = f"lineage_test_{uuid.uuid4().hex[:12]}"
    source_schema = url.rsplit("schema=", 1)[1]
    libpq = base.split("?")[0].replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            copy = f"{base}{'&' if '?' in base else '?'}schema={schema}"
            lineage.Tracker(copy).close()  # the tables
            for table, columns in (("stored_events", "notification_id, originator_id, "
                                    "originator_version, topic, state"),
                                   ("lineage_event_ids", "event_id")):
                conn.execute(sql.SQL("INSERT INTO {}.{} ({}) SELECT {} FROM {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(table), sql.SQL(columns),
                    sql.SQL(columns), sql.Identifier(source_schema), sql.Identifier(table)))
            yield copy
        finally:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def kill_migration(url: str, folder: Path, lines: int | str, delay: float) -> list[str]:
    """Run the migration in a child and SIGKILL it after ``lines`` lines (or the line
    ``lines``) and ``delay`` seconds; returns what it printed."""
    script = folder / "migrate_child.py"
    script.write_text(CHILD)
    root = Path(__file__).resolve().parents[2]
    with (folder / "migrate.err").open("a") as stderr:
        process = subprocess.Popen([sys.executable, str(script), url], stdout=subprocess.PIPE,
                                   stderr=stderr, text=True, cwd=root,
                                   env={**os.environ, "PYTHONPATH": str(root)})
        return kill_after(process, lines, delay)


def test_a_killed_migration_resumes_to_the_same_store(durable_url: str, tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    key = tmp_path / "seal.pem"
    public = generate_key(key)
    with lineage.Tracker(durable_url) as tracker:
        runs = legacy_scenario(tracker, tmp_path)["runs"]
        sealed = tracker.seal(key=key).size
        before = snapshot(tracker, runs)
        rows = [row for row in log_rows(tracker) if row[3] not in STEP_TOPICS]
    with clone(durable_url, tmp_path) as copy:
        migrate(copy)
        expected = stored(copy)
        with lineage.Tracker(copy) as tracker:
            tracker.views.runner.catch_up()
            expected_views = dump(tracker.views.engine)
        left = []  # legacy rows left after each kill
        for lines, delay in KILLS:
            seen = kill_migration(durable_url, tmp_path, lines, delay * rng.uniform(0.5, 1.5))
            with lineage.Tracker(durable_url) as tracker:  # nothing lost, read models rebuilt
                assert snapshot(tracker, runs) == before, (seed, lines, seen[-3:])
                verified = tracker.verify(public_key=public)
                assert verified.ok and verified.sealed == sealed, (seed, lines, verified.problems)
                log = log_rows(tracker)
                assert [row for row in log if row[3] not in STEP_TOPICS] == rows
                left.append(sum(1 for row in log if row[3] == STEP_TOPIC))
        print(f"\nmigration killed {len(KILLS)} times (seed {seed}): legacy rows left {left}")
        assert left[0] > left[-2] > 0 == left[-1], (seed, left)  # killed part-way, then later
        done, _, _ = migrate(durable_url)
        assert done.rows_left == 0 and done.steps == 0  # the last child finished compacting
        assert stored(durable_url) == expected, seed
        with lineage.Tracker(durable_url) as tracker:
            tracker.views.runner.catch_up()
            assert dump(tracker.views.engine) == expected_views, seed
            assert snapshot(tracker, runs) == before
            assert tracker.verify(public_key=public).ok
