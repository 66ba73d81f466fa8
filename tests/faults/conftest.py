"""Fixtures of the fault-injection suite: a real small filesystem to fill or make read-only,
and the figures printed at the end of the session (cycles, faults, events lost, holes; the
SIGKILL test's per store)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.helpers import FIGURES, KILL_FIGURES, MAX_BLOCK_S


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for store, seed, by_phase in KILL_FIGURES:  # one line per store: the figures never mix
        phases = "; ".join(f"{phase}: " + ", ".join(f"{name} {count}" for name, count in
                                                     counts.items())
                           for phase, counts in by_phase.items())
        terminalreporter.write_line(f"SIGKILL faults on {store} (seed {seed}): {phases}")
    if not FIGURES:
        return
    figures = ", ".join(f"{name} {count}" for name, count in sorted(FIGURES.items()))
    terminalreporter.write_line(f"store faults: {figures}")
    if MAX_BLOCK_S:
        longest = ", ".join(f"{name} {took:.2f}s" for name, took in sorted(MAX_BLOCK_S.items()))
        terminalreporter.write_line(f"store faults: longest log_step call: {longest}")


class SmallFilesystem:
    """A 3 MiB tmpfs at ``path`` (``real``), or, where mounting is not permitted, a plain
    directory whose SQLite store gets the same errors injected at the adapter (the genuine
    sqlite3 exceptions, raised where the library would raise them)."""

    def __init__(self, path: Path, real: bool) -> None:
        self.path = path
        self.real = real
        self.filler = path / "filler"
        self.full = False
        self.read_only_error: BaseException | None = None

    def fill(self) -> None:
        """Use up every free byte (a real tmpfs) or make appends fail with SQLITE_FULL."""
        FIGURES["faults_injected"] += 1
        self.full = True
        if not self.real:
            return
        with open(self.filler, "ab", buffering=0) as out:
            for size in (65536, 512):  # big chunks, then the last partial one
                with contextlib.suppress(OSError):
                    while True:
                        out.write(b"\0" * size)

    def free(self) -> None:
        self.full = False
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()

    def read_only(self) -> str:
        """Make writes fail as on a read-only filesystem; returns how it was done.

        ``mount -o remount,ro`` is tried first, but Linux refuses it (EBUSY) while any file on
        the mount is open for writing, which an open SQLite database always is; then the
        store gets SQLite's own SQLITE_READONLY error injected."""
        FIGURES["faults_injected"] += 1
        if self.real:
            done = subprocess.run(["mount", "-o", "remount,ro", str(self.path)],
                                  capture_output=True, text=True)
            if done.returncode == 0:
                FIGURES["read_only_remounted"] += 1
                return "remounted read-only"
        FIGURES["read_only_injected"] += 1
        self.read_only_error = genuine_sqlite_error(self.path.parent, "readonly")
        return "SQLITE_READONLY injected (remount refused: files open for writing)"

    def writable(self) -> None:
        self.read_only_error = None
        if self.real:
            subprocess.run(["mount", "-o", "remount,rw", str(self.path)], capture_output=True)

    def attach(self, store: Any) -> None:
        """Route ``store``'s appends through the injected errors (fallback modes only)."""
        original = store.recorder.insert_events

        def insert_events(*args: Any, **kwargs: Any) -> Any:
            if self.read_only_error is not None:
                raise_as_library(self.read_only_error)
            if self.full and not self.real:
                raise_as_library(genuine_sqlite_error(self.path.parent, "full"))
            return original(*args, **kwargs)

        store.recorder.insert_events = insert_events


def genuine_sqlite_error(where: Path, kind: str) -> sqlite3.Error:
    """A real sqlite3 error of ``kind`` ("full" or "readonly"), made by SQLite itself."""
    path = where / f"probe-{kind}-{os.getpid()}.db"
    with contextlib.closing(sqlite3.connect(path)) as setup:
        setup.execute("CREATE TABLE IF NOT EXISTS t (x BLOB)")
        setup.commit()
    uri = f"file:{path}?mode=ro" if kind == "readonly" else str(path)
    with contextlib.closing(sqlite3.connect(uri, uri=kind == "readonly")) as conn:
        if kind == "full":
            conn.execute("PRAGMA max_page_count = 2")
        try:
            conn.execute("INSERT INTO t VALUES (zeroblob(100000))")
        except sqlite3.Error as error:
            return error
    raise AssertionError(f"SQLite did not fail with {kind}")


def raise_as_library(error: BaseException) -> None:
    """Raise ``error`` the way the eventsourcing library does (wrapped, with its cause)."""
    from eventsourcing.persistence import OperationalError

    raise OperationalError(error) from error


@pytest.fixture(params=["tmpfs", "injected"])
def small_fs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SmallFilesystem]:
    """A real 3 MiB tmpfs, and the injected fallback (what runs where mounting is not
    permitted: then the tmpfs case runs the fallback too, counted apart in the figures, so it
    is never mistaken for a real one and never skipped)."""
    path = tmp_path / "small"
    path.mkdir()
    real = False
    if request.param == "tmpfs":
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(path)],
                              capture_output=True, text=True)
        real = done.returncode == 0
    FIGURES["filesystem_tmpfs" if real else "filesystem_injected"] += 1
    fs = SmallFilesystem(path, real)
    try:
        yield fs
    finally:
        if real:
            fs.writable()
            for attempt in range(50):
                if subprocess.run(["umount", str(path)], capture_output=True).returncode == 0:
                    break
                if attempt == 49:
                    subprocess.run(["umount", "-l", str(path)], capture_output=True)
                time.sleep(0.1)  # the store may still be closing its files
