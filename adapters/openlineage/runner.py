"""The OpenLineage exporter: follows the notification log from a tracked position and emits
each stored event's OpenLineage events (``events.OpenLineageBuilder``) through an
``openlineage-python`` transport (HTTP to a Marquez-compatible API, file, console, Kafka: any
``Transport`` with ``emit``), at least once.

The position (name ``openlineage`` by default, in the same ``lineage_positions`` table as the
OTLP exporter's) moves past a notification only after all its events were emitted; a failing
transport stops the export with ``ExportError`` and the position at the last notification
fully delivered, so the next run re-emits from there (the same events: they are a function of
the stored ones). An event it cannot turn into OpenLineage events (a payload that does not
decode) is skipped and recorded, as the OTLP exporter does: the position, the page reads and
the skipping are the log follower's (``lineage.adapters.log_follower``). With ``track=False``
(a dry run) the position is not written. Threading: one runner per thread.
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
        done = self.position
        try:
            built = self.build_each(self.builder.build, notes, [n.id for n in notes], list)
            for note, events in zip(notes, built, strict=True):
                for event in events:
                    self._emit(event)
                done = note.id
                self.stats.notifications += 1
        finally:
            self.advance(done)
        return len(notes)

    def _emit(self, event: dict[str, Any]) -> None:
        try:
            self.transport.emit(event)
        except Exception as error:  # any transport's failure: stop here, retry from here later
            raise ExportError(self.endpoint, f"{type(error).__name__}: {error}") from None
        self.stats.events += 1


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
