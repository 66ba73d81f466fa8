"""The remote tracker's durable spool: a SQLite file of wire items (``lineage.remote.wire``)
not yet acknowledged by the server, oldest first.

One file per tracker process, held with an exclusive ``flock`` while open; a file whose holder
is gone (the process ended or was killed) is an *orphan*: the next tracker for the same server
(or ``lineage sync``) sends its items, then deletes it.

Durability: items are committed in WAL mode with ``synchronous=FULL`` (the default): each
``append`` is fsynced before it returns, so what the shipper has spooled, and so what a
``flush()`` reported as kept while the server was away, survives a power loss or an OS crash,
not only the process being killed. ``synchronous="NORMAL"`` (fsync at checkpoints only) may
lose the last appends on a power loss, never on a kill of the process; bench/server.py
measures the difference.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

from lineage.remote.wire import step_count

SUFFIX = ".spool"
SYNCHRONOUS = ("FULL", "NORMAL")


class SqliteSpool:
    """One spool file. Thread-safe (one connection behind a lock)."""

    def __init__(self, path: Path, *, server: str, tenant: str,
                 synchronous: str = "FULL") -> None:
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS}, got {synchronous!r}")
        self.path = path
        self._lock_file = open(str(path) + ".lock", "a+")  # noqa: SIM115 (held while open)
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            raise
        self._lock = threading.Lock()  # one connection, used by the spooler and the sender
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("CREATE TABLE IF NOT EXISTS items (seq INTEGER PRIMARY KEY, "
                         "body TEXT NOT NULL, steps INTEGER NOT NULL, item_id TEXT NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('server', ?), ('tenant', ?), "
                         "('id_base', ?)", (server, tenant, str(uuid.uuid4().int)))
        self.meta = dict(self._db.execute("SELECT key, value FROM meta"))

    @classmethod
    def new(cls, directory: Path, *, server: str, tenant: str,
            synchronous: str = "FULL") -> SqliteSpool:
        directory.mkdir(parents=True, exist_ok=True)
        return cls(directory / f"{os.getpid()}-{uuid.uuid4().hex[:12]}{SUFFIX}", server=server,
                   tenant=tenant, synchronous=synchronous)

    def append(self, items: list[dict[str, Any]]) -> None:
        """Store ``items`` durably, in one transaction."""
        rows = [(json.dumps(item, separators=(",", ":")), step_count(item), item.get("id", ""))
                for item in items]
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT INTO items (body, steps, item_id) VALUES (?, ?, ?)",
                                 rows)

    def head(self, max_items: int, max_steps: int) -> list[tuple[int, str, int, str]]:
        """The oldest items (seq, JSON text, steps, call id or ""): at most ``max_items``, and
        about ``max_steps`` steps."""
        found: list[tuple[int, str, int, str]] = []
        steps = 0
        # rows are read one by one, so none past the step budget is fetched
        with self._lock, closing(self._db.execute(
                "SELECT seq, body, steps, item_id FROM items ORDER BY seq LIMIT ?",
                (max_items,))) as rows:
            for seq, body, count, item_id in rows:
                if found and steps + count > max_steps:
                    break
                found.append((seq, body, count, item_id))
                steps += count
        return found

    def delete_through(self, seq: int) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM items WHERE seq <= ?", (seq,))

    def last_seq(self) -> int | None:
        """The newest item's number (None when the spool is empty)."""
        with self._lock:
            found = self._db.execute("SELECT max(seq) FROM items").fetchone()[0]
        return None if found is None else int(found)

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM items").fetchone()[0])

    def close(self, *, remove_if_empty: bool = True) -> None:
        empty = self.count() == 0
        self._db.close()
        if empty and remove_if_empty:
            for suffix in ("", "-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            Path(str(self.path) + ".lock").unlink(missing_ok=True)
        self._lock_file.close()


def orphans(directory: Path, *, server: str | None = None,
            tenant: str | None = None) -> list[SqliteSpool]:
    """The spools in ``directory`` no process holds (for ``server`` and ``tenant``, when
    given: another tenant's spool is never sent with this token), opened and held by this
    one; oldest file first."""
    found: list[SqliteSpool] = []
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime):
        try:
            spool = SqliteSpool(path, server="", tenant="")
        except (OSError, sqlite3.Error):
            continue  # held by a live tracker, or unreadable: left alone
        if (server is not None and spool.meta.get("server") != server) or (
                tenant is not None and spool.meta.get("tenant") != tenant):
            spool.close(remove_if_empty=False)
            continue
        found.append(spool)
    return found
