"""In-memory EventStore: the fake for unit tests, held to the same contract as the real ones."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification, StoredEvent

from lineage.adapters.database import MEMORY, Database
from lineage.ports import DuplicateEventError, VersionConflictError, repeated


class MemoryEventStore:
    database = Database(MEMORY)
    read_only = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._log: list[Notification] = []
        self._streams: dict[UUID | str, dict[int, StoredEvent]] = {}
        self._event_ids: set[str] = set()

    @property
    def location(self) -> str:
        return "memory://"

    def append(self, events: Sequence[StoredEvent], event_ids: Sequence[str],
               expect: Sequence[tuple[UUID, int]] = ()) -> None:
        with self._lock:
            known = self._event_ids.intersection(event_ids) | repeated(event_ids)
            if known:
                raise DuplicateEventError(known)
            keys = [(e.originator_id, e.originator_version) for e in events]
            if len(set(keys)) != len(keys) or any(
                version in self._streams.get(stream, {}) for stream, version in keys
            ) or any(max(self._streams.get(stream, ()), default=0) != version
                     for stream, version in expect):
                raise VersionConflictError()
            for given in events:
                event = StoredEvent(given.originator_id, given.originator_version, given.topic,
                                    given.state)
                self._streams.setdefault(event.originator_id, {})[event.originator_version] = event
                self._log.append(Notification(
                    id=len(self._log) + 1, originator_id=event.originator_id,
                    originator_version=event.originator_version, topic=event.topic,
                    state=event.state))
            self._event_ids.update(event_ids)

    def known_event_ids(self, event_ids: Iterable[str]) -> set[str]:
        with self._lock:
            return self._event_ids.intersection(event_ids)

    def read_stream(self, stream_id: UUID, *, after: int | None = None,
                    desc: bool = False, limit: int | None = None) -> Sequence[StoredEvent]:
        with self._lock:
            stream = self._streams.get(stream_id, {})
            events = [stream[v] for v in sorted(stream, reverse=desc) if after is None or v > after]
        return events[:limit] if limit is not None else events

    def positions(self, stream_id: UUID, versions: Sequence[int] | None = None) -> dict[int, int]:
        wanted = None if versions is None else set(versions)
        with self._lock:
            return {n.originator_version: n.id for n in self._log if n.originator_id == stream_id
                    and (wanted is None or n.originator_version in wanted)}

    def read_log(self, start: int, limit: int, topics: Sequence[str] = ()) -> Sequence[Notification]:
        with self._lock:
            selected = [n for n in self._log[max(start - 1, 0):] if not topics or n.topic in topics]
        return selected[:limit]

    def read_rows(self, start: int, limit: int) -> Sequence[tuple[int, Any, int, str, bytes]]:
        return [(n.id, n.originator_id, n.originator_version, n.topic, n.state)
                for n in self.read_log(start, limit)]

    def max_position(self) -> int:
        with self._lock:
            return len(self._log)

    def close(self) -> None:
        pass
