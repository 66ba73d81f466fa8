"""The EventStore port's contract, run against every adapter (STYLE.md habit 5).

One set of cases, three stores: the in-memory fake, a SQLite file and PostgreSQL (a fresh schema
per test). Each store is built from a URL with ``lineage.bootstrap.open_store``, as the Tracker
builds it. Ids are fixed and derived from the test's own counter (habit 10), never random.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID, uuid5

import pytest
from eventsourcing.persistence import StoredEvent

from lineage.bootstrap import open_store
from lineage.ports import DuplicateEventError, EventStore, VersionConflictError

NS = UUID("00000000-0000-0000-0000-00000000c0de")
STREAM_A = uuid5(NS, "stream-a")
STREAM_B = uuid5(NS, "stream-b")
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def event_id(n: int) -> str:
    return uuid5(NS, f"event-{n}").hex


def ev(stream: UUID, version: int, topic: str = "t:Happened") -> StoredEvent:
    return StoredEvent(stream, version, topic, f"{stream.hex[:6]}-{version}".encode())


def key(event: Any) -> tuple[UUID, int, str, bytes]:
    return (event.originator_id, event.originator_version, event.topic, bytes(event.state))


@pytest.fixture
def open_url(any_url: str) -> Iterator[Callable[[], EventStore]]:
    """Opens stores on this test's database (all on one object for memory://); closes them."""
    opened: list[EventStore] = []
    shared = open_store(any_url) if any_url == "memory://" else None

    def opener() -> EventStore:
        store = shared if shared is not None else open_store(any_url)
        opened.append(store)
        return store

    yield opener
    for store in opened:
        store.close()


@pytest.fixture
def store(open_url: Callable[[], EventStore]) -> EventStore:
    return open_url()


@pytest.fixture
def filled(store: EventStore) -> EventStore:
    """A: versions 1-3 (topics t:A1, t:A2, t:A3), B: versions 1-2 (t:B), in log order
    A1 A2 B1 A3 B2, appended in three batches."""
    store.append([ev(STREAM_A, 1, "t:A1"), ev(STREAM_A, 2, "t:A2")], [event_id(1), event_id(2)])
    store.append([ev(STREAM_B, 1, "t:B")], [event_id(3)])
    store.append([ev(STREAM_A, 3, "t:A3"), ev(STREAM_B, 2, "t:B")], [event_id(4), event_id(5)])
    return store


def log_keys(store: EventStore) -> list[tuple[Any, int]]:
    return [(n.originator_id, n.originator_version) for n in store.read_log(1, 10_000)]


LOG = [(STREAM_A, 1), (STREAM_A, 2), (STREAM_B, 1), (STREAM_A, 3), (STREAM_B, 2)]


# -- reading streams -----------------------------------------------------------------------------


def test_read_stream_returns_what_was_appended(filled: EventStore) -> None:
    assert [key(e) for e in filled.read_stream(STREAM_A)] == [
        key(ev(STREAM_A, 1, "t:A1")), key(ev(STREAM_A, 2, "t:A2")), key(ev(STREAM_A, 3, "t:A3"))]
    assert all(isinstance(e.originator_id, UUID) for e in filled.read_stream(STREAM_A))


def test_read_stream_desc_after_and_limit(filled: EventStore) -> None:
    def versions(**kwargs: Any) -> list[int]:
        return [e.originator_version for e in filled.read_stream(STREAM_A, **kwargs)]

    assert versions(desc=True) == [3, 2, 1]
    assert versions(after=1) == [2, 3]
    assert versions(after=3) == []
    assert versions(limit=2) == [1, 2]
    assert versions(desc=True, limit=1) == [3]
    assert versions(after=1, limit=1) == [2]
    assert versions(after=1, desc=True) == [3, 2]


def test_read_stream_of_unknown_stream_is_empty(filled: EventStore) -> None:
    assert list(filled.read_stream(uuid5(NS, "nobody"))) == []


def test_positions_are_the_log_ids_of_a_streams_versions(filled: EventStore) -> None:
    ids = {(n.originator_id, n.originator_version): n.id for n in filled.read_log(1, 100)}
    assert filled.positions(STREAM_A) == {v: ids[(STREAM_A, v)] for v in (1, 2, 3)}
    assert filled.positions(STREAM_B, [2]) == {2: ids[(STREAM_B, 2)]}
    assert filled.positions(STREAM_A, [1, 3, 9]) == {1: ids[(STREAM_A, 1)], 3: ids[(STREAM_A, 3)]}
    assert filled.positions(STREAM_A, []) == {}
    assert filled.positions(uuid5(NS, "nobody")) == {}


def test_positions_answers_for_many_versions_at_once(store: EventStore) -> None:
    store.append([ev(STREAM_A, v) for v in range(1, 1201)], [event_id(v) for v in range(1, 1201)])
    found = store.positions(STREAM_A, list(range(1, 1301)))
    assert sorted(found) == list(range(1, 1201)) and sorted(found.values()) == list(found.values())


# -- reading the log -----------------------------------------------------------------------------


def test_read_log_is_in_append_order_with_increasing_ids(filled: EventStore) -> None:
    notifications = filled.read_log(1, 100)
    assert [(n.originator_id, n.originator_version) for n in notifications] == LOG
    ids = [n.id for n in notifications]
    assert ids == sorted(set(ids)) and ids[0] >= 1
    assert [bytes(n.state) for n in notifications] == [
        bytes(ev(s, v).state) for s, v in LOG]


def test_read_log_start_is_inclusive_and_limit_caps(filled: EventStore) -> None:
    ids = [n.id for n in filled.read_log(1, 100)]
    assert [n.id for n in filled.read_log(ids[2], 100)] == ids[2:]
    assert [n.id for n in filled.read_log(ids[1], 2)] == ids[1:3]
    assert [n.id for n in filled.read_log(ids[-1] + 1, 100)] == []
    assert [n.id for n in filled.read_log(1, 1)] == ids[:1]


def test_read_log_filters_by_topics(filled: EventStore) -> None:
    def picked(start: int, limit: int, topics: list[str]) -> list[tuple[Any, int]]:
        return [(n.originator_id, n.originator_version)
                for n in filled.read_log(start, limit, topics)]

    assert picked(1, 100, ["t:B"]) == [(STREAM_B, 1), (STREAM_B, 2)]
    assert picked(1, 100, ["t:A1", "t:A3"]) == [(STREAM_A, 1), (STREAM_A, 3)]
    assert picked(1, 1, ["t:B"]) == [(STREAM_B, 1)]  # the limit counts matches only
    assert picked(1, 100, ["t:nothing"]) == []
    third = filled.read_log(1, 100)[2].id
    assert picked(third + 1, 100, ["t:B"]) == [(STREAM_B, 2)]


def test_read_rows_is_read_log_as_plain_tuples(filled: EventStore) -> None:
    """The bulk read: (id, stream id as stored, version, topic, state), any stream id
    spelling that ``UUID()`` reads, from ``start`` on, at most ``limit``."""
    notes = filled.read_log(1, 100)
    rows = filled.read_rows(1, 100)
    assert all(type(row) is tuple and len(row) == 5 for row in rows)
    assert [(row[0], UUID(str(row[1])), row[2], row[3], bytes(row[4])) for row in rows] == [
        (n.id, n.originator_id, n.originator_version, n.topic, bytes(n.state)) for n in notes]
    assert [row[0] for row in filled.read_rows(notes[1].id, 2)] == [n.id for n in notes[1:3]]
    assert list(filled.read_rows(notes[-1].id + 1, 10)) == []


def test_max_position(store: EventStore) -> None:
    assert store.max_position() == 0
    assert list(store.read_log(1, 10)) == []
    store.append([ev(STREAM_A, 1), ev(STREAM_A, 2)], [event_id(1), event_id(2)])
    assert store.max_position() == store.read_log(1, 10)[-1].id


# -- atomic appends ------------------------------------------------------------------------------


def test_a_batch_with_a_stored_event_id_stores_nothing(filled: EventStore) -> None:
    before = log_keys(filled)
    batch = [ev(STREAM_A, 4), ev(STREAM_B, 3), ev(STREAM_A, 5)]
    with pytest.raises(DuplicateEventError) as raised:
        filled.append(batch, [event_id(10), event_id(2), event_id(4)])
    assert raised.value.event_ids == {event_id(2), event_id(4)}
    assert log_keys(filled) == before
    assert filled.known_event_ids([event_id(10)]) == set()
    assert [e.originator_version for e in filled.read_stream(STREAM_A)] == [1, 2, 3]


def test_a_batch_with_a_taken_version_stores_nothing(filled: EventStore) -> None:
    before = log_keys(filled)
    with pytest.raises(VersionConflictError):
        filled.append([ev(STREAM_B, 3), ev(STREAM_A, 3, "t:other")], [event_id(10), event_id(11)])
    assert log_keys(filled) == before
    assert filled.known_event_ids([event_id(10), event_id(11)]) == set()
    assert [e.topic for e in filled.read_stream(STREAM_A)] == ["t:A1", "t:A2", "t:A3"]
    # After a refused batch the store takes the corrected one.
    filled.append([ev(STREAM_B, 3), ev(STREAM_A, 4)], [event_id(10), event_id(11)])
    assert log_keys(filled) == [*before, (STREAM_B, 3), (STREAM_A, 4)]


STREAM_C = uuid5(NS, "stream-c")  # never written


def test_a_batch_whose_expected_stream_moved_on_stores_nothing(filled: EventStore) -> None:
    before = log_keys(filled)
    batch, ids = [ev(STREAM_B, 3)], [event_id(20)]
    for expect in ([(STREAM_A, 2)], [(STREAM_A, 3), (STREAM_C, 1)], [(STREAM_A, 4)]):
        with pytest.raises(VersionConflictError):
            filled.append(batch, ids, expect)
        assert log_keys(filled) == before  # neither the events nor their ids
        assert filled.known_event_ids(ids) == set()
    # As expected (an unwritten stream ends at 0): stored, ids and all.
    filled.append(batch, ids, [(STREAM_A, 3), (STREAM_C, 0)])
    assert log_keys(filled) == [*before, (STREAM_B, 3)]
    assert filled.known_event_ids(ids) == set(ids)
    # The check runs beside the other ones: a stored id is still a duplicate.
    with pytest.raises(DuplicateEventError):
        filled.append([ev(STREAM_B, 4)], ids, [(STREAM_A, 3)])


def test_a_batch_repeating_a_version_stores_nothing(store: EventStore) -> None:
    with pytest.raises(VersionConflictError):
        store.append([ev(STREAM_A, 1), ev(STREAM_A, 1, "t:again")], [event_id(1), event_id(2)])
    assert store.max_position() == 0
    assert store.known_event_ids([event_id(1), event_id(2)]) == set()


def test_a_batch_repeating_an_event_id_stores_nothing(store: EventStore) -> None:
    with pytest.raises((DuplicateEventError, VersionConflictError)):
        store.append([ev(STREAM_A, 1), ev(STREAM_A, 2)], [event_id(1), event_id(1)])
    assert store.max_position() == 0
    assert store.known_event_ids([event_id(1)]) == set()


def test_a_batch_repeating_an_event_id_names_the_repeated_id(store: EventStore) -> None:
    with pytest.raises(DuplicateEventError) as raised:
        store.append([ev(STREAM_A, 1), ev(STREAM_A, 2), ev(STREAM_B, 1)],
                     [event_id(1), event_id(2), event_id(1)])
    assert raised.value.event_ids == {event_id(1)}


def test_an_empty_append_is_a_no_op(store: EventStore) -> None:
    store.append([], [])
    assert store.max_position() == 0


# -- event ids -----------------------------------------------------------------------------------


def test_known_event_ids_is_the_stored_subset(filled: EventStore) -> None:
    asked = [event_id(n) for n in range(1, 9)]
    assert filled.known_event_ids(asked) == {event_id(n) for n in range(1, 6)}
    assert filled.known_event_ids(iter([event_id(3)])) == {event_id(3)}  # any iterable
    assert filled.known_event_ids([]) == set()
    assert filled.known_event_ids([event_id(99)]) == set()


def test_known_event_ids_answers_for_many_ids_at_once(store: EventStore) -> None:
    stored = [event_id(n) for n in range(1200)]
    store.append([ev(STREAM_A, n + 1) for n in range(1200)], stored)
    asked = stored[::2] + [event_id(n) for n in range(5000, 6000)]
    assert store.known_event_ids(asked) == set(stored[::2])


def test_event_ids_come_back_as_the_32_char_lowercase_hex_given(store: EventStore) -> None:
    given = [uuid5(NS, f"x{n}").hex for n in range(3)]
    assert all(HEX32.match(i) for i in given)
    store.append([ev(STREAM_A, 1), ev(STREAM_A, 2), ev(STREAM_A, 3)], given)
    known = store.known_event_ids(given)
    assert known == set(given)
    assert all(type(i) is str and HEX32.match(i) for i in known)


# -- durability and concurrency ------------------------------------------------------------------


def test_everything_is_there_after_close_and_reopen(any_url: str,
                                                    open_url: Callable[[], EventStore]) -> None:
    if any_url == "memory://":
        pytest.skip("the in-memory fake keeps nothing after close, by design")
    first = open_url()
    first.append([ev(STREAM_A, 1), ev(STREAM_B, 1)], [event_id(1), event_id(2)])
    first.append([ev(STREAM_A, 2)], [event_id(3)])
    expected_log = [(n.id, key(n)) for n in first.read_log(1, 100)]
    first.close()

    again = open_url()
    assert [(n.id, key(n)) for n in again.read_log(1, 100)] == expected_log
    assert [e.originator_version for e in again.read_stream(STREAM_A)] == [1, 2]
    assert again.known_event_ids([event_id(n) for n in (1, 2, 3, 4)]) == {
        event_id(1), event_id(2), event_id(3)}
    assert again.max_position() == expected_log[-1][0]
    with pytest.raises(DuplicateEventError):
        again.append([ev(STREAM_A, 3)], [event_id(3)])


def test_stores_opened_at_once_all_open(any_url: str, open_url: Callable[[], EventStore],
                                        request: pytest.FixtureRequest) -> None:
    """Many workers starting together each open the store (creating tables if needed)."""
    open_url().append([ev(STREAM_A, 1)], [event_id(1)])  # the tables exist already
    errors: list[BaseException] = []
    lock = threading.Lock()
    for _round in range(3):
        start = threading.Barrier(8)

        def opener(start: threading.Barrier = start) -> None:
            try:
                start.wait(timeout=30)
                store = open_url()
                assert store.known_event_ids([event_id(1)]) == {event_id(1)}
            except BaseException as error:  # reported below, in the test's thread
                with lock:
                    errors.append(error)

        threads = [threading.Thread(target=opener) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert errors == []


CLOSE_WHILE_READING = """
import sys, threading
from lineage.bootstrap import open_store
for _ in range(int(sys.argv[2])):
    store = open_store(sys.argv[1])
    stop = threading.Event()
    def read():
        while not stop.is_set():
            try:
                store.read_log(1, 100)
            except Exception:  # an error after close is fine; a crash is not
                pass
    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    store.close()
    stop.set()
    for reader in readers:
        reader.join()
print("survived")
"""


def test_closing_while_another_thread_reads_does_not_crash(
        any_url: str, filled: EventStore, request: pytest.FixtureRequest) -> None:
    rounds = "3" if "postgres" in request.node.callspec.id else "30"  # opening PG is slow
    done = subprocess.run([sys.executable, "-c", CLOSE_WHILE_READING, any_url, rounds],
                          capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stdout) == (0, "survived\n"), done.stderr[-2000:]


def test_two_threads_appending_to_different_streams(store: EventStore) -> None:
    batches, size = 40, 25
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def writer(stream: UUID, base: int) -> None:
        try:
            start.wait(timeout=30)
            for b in range(batches):
                versions = range(b * size + 1, (b + 1) * size + 1)
                store.append([ev(stream, v) for v in versions],
                             [event_id(base + v) for v in versions])
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(STREAM_A, 0)),
               threading.Thread(target=writer, args=(STREAM_B, 100_000))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert not any(thread.is_alive() for thread in threads)

    notifications = store.read_log(1, 10_000)
    keys = [(n.originator_id, n.originator_version) for n in notifications]
    total = batches * size
    assert len(keys) == len(set(keys)) == 2 * total
    assert set(keys) == {(s, v) for s in (STREAM_A, STREAM_B) for v in range(1, total + 1)}
    for stream in (STREAM_A, STREAM_B):  # each stream's events are in order in the log
        assert [v for s, v in keys if s == stream] == list(range(1, total + 1))
    ids = [n.id for n in notifications]
    assert ids == sorted(set(ids))
    assert store.max_position() == ids[-1]
