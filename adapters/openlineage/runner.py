"""The OpenLineage exporter: follows the notification log from a tracked position and emits
each stored event's OpenLineage events (``events.OpenLineageBuilder``) through an
``openlineage-python`` transport (HTTP to a Marquez-compatible API, file, console, Kafka: any
``Transport`` with ``emit``), at least once.

The position (name ``openlineage`` by default, in the same ``lineage_positions`` table as the
OTLP exporter's) moves past a notification only after all its events were emitted; a failing
transport stops the export with ``ExportError`` and the position at the last notification
fully delivered, so the next run re-emits from there (the same events: they are a function of
the stored ones). With ``track=False`` (a dry run) the position is not written.
Threading: one runner per thread.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import IO, Any

from lineage.errors import ExportError
from lineage.ports import EventStore, PositionStore

from .events import OpenLineageBuilder

DEFAULT_NAME = "openlineage"


@dataclass
class OpenLineageStats:
    position: int = 0
    events: int = 0
    notifications: int = 0


class OpenLineageRunner:
    """Emits the OpenLineage events of the log after a tracked position (module doc)."""

    def __init__(self, store: EventStore, positions: PositionStore, builder: OpenLineageBuilder,
                 transport: Any, *, endpoint: str, name: str = DEFAULT_NAME,
                 page_size: int = 1000, track: bool = True, start: int | None = None) -> None:
        self.store = store
        self.positions = positions
        self.builder = builder
        self.transport = transport
        self.endpoint = endpoint
        self.name = name
        self.page_size = page_size
        self.track = track
        self.stats = OpenLineageStats(position=start if start is not None else positions.get(name))

        self.skipped: list[tuple[int, str]] = []  # never skips (``BackgroundExporter`` asks)

    @property
    def position(self) -> int:
        return self.stats.position

    def head(self) -> int:
        return self.store.max_position()

    def export_to_head(self, cancel: threading.Event | None = None) -> int:
        """Emit page after page until the log has nothing new (or ``cancel`` is set);
        returns how many notifications were covered. Raises ExportError (module doc)."""
        covered = 0
        while not (cancel is not None and cancel.is_set()):
            notes = self.store.read_log(self.position + 1, self.page_size)
            if not notes:
                break
            done = self.position
            try:
                for note, events in zip(notes, self.builder.build(notes), strict=True):
                    for event in events:
                        self._emit(event)
                    done = note.id
                    covered += 1
            finally:
                self._advance(done)
        return covered

    def _emit(self, event: dict[str, Any]) -> None:
        try:
            self.transport.emit(event)
        except Exception as error:  # any transport's failure: stop here, retry from here later
            raise ExportError(self.endpoint, f"{type(error).__name__}: {error}") from None
        self.stats.events += 1

    def _advance(self, position: int) -> None:
        if position <= self.stats.position:
            return
        if self.track:
            self.positions.set(self.name, position)
        self.stats.notifications += position - self.stats.position
        self.stats.position = position


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
