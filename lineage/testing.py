"""Helpers for tests of code that records with lineage: a fake clock, sequential ids and an
in-memory tracker. Deterministic: the same calls give the same events, ids and times."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from lineage.api import Tracker


class FakeClock:
    """A clock that only moves when told to (``advance``); thread-safe."""

    def __init__(self, start: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float = 1.0) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now


class SequentialIds:
    """UUIDs 00000000-0000-4000-8000-000000000001, ...2, ... (valid version-4 layout)."""

    def __init__(self, prefix: int = 0) -> None:
        self._next = 0
        self._prefix = prefix
        self._lock = threading.Lock()

    def __call__(self) -> UUID:
        with self._lock:
            self._next += 1
            return UUID(int=(self._prefix << 96) | (0x4000 << 64) | (0x8000 << 48) | self._next)


def memory_tracker(*, clock: FakeClock | None = None, ids: SequentialIds | None = None,
                   **settings: Any) -> Tracker:
    """A Tracker on the in-memory store, with a fake clock and sequential ids by default."""
    settings.setdefault("source", "test")
    settings.setdefault("actor", "tester")
    return Tracker("memory://", clock=clock or FakeClock(), id_source=ids or SequentialIds(),
                   **settings)
