"""The LogRewriter port's contract, run against the fake below, a SQLite file and PostgreSQL
(STYLE.md habit 5). The real rewriters open the database an event store filled: rows are
appended through ``open_store``'s store, which is closed first (a SQLite rewriter refuses to
open a file any other connection has open), then opened again to read what the rewrite left.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any
from uuid import UUID, uuid5

import pytest
from eventsourcing.persistence import StoredEvent

from lineage.adapters.database import Database
from lineage.adapters.log_rewriter import SqlAlchemyLogRewriter
from lineage.bootstrap import open_store
from lineage.errors import StoreError
from lineage.ports import LogRewriter, LogRow

NS = UUID("00000000-0000-0000-0000-00000000beef")
A, B = uuid5(NS, "a"), uuid5(NS, "b")
OLD, NEW, OTHER = "t:Old", "t:New", "t:Other"


def event_id(n: int) -> str:
    return uuid5(NS, f"event-{n}").hex


class MemoryLogRewriter:
    """The fake: a log in a dict (position -> row), an event-id set, tracked positions."""

    location = "memory://"

    def __init__(self, events: Sequence[Any] = (), ids: Sequence[str] = ()) -> None:
        self.rows = {n: LogRow(n, e.originator_id, e.originator_version, e.topic, e.state)
                     for n, e in enumerate(events, start=1)}
        self.ids = set(ids)
        self.tracked: dict[str, int] = {}

    def scan(self, after: int, limit: int, topic: str) -> Sequence[LogRow]:
        found = [self.rows[n] for n in sorted(self.rows) if n > after][:limit]
        return [row if row.topic == topic else row._replace(state=None) for row in found]

    def head(self) -> int:
        return max(self.rows, default=0)

    def positions(self) -> dict[str, int]:
        return dict(self.tracked)

    def replace(self, rows: Sequence[LogRow], new: Any, drop_ids: Sequence[str],
                positions: dict[str, int]) -> None:
        first, last = rows[0].position, rows[-1].position
        inside = [n for n in self.rows if first <= n <= last]
        if sorted(inside) != [row.position for row in rows]:
            raise StoreError(f"positions {first}-{last} hold other rows")
        for n in inside:
            del self.rows[n]
        self.rows[last] = LogRow(last, new.originator_id, new.originator_version, new.topic,
                                 new.state)
        self.ids.difference_update(drop_ids)
        self.tracked.update(positions)

    def size_bytes(self) -> int:
        return sum(len(row.state or b"") for row in self.rows.values())

    def vacuum(self) -> None:
        pass

    def close(self) -> None:
        pass


class Harness:
    """Fills a store, opens a rewriter on it, and reads back the log and its ids."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.rewriter: Any = None

    def fill(self, events: Sequence[StoredEvent], ids: Sequence[str]) -> LogRewriter:
        if self.url == "memory://":
            self.rewriter = MemoryLogRewriter(events, ids)
            return self.rewriter
        store = open_store(self.url)
        store.append(events, ids)
        store.close()
        self.rewriter = SqlAlchemyLogRewriter(Database.parse(self.url))
        return self.rewriter

    def log(self) -> list[tuple[int, UUID, int, str, bytes]]:
        if self.url == "memory://":
            return [(r.position, r.originator_id, r.originator_version, r.topic, r.state or b"")
                    for _, r in sorted(self.rewriter.rows.items())]
        store = open_store(self.url)
        try:
            return [(n.id, n.originator_id, n.originator_version, n.topic, bytes(n.state))
                    for n in store.read_log(1, 1000)]
        finally:
            store.close()

    def known(self, ids: Sequence[str]) -> set[str]:
        if self.url == "memory://":
            return self.rewriter.ids & set(ids)
        store = open_store(self.url)
        try:
            return store.known_event_ids(ids)
        finally:
            store.close()


@pytest.fixture
def harness(any_url: str) -> Iterator[Harness]:
    made = Harness(any_url)
    yield made
    if made.rewriter is not None:
        made.rewriter.close()


def ev(stream: UUID, version: int, topic: str = OLD) -> StoredEvent:
    return StoredEvent(stream, version, topic, f"{topic}/{stream.hex[:4]}/{version}".encode())


def filled(harness: Harness) -> LogRewriter:
    """Log: A1 A2 A3 (OLD), B1 (OTHER), A4 A5 (OLD); ids event-1..6."""
    events = [ev(A, 1), ev(A, 2), ev(A, 3), ev(B, 1, OTHER), ev(A, 4), ev(A, 5)]
    return harness.fill(events, [event_id(n) for n in range(1, 7)])


def test_scan_reads_rows_in_order_and_only_the_state_asked_for(harness: Harness) -> None:
    rewriter = filled(harness)
    rows = rewriter.scan(0, 100, OLD)
    assert [(r.originator_id, r.originator_version, r.topic) for r in rows] == [
        (A, 1, OLD), (A, 2, OLD), (A, 3, OLD), (B, 1, OTHER), (A, 4, OLD), (A, 5, OLD)]
    assert [r.state is None for r in rows] == [False, False, False, True, False, False]
    assert rows[0].state == b"t:Old/" + A.hex[:4].encode() + b"/1"
    positions = [r.position for r in rows]
    assert positions == sorted(positions) and rewriter.head() == positions[-1]
    assert rewriter.scan(positions[1], 2, OLD) == rows[2:4]
    assert rewriter.scan(positions[-1], 10, OLD) == []


def test_replace_puts_one_row_where_the_last_was_and_moves_no_other(harness: Harness) -> None:
    rewriter = filled(harness)
    rows = rewriter.scan(0, 100, OLD)
    rewriter.replace(rows[:3], StoredEvent(A, 3, NEW, b"block"), [event_id(2), event_id(3)],
                     {"__marker__": 0})
    log = harness.log()
    assert [entry[0] for entry in log] == [r.position for r in rows[2:]]
    assert log[0][1:] == (A, 3, NEW, b"block")
    assert [entry[1:4] for entry in log[1:]] == [(B, 1, OTHER), (A, 4, OLD), (A, 5, OLD)]
    assert harness.known([event_id(n) for n in range(1, 7)]) == {
        event_id(1), event_id(4), event_id(5), event_id(6)}
    assert rewriter.positions()["__marker__"] == 0


def test_replace_at_the_end_keeps_the_head_so_new_rows_come_after(harness: Harness) -> None:
    rewriter = filled(harness)
    rows = rewriter.scan(0, 100, OLD)
    head = rewriter.head()
    rewriter.replace(rows[4:], StoredEvent(A, 5, NEW, b"tail"), [], {})
    assert rewriter.head() == head
    if harness.url == "memory://":
        return
    rewriter.close()
    harness.rewriter = None
    store = open_store(harness.url)
    try:
        store.append([ev(A, 6)], [event_id(7)])
        assert [n.id for n in store.read_log(head, 10)] == [head, head + 1]
    finally:
        store.close()


def test_replace_refuses_rows_that_are_not_consecutive(harness: Harness) -> None:
    rewriter = filled(harness)
    rows = rewriter.scan(0, 100, OLD)
    before = harness.log()
    with pytest.raises(StoreError):  # B1 lies between A3 and A4
        rewriter.replace([rows[2], rows[4]], StoredEvent(A, 4, NEW, b"x"), [event_id(3)], {})
    assert harness.log() == before
    assert harness.known([event_id(3)]) == {event_id(3)}


def test_size_and_vacuum(harness: Harness) -> None:
    rewriter = filled(harness)
    assert rewriter.size_bytes() > 0
    rewriter.replace(rewriter.scan(0, 3, OLD), StoredEvent(A, 3, NEW, b"b"), [], {})
    rewriter.vacuum()
    assert [entry[3] for entry in harness.log()] == [NEW, OTHER, OLD, OLD]

