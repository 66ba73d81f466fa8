"""The sealer: a tracked, resumable worker that seals the event log (issue 14).

``Sealer.seal`` reads the rows after the last seal's position, adds their leaves to the tree
(``lineage.proof``), signs the new tree head and appends it as seal ``number + 1``
(``lineage.domain.seals``). The seal is its own tracked position: it holds the position of the
last row it covers and the tree's right edge, and it is written in one append, so a sealer
killed at any moment resumes from the last seal that was committed: no row is sealed twice or
skipped. Two sealers racing for a number: one append wins, the other gets a version conflict,
reloads and carries on. Notification ids may have gaps (PostgreSQL): leaves are counted, never
derived from ids.

It never sits on the training path: it reads the log and appends on its own (a process,
``lineage seal --follow``, or the daemon thread of ``BackgroundSealer``), never through the
writer's queue. A seal is due when ``every_events`` rows wait, or when ``every_s`` seconds
passed since the last seal and anything but seals waits (the newest seal is covered by the next
one; it is protected by its signature meanwhile).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID, uuid4

from eventsourcing.persistence import Mapper

from lineage.codec.dispatch import topic_of
from lineage.domain.envelope import Origin
from lineage.domain.seals import SEAL_STREAM, Log
from lineage.ports import EventStore, VersionConflictError
from lineage.proof.canonical import LeafHasher, leaf_digests
from lineage.proof.merkle import Frontier
from lineage.proof.seals import ZERO, TreeHead

SEAL_TOPIC = topic_of(Log.Sealed)
PAGE = 2_000
MAX_LEAVES = 200_000  # leaves per seal at most (but a row is never split): digests under 2 MB
log = logging.getLogger("lineage.sealing")


class Signer(Protocol):
    """Signs tree heads (``lineage.adapters.signing.Ed25519Signer``)."""

    public_key: bytes

    def sign(self, message: bytes) -> bytes: ...


class Anchor(Protocol):
    """Somewhere outside the database each seal is published (a file, stdout, a span)."""

    def publish(self, head: TreeHead) -> None: ...


@dataclass(frozen=True)
class SealPoint:
    """Where the last seal left the tree (number 0: no seal yet)."""

    number: int = 0
    size: int = 0
    position: int = 0
    head_hash: bytes = ZERO
    nodes: tuple[bytes, ...] = ()
    sealed_at: float = 0.0  # epoch seconds


def last_seal(store: EventStore, mapper: Mapper) -> SealPoint:
    """The sealing state the newest stored seal holds."""
    stored = store.read_stream(SEAL_STREAM, desc=True, limit=1)
    if not stored:
        return SealPoint()
    event: Any = mapper.to_domain_event(stored[0])
    head = TreeHead.of_event(event)
    return SealPoint(head.number, head.size, int(event.position), head.hash(),
                     tuple(bytes.fromhex(node) for node in event.frontier),
                     head.sealed_at_us / 1e6)


def seal_positions(store: EventStore, mapper: Mapper) -> list[int]:
    """The position of the last row each stored seal covers (a seal row that does not decode
    is left out: ``lineage verify`` reports it). ``lineage migrate`` never joins rows across
    one, so every seal's position still ends its rows and the sealer resumes after it."""
    found = []
    for stored in store.read_stream(SEAL_STREAM):
        try:
            found.append(int(mapper.to_domain_event(stored).position))  # type: ignore[attr-defined]
        except Exception:  # damage is verify's to report; the migration only needs the rest
            continue
    return found


class Sealer:
    """Seals ``store``'s log with ``signer``'s key; see the module doc. One thread."""

    def __init__(self, store: EventStore, mapper: Mapper, signer: Signer, *, origin: Origin,
                 every_events: int = 10_000, every_s: float = 60.0,
                 anchors: Sequence[Anchor] = (), clock: Callable[[], float] = time.time,
                 new_id: Callable[[], UUID] = uuid4, max_leaves: int = MAX_LEAVES) -> None:
        self.store, self.mapper, self.signer = store, mapper, signer
        self.origin, self.every_events, self.every_s = origin, every_events, every_s
        self.anchors, self.clock, self.new_id = list(anchors), clock, new_id
        self.max_leaves = max_leaves
        self.hasher = LeafHasher.for_mapper(mapper)  # its stream and topic caches last
        self.sealed = 0  # seals this sealer wrote

    def due(self, point: SealPoint | None = None) -> bool:
        """Whether a seal is due now (cheap: reads the last seal and the head only)."""
        point = point or last_seal(self.store, self.mapper)
        waiting = self.store.max_position() - point.position
        return waiting >= self.every_events or (
            waiting > 0 and self.clock() - point.sealed_at >= self.every_s)

    def seal(self, point: SealPoint | None = None) -> TreeHead | None:
        """Seal everything stored so far now (in seals of at most ``max_leaves`` leaves);
        returns the last head written, None when only seals (or nothing) wait. ``point``: the
        last seal, when the caller has just read it. Raises StoreError when the store fails
        (nothing half-written: a seal is one append)."""
        written = None
        while True:
            done = self._seal_once(point)
            if done is None:
                return written
            written, point = done

    def seal_if_due(self) -> TreeHead | None:
        point = last_seal(self.store, self.mapper)
        return self.seal(point) if self.due(point) else None

    def _seal_once(self, point: SealPoint | None) -> tuple[TreeHead, SealPoint] | None:
        """One seal after ``point`` (read when None), and where it leaves the tree."""
        for _ in range(10):  # a version conflict: another sealer took the number; reload
            point = point or last_seal(self.store, self.mapper)
            frontier = Frontier(point.size, point.nodes)
            digests, position, news = self._read_after(point.position, frontier)
            if not news:
                return None
            try:
                head = self._append(point, frontier, digests, position)
            except VersionConflictError:
                point = None
                continue
            self.sealed += 1
            for anchor in self.anchors:
                anchor.publish(head)
            return head, SealPoint(head.number, head.size, position, head.hash(),
                                   tuple(frontier.nodes), head.sealed_at_us / 1e6)
        raise VersionConflictError()

    def _read_after(self, position: int, frontier: Frontier) -> tuple[bytes, int, bool]:
        """Add the rows after ``position`` to ``frontier``, a page at a time (only a page of
        rows is held), up to ``max_leaves`` leaves: a seal ends at a row, so it stops before
        the row whose leaves (a block ``lineage migrate`` wrote is a leaf per step) would pass
        the limit; a single row of more leaves than that is sealed alone. Returns their leaf
        digests, the last row's position, and whether any of them is not a seal."""
        digests, news, added, limit = bytearray(), False, 0, self.max_leaves
        while added < limit:
            page = self.store.read_rows(position + 1, min(PAGE, limit - added))
            if not page:
                break
            leaves, ids = self.hasher.leaves(page)
            full = added + len(leaves) > limit
            if full:
                keep = whole_rows(ids, limit - added) or (0 if added else ids.count(ids[0]))
                if not keep:
                    break
                leaves, page = leaves[:keep], [row for row in page if row[0] <= ids[keep - 1]]
            frontier.extend(leaves)
            digests += leaf_digests(leaves)
            news = news or any(row[3] != SEAL_TOPIC for row in page)
            position, added = page[-1][0], added + len(leaves)
            if full:
                break
        return bytes(digests), position, news

    def _append(self, point: SealPoint, frontier: Frontier, digests: bytes,
                position: int) -> TreeHead:
        number = point.number + 1
        now = self.clock()
        sealed_at_us = round(now * 1e6)
        unsigned = TreeHead(number, frontier.size, frontier.root(), point.head_hash,
                            sealed_at_us, hashlib.sha256(digests).digest(),
                            self.signer.public_key, b"")
        head = TreeHead(**{**unsigned.__dict__, "signature": self.signer.sign(unsigned.message())})
        moment = datetime.fromtimestamp(now, UTC)
        event_id = self.new_id()
        event = Log.Sealed(  # type: ignore[call-arg]
            originator_id=SEAL_STREAM, originator_version=number, timestamp=moment,
            event_id=event_id, occurred_at=moment, occurred_at_raw=None, **self.origin._asdict(),
            size=head.size, root=head.root.hex(), previous=head.previous.hex(),
            sealed_at_us=sealed_at_us, digests=digests.hex(),
            frontier=[node.hex() for node in frontier.nodes], position=position,
            public_key=head.public_key.hex(), signature=head.signature.hex())
        self.store.append([self.mapper.to_stored_event(event)], [event_id.hex])
        return head


def whole_rows(ids: Sequence[int], room: int) -> int:
    """How many of the first leaves make whole rows within ``room`` leaves (``ids``: the row
    of each leaf, more than ``room`` of them); 0 when the first row alone has more."""
    keep = room
    while keep > 0 and ids[keep] == ids[keep - 1]:
        keep -= 1
    return keep


class BackgroundSealer:
    """A ``Sealer`` on a daemon thread: it checks every ``poll_s`` whether a seal is due.
    Never raises into the caller: a failure is logged once and retried at the next poll."""

    def __init__(self, sealer: Sealer, *, poll_s: float = 1.0) -> None:
        self.sealer, self.poll_s = sealer, poll_s
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lineage-sealer", daemon=True)

    def start(self) -> BackgroundSealer:
        self._thread.start()
        return self

    def close(self, *, final: bool = True) -> None:
        """Stop; with ``final``, seal what is stored first (errors logged, not raised)."""
        self._stop.set()
        self._thread.join(10.0)
        if final:
            self._attempt(self.sealer.seal)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._attempt(self.sealer.seal_if_due)

    def _attempt(self, action: Callable[[], Any]) -> None:
        try:
            action()
        except Exception as error:  # sealing must never break the process it runs in
            self.failures += 1
            if self.failures == 1:
                log.warning("lineage: sealing failed (%s); retrying", error)
