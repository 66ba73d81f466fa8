"""Fixtures of the server tests: a real ``lineage serve`` on loopback over a SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.harness import Server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(str(tmp_path / "server.db"), tmp_path / "serve.log").start()
    try:
        yield running
    finally:
        running.kill()


@pytest.fixture
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "spool"
    monkeypatch.setenv("LINEAGE_SPOOL_DIR", str(folder))
    return folder
