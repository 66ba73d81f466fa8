"""The exporter: follows the notification log and delivers its spans at least once.

``OtlpExportRunner.export_page`` reads the page of notifications after its tracked position,
builds their spans (``lineage.spans.builder``), packs them into requests (at most
``batch_spans`` spans and ``batch_bytes`` bytes each, a notification's spans together), sends
each request through the transport (on a sender thread, while the next request is built:
``send_all``; one request in flight), and only after the transport returned advances the
tracked position to the last notification whose spans have all been delivered. So:

- a collector that is down or answers 503 delays the export (the transport retries; when its
  budget runs out the error reaches the caller with the position unchanged), nothing is lost;
- a crash between a send and the position write re-sends that request's notifications on the
  next start, with the same span ids and bytes (the spans are a function of the stored events);
- notifications that complete no span just move the position;
- an event it cannot turn into spans (a payload that does not decode, any error of the span
  builder for that event alone), or a span it cannot encode (a number beyond 64 bits), is
  skipped, never retried for ever, and recorded (``LogFollower.skip``). A failing store
  (``StoreError``) is not skipped.

The position, the page reads and the skipping are the log follower's
(``lineage.adapters.log_follower``), shared with the OpenLineage exporter. With ``track=False``
(a dry run, or a re-export of one run) the position store is not written.
Threading: one runner per thread. ``BackgroundExporter``
(``lineage.adapters.background_export``) runs one on a daemon thread for a Tracker.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from lineage.adapters.log_follower import FollowStats, LogFollower
from lineage.domain import ids
from lineage.ports import EventStore, PositionStore
from lineage.spans.builder import SpanBuilder
from lineage.spans.model import SpanRecord

from .encoder import OtlpEncoder, entry_size
from .transport import ExportResult, OtlpTransport

DEFAULT_NAME = "otlp"
FIXED_CHUNK = 4  # notifications built at a time with a fixed step grouping (``_items``)
log = logging.getLogger("lineage.otlp")


@dataclass
class ExportStats(FollowStats):
    """What a runner has done so far (``position``: last notification id fully exported)."""

    spans: int = 0
    requests: int = 0
    bytes: int = 0
    rejected_spans: int = 0


@dataclass(frozen=True)
class Request:
    payload: bytes
    spans: int
    position: int  # the tracked position once this request is delivered


class OtlpExportRunner(LogFollower):
    """Exports the spans of the notification log after a tracked position (module doc)."""

    what, output = "OTLP export", "spans"
    stats: ExportStats

    def __init__(self, store: EventStore, positions: PositionStore, builder: SpanBuilder,
                 encoder: OtlpEncoder, transport: OtlpTransport, *, name: str = DEFAULT_NAME,
                 page_size: int = 1000, batch_spans: int = 512, batch_bytes: int = 4_000_000,
                 track: bool = True, start: int | None = None) -> None:
        super().__init__(store, positions, ExportStats(), transport, name=name,
                         page_size=page_size, track=track, start=start, log=log)
        self.builder = builder
        self.encoder = encoder
        self.batch_spans = batch_spans
        self.room = batch_bytes - encoder.overhead

    def export_page(self, cancel: threading.Event | None = None) -> int:
        """Export the next page; returns how many notifications it covered (0: at the head).

        Raises CollectorUnavailableError / ExportRejectedError with the position left after the
        last delivered request."""
        notes = self.read_page()
        if not notes:
            return 0
        self.send_all(self.pack(self._items(notes), self.position), cancel)
        self.advance(notes[-1].id)
        self.stats.notifications += len(notes)
        return len(notes)

    def _items(self, notes: Sequence[Any]) -> Iterator[tuple[int, list[SpanRecord]]]:
        """``(notification id, spans)`` of ``notes``, built as ``pack`` consumes them: a page
        at once with the bounded grouping (few spans, and groups that span blocks find them
        in the page), ``FIXED_CHUNK`` notifications at a time with a fixed one (a span per
        step: a page of blocks could be a million spans), so memory stays bounded."""
        chunk = FIXED_CHUNK if self.builder.grouping.fixed else len(notes)
        for first in range(0, len(notes), chunk):
            part = notes[first:first + chunk]
            yield from zip([note.id for note in part], self._build(part, [n.id for n in part]),
                           strict=True)

    def export_run(self, run_id: UUID, cancel: threading.Event | None = None) -> int:
        """Export the spans of one run (its aggregate and step streams), without reading or
        moving the tracked position; returns how many spans were sent."""
        before = self.stats.spans
        stream, after = ids.step_stream_id(run_id), 0
        while True:
            page = self.store.read_stream(stream, after=after, limit=self.page_size)
            if not page:
                break
            self._send_built(page, cancel)
            after = page[-1].originator_version
        self._send_built(self.store.read_stream(run_id), cancel)
        return self.stats.spans - before

    def _send_built(self, events: Sequence[StoredEvent], cancel: threading.Event | None) -> None:
        built = self._build(events, [0] * len(events))
        self.send_all(self.pack([(0, spans) for spans in built], 0), cancel, advance=False)

    def pack(self, items: Iterable[tuple[int, list[SpanRecord]]], position: int) -> Iterator[Request]:
        """Requests for ``(notification id, spans)`` items in order. A request's position is
        the last notification all of whose spans are in it or an earlier request."""
        pending: list[bytes] = []
        size, done = 0, position
        for note_id, spans in items:
            for encoded in self._encoded(note_id, spans):
                entry = entry_size(encoded)
                if pending and (len(pending) >= self.batch_spans or size + entry > self.room):
                    yield Request(self.encoder.request(pending), len(pending), done)
                    pending, size = [], 0
                pending.append(encoded)
                size += entry
            done = note_id
        if pending:
            yield Request(self.encoder.request(pending), len(pending), done)

    def _build(self, events: Sequence[Any], positions: list[int]) -> list[list[SpanRecord]]:
        """The spans of each event, skipping those that fail alone (module doc)."""
        return self.build_each(self.builder.build, events, positions)

    def _encoded(self, position: int, spans: list[SpanRecord]) -> list[bytes]:
        """An event's spans encoded, but for those that cannot be (skipped)."""
        encoded = []
        for record in spans:
            try:
                encoded.append(self.encoder.encode_span(record, self.room))
            except Exception as error:  # skipped and recorded, see the module doc
                self.skip(position, error, f"{record.name!r} span")
        return encoded

    def send_all(self, requests: Iterator[Request], cancel: threading.Event | None = None,
                 advance: bool = True) -> None:
        """Send ``requests`` in order, one at a time, building and encoding the next one while
        the previous is on the wire (the transport runs on a sender thread; its socket waits
        release the GIL). Each request is confirmed (and the position advanced) before the
        next is sent, so a failure raises with the position after the last delivered one and
        sends nothing after it."""
        in_flight: tuple[Request, Future[ExportResult]] | None = None
        try:
            for request in requests:  # (pack encodes it while ``in_flight`` is sent)
                if in_flight is not None:
                    sent, in_flight = in_flight, None
                    self._confirm(*sent, advance)
                in_flight = (request, self._send_aside(request, cancel))
        except Exception:
            if in_flight is not None and in_flight[1].exception() is None:
                self._confirm(*in_flight, advance)  # it went out: count it, then raise
            raise
        if in_flight is not None:
            self._confirm(*in_flight, advance)

    def _send_aside(self, request: Request, cancel: threading.Event | None) -> Future[ExportResult]:
        """``request`` exported on a daemon thread of its own: a process that exits (or a
        Ctrl-C) while a collector is down never waits for the transport's retries (an
        interrupt leaves the request unconfirmed: sent again next time)."""
        sent: Future[ExportResult] = Future()

        def export() -> None:
            try:
                sent.set_result(self.transport.export(request.payload, cancel))
            except BaseException as error:
                sent.set_exception(error)

        threading.Thread(target=export, name=f"lineage-{self.name}-send", daemon=True).start()
        return sent

    def _confirm(self, request: Request, sent: Future[ExportResult], advance: bool) -> None:
        """Wait for ``request``'s delivery; raise its failure, or count it and move the
        position past it when ``advance``."""
        result = sent.result()
        self.stats.requests += 1
        self.stats.spans += request.spans
        self.stats.bytes += len(request.payload)
        self.stats.rejected_spans += result.rejected_spans
        if advance:
            self.advance(request.position)
