"""Following the notification log from a tracked position: the one mechanism the exporters
(``otlp.runner.OtlpExportRunner``, ``openlineage.runner.OpenLineageRunner``) share.

A follower reads the log a page at a time after its position (the ``lineage_positions`` row
named ``name``), turns each stored event into what it delivers (spans, OpenLineage events), and
moves the position only past notifications whose output was delivered (``advance``): at least
once, resumable after a crash. ``background_export.BackgroundExporter`` runs one on a thread
with the backoff.

An event it cannot turn into output (a payload that does not decode, an unknown shape: any
error of the builder for that event alone) is skipped, never retried for ever (``build_each``):
its position and reason are kept in ``skipped`` (the last ``SKIPPED_KEPT``), counted in
``stats.skipped`` and logged as a warning on the follower's logger. A failing store
(``StoreError``) is not skipped: it stops the page, and the next attempt starts from the position.
With ``track=False`` (a dry run, a re-export) the position store is not written.
Threading: one follower per thread.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from lineage.errors import StoreError
from lineage.ports import EventStore, PositionStore

SKIPPED_KEPT = 100
Built = TypeVar("Built")


@dataclass
class FollowStats:
    """What a follower has done so far (``position``: last notification fully delivered)."""

    position: int = 0
    notifications: int = 0
    skipped: int = 0  # events it could not turn into output (``LogFollower.skipped``)


class LogFollower:
    """Reads the log after a tracked position and skips what it cannot read (module doc).

    ``what`` names the exporter in log lines ("OTLP export"); ``output`` what it builds
    ("spans"); ``transport`` delivers it (has ``close()``) to ``endpoint`` (for messages)."""

    what = "export"
    output = "output"

    def __init__(self, store: EventStore, positions: PositionStore, stats: FollowStats,
                 transport: Any, *, name: str, page_size: int, track: bool, start: int | None,
                 log: logging.Logger) -> None:
        self.store = store
        self.positions = positions
        self.transport = transport
        self.name = name
        self.page_size = page_size
        self.track = track
        self.log = log
        self.stats = stats
        self.stats.position = start if start is not None else positions.get(name)
        self.skipped: deque[tuple[int, str]] = deque(maxlen=SKIPPED_KEPT)  # (position, reason)

    @property
    def position(self) -> int:
        return self.stats.position

    @property
    def endpoint(self) -> str:
        """Where the output goes, for messages (the transport's ``endpoint``)."""
        return str(self.transport.endpoint)

    def head(self) -> int:
        return self.store.max_position()

    def export_page(self, cancel: threading.Event | None = None) -> int:
        """Deliver the output of the next page (``read_page``); returns how many notifications
        it covered (0: at the head). Raises ExportError when delivery fails, with the position
        left after the last notification fully delivered."""
        raise NotImplementedError

    def export_to_head(self, cancel: threading.Event | None = None,
                       on_page: Callable[[Any], None] | None = None) -> int:
        """Export page after page until the log has nothing new (or ``cancel`` is set);
        returns how many notifications were covered. ``on_page`` gets ``stats`` after each."""
        total = 0
        while not (cancel is not None and cancel.is_set()):
            covered = self.export_page(cancel)
            if covered == 0:
                break
            total += covered
            if on_page is not None:
                on_page(self.stats)
        return total

    def read_page(self) -> Sequence[Any]:
        """The notifications after the position (at most ``page_size``; empty at the head)."""
        return self.store.read_log(self.position + 1, self.page_size)

    def build_each(self, build: Callable[[Sequence[Any]], list[list[Built]]],
                   events: Sequence[Any], positions: Sequence[int]) -> list[list[Built]]:
        """``build(events)`` (a list of what each event makes); when that fails, event by
        event, an empty list for (and a skip recorded at the position of) each event that
        fails alone."""
        try:
            return build(events)
        except StoreError:
            raise
        except Exception:  # an event we cannot read must not stop the export: find it
            pass
        built: list[list[Built]] = []
        for event, position in zip(events, positions, strict=True):
            try:
                built.extend(build([event]))
            except StoreError:
                raise
            except Exception as error:  # skipped and recorded, see the module doc
                self.skip(position, error)
                built.append([])
        return built

    def skip(self, position: int, error: Exception, detail: str = "") -> None:
        """Record that the event at ``position`` (or part of it: ``detail``) was skipped."""
        lines = str(error).strip().splitlines()
        reason = (detail + ": " if detail else "") + \
            f"{type(error).__name__}: {lines[0] if lines else ''}"
        self.skipped.append((position, reason[:500]))
        self.stats.skipped += 1
        self.log.warning("%s skipped the event at position %d, which it cannot turn into %s: "
                         "%s", self.what, position, self.output, reason)

    def skipped_rows(self) -> list[dict[str, Any]]:
        """``skipped`` as ``{"position", "reason"}`` rows (the CLI's ``--json``)."""
        return [{"position": at, "reason": why} for at, why in self.skipped]

    def skipped_line(self) -> str:
        """``; skipped N event(s) ...`` (the first five, with reasons) for a summary line, or
        "" when nothing was skipped."""
        if not self.stats.skipped:
            return ""
        return (f"; skipped {self.stats.skipped} event(s) it cannot turn into {self.output}: "
                + ", ".join(f"position {at} ({why})" for at, why in list(self.skipped)[:5]))

    def advance(self, position: int) -> None:
        """Move the tracked position to ``position`` (never back)."""
        if position <= self.stats.position:
            return
        if self.track:
            self.positions.set(self.name, position)
        self.stats.position = position
