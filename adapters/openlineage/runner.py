"""The OpenLineage exporter: follows the notification log from a tracked position and emits
each stored event's OpenLineage events (``events.OpenLineageBuilder``) through an
``openlineage-python`` transport (HTTP to a Marquez-compatible API, file, console, Kafka: any
``Transport`` with ``emit``), at least once.

The position (name ``openlineage`` by default, in the same ``lineage_positions`` table as the
OTLP exporter's) moves past a notification only after all its events were delivered (``emit``
returned, or, for Kafka, the broker acknowledged them: ``kafka.AcknowledgedKafka``); a failing
transport stops the export with ``ExportError`` and the position at the last notification
fully delivered, so the next run re-emits from there (the same events: they are a function of
the stored ones). An event it cannot turn into OpenLineage events (a payload that does not
decode) is skipped and recorded, as the OTLP exporter does, and so is one that a run's later
event passes over in its history (``OpenLineageBuilder.unreadable``): the position, the page
reads and the skipping are the log follower's (``lineage.adapters.log_follower``). With
``track=False`` (a dry run) the position is not written. Threading: one runner per thread.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import IO, Any

from lineage.adapters.log_follower import FollowStats, LogFollower
from lineage.errors import ExportError
from lineage.ports import EventStore, PositionStore

from .events import OpenLineageBuilder

DEFAULT_NAME = "openlineage"
log = logging.getLogger("lineage.openlineage")


@dataclass
class OpenLineageStats(FollowStats):
    events: int = 0


class OpenLineageRunner(LogFollower):
    """Emits the OpenLineage events of the log after a tracked position (module doc)."""

    what, output = "OpenLineage export", "OpenLineage events"
    stats: OpenLineageStats

    def __init__(self, store: EventStore, positions: PositionStore, builder: OpenLineageBuilder,
                 transport: Any, *, endpoint: str, name: str = DEFAULT_NAME,
                 page_size: int = 1000, track: bool = True, start: int | None = None) -> None:
        super().__init__(store, positions, OpenLineageStats(), transport, name=name,
                         page_size=page_size, track=track, start=start, log=log)
        self.builder = builder
        self._endpoint = endpoint

    @property
    def endpoint(self) -> str:
        """Where the events go: the URL, or which transport the client configured."""
        return self._endpoint

    def export_page(self, cancel: threading.Event | None = None) -> int:
        """Emit the events of the next page; returns how many notifications it covered (0: at
        the head). Raises ExportError (module doc) with the position after the last
        notification fully delivered."""
        notes = self.read_page()
        if not notes:  # at the head: nothing to build, emit or flush
            return 0
        built = self.build_each(self.builder.build, notes, [n.id for n in notes])
        self._record_unreadable()
        events = [event for made in built for event in made]
        delivered, error = self._emit_all(events)
        done, covered = self.position, 0
        for note, made in zip(notes, built, strict=True):
            if covered + len(made) > delivered:
                break
            covered += len(made)
            done = note.id
            self.stats.notifications += 1
        self.stats.events += delivered
        self.advance(done)
        if error is not None:
            raise ExportError(self.endpoint, error, self.what)
        return len(notes)

    def _emit_all(self, events: list[dict[str, Any]]) -> tuple[int, str | None]:
        """(How many of ``events``, from the first, were delivered; why not more, or None). A
        transport that acknowledges a batch (``kafka.AcknowledgedKafka``) has ``emit_all``; any
        other delivered an event when its ``emit`` returned."""
        emit_all = getattr(self.transport, "emit_all", None)
        if emit_all is not None:
            return emit_all(events)
        for index, event in enumerate(events):
            try:
                self.transport.emit(event)
            except Exception as error:  # any transport's failure: stop here, retry from here
                return index, f"{type(error).__name__}: {error}"
        return len(events), None

    def _record_unreadable(self) -> None:
        """Record as skipped the events of a run's own stream that its later events' builds
        passed over (``OpenLineageBuilder.unreadable``), unless already recorded."""
        recorded = {position for position, _ in self.skipped}
        while self.builder.unreadable:
            stream, version, error = self.builder.unreadable.popleft()
            position = self.store.positions(stream, [version]).get(version)
            if position is not None and position not in recorded:
                self.skip(position, error)
                recorded.add(position)


class JsonLinesTransport:
    """Writes each event as one line of JSON to ``stream`` (the dry run)."""

    kind = "json-lines"

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def emit(self, event: dict[str, Any]) -> None:
        self.stream.write(json.dumps(event, sort_keys=True, separators=(",", ":")) + "\n")

    def close(self, timeout: float = -1) -> bool:
        self.stream.flush()
        return True
