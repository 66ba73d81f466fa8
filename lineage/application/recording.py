"""The recording port: what run handles, recovery, retention, heartbeats and integrations need
to write events, and nothing more (DESIGN §10).

``Recorder`` is the narrow interface (an envelope for a new event, a submit of a command, the
step queue and a clock); ``WriterRecorder`` implements it on the writer thread
(``lineage.application.writer``). The composition root (``lineage.bootstrap``) builds one per
tracker and hands it to everything that records, so no helper ever holds the Tracker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

from lineage.application.commands import as_uuid
from lineage.application.handles import Pending
from lineage.application.step_log import QueuedStep, StepQueue
from lineage.application.unit_of_work import UnitOfWork
from lineage.application.write_batch import Command
from lineage.application.writer import Writer
from lineage.domain.envelope import Envelope, Origin
from lineage.timestamps import normalise

Handler = Callable[[UnitOfWork], Any]


class Recorder(Protocol):
    """Writes events through the writer. Every method may be called from any thread."""

    @property
    def origin(self) -> Origin:
        """The source, tenant and actor every event it writes carries."""

    def envelope(self, event_id: Any = None, occurred_at: Any = None) -> Envelope:
        """The envelope of a new event, validated now (ValidationError names the field)."""

    def submit(self, label: str, handler: Handler, envelope: Envelope, *,
               background: bool = False) -> Pending:
        """Queue a command; the Pending resolves to ``handler``'s value once committed. Raises
        the writer's loss report once after it gave up, unless ``background`` (a helper
        thread: the report is for the training code's next call)."""

    @property
    def put_step(self) -> Callable[[QueuedStep], None]:
        """Queue one validated step, a tuple in ``step_log.StepRecord``'s order (blocks only
        while the queue is full). A property, so a run handle binds the writer's own method: no
        extra call on the hot path."""

    @property
    def step_queue(self) -> StepQueue:
        """The same queue for ``log_step`` to append to without a call while it has room
        (``step_log.StepQueue``); its ``put`` is ``put_step``."""

    @property
    def now_ns(self) -> Callable[[], int]:
        """Epoch nanoseconds for a step's default time. A property, like ``put_step``: the
        system clock's own ``time.time_ns`` when no clock was injected."""

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything queued so far is committed; WriterError on losses."""


class WriterRecorder:
    """``Recorder`` on a ``Writer``: envelopes carry this process's source, tenant and actor,
    times come from ``clock`` and event ids from ``new_id``."""

    def __init__(self, writer: Writer, origin: Origin, *,
                 clock: Callable[[], datetime] | None, new_id: Callable[[], UUID]) -> None:
        """``clock`` None: the system clock (and ``time.time_ns`` for steps)."""
        self.writer = writer
        self.origin = origin
        self.clock = clock or utc_now
        self.new_id = new_id
        self._clock_given = clock is not None

    @property
    def put_step(self) -> Callable[[QueuedStep], None]:
        return self.writer.put_step

    @property
    def step_queue(self) -> StepQueue:
        """The writer's own (the local writer's, or a remote shipper's)."""
        queue: StepQueue = self.writer.step_queue
        return queue

    def envelope(self, event_id: Any = None, occurred_at: Any = None) -> Envelope:
        if occurred_at is None:
            moment, raw = self.clock(), None
        else:
            moment, raw = normalise(occurred_at)
        return Envelope(
            event_id=self.new_id() if event_id is None else as_uuid(event_id, "event_id"),
            occurred_at=moment, occurred_at_raw=raw, **self.origin._asdict(),
        )

    def submit(self, label: str, handler: Handler, envelope: Envelope, *,
               background: bool = False) -> Pending:
        future = self.writer.submit(Command(handler, envelope, label), background=background)
        return Pending(future, self.writer)

    @property
    def now_ns(self) -> Callable[[], int]:
        return self._clock_ns if self._clock_given else time.time_ns

    def _clock_ns(self) -> int:
        return int(self.clock().timestamp() * 1_000_000) * 1000

    def flush(self, timeout: float | None = None) -> None:
        self.writer.flush(timeout)


def utc_now() -> datetime:
    """The system clock, in UTC (the default clock of every tracker)."""
    return datetime.now(UTC)
