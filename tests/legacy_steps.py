"""Writing steps the way stores before step blocks held them: one ``StepRecorded`` per row
(the library's mapper, topic ``lineage.domain.steps:StepRecorded``), one event-id row per step,
all the steps of one append sharing one ``recorded_at``, as the old writer stored a batch.

``LegacySteps.append`` goes straight to the tracker's event store: flush the tracker before, so
its writer has nothing queued in between."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from uuid import UUID

from lineage.application.step_log import random_hex_ids
from lineage.domain.ids import step_stream_id
from lineage.domain.steps import StepRecorded


class Step(NamedTuple):
    """One legacy step to store: which run, and what it says."""

    run_id: UUID
    step: int
    metrics: dict[str, float]
    epoch: int | None = None
    durations: dict[str, float] | None = None
    tokens: int | None = None
    resources: dict[str, float] | None = None
    event_id: UUID | None = None  # None: a generated (version-7) id, as the writer made
    occurred_at: datetime | None = None  # None: recorded_at minus a little
    occurred_at_raw: str | None = None
    actor: str | None = None  # None: the tracker's


class LegacySteps:
    """Appends legacy step rows to ``tracker``'s store, counting each run's versions."""

    def __init__(self, tracker: Any) -> None:
        self.tracker = tracker
        self.versions: dict[UUID, int] = {}

    def append(self, steps: Sequence[Step], recorded_at: datetime | None = None) -> list[str]:
        """Store ``steps`` in one append (one ``recorded_at``); returns their event ids (hex)."""
        now = recorded_at or datetime.now(UTC)
        self.versions.clear()  # the tracker may have stored steps since
        envelope = self.tracker.envelope()
        stored, ids = [], []
        generated = random_hex_ids(len(steps))
        for index, given in enumerate(steps):
            stream = step_stream_id(given.run_id)
            version = self._next(stream)
            event_id = given.event_id or UUID(hex=next(generated))
            event = StepRecorded(  # type: ignore[call-arg]
                originator_id=stream, originator_version=version, timestamp=now,
                run_id=given.run_id, step=given.step, epoch=given.epoch, metrics=given.metrics,
                durations=given.durations, tokens=given.tokens, resources=given.resources,
                event_id=event_id,
                occurred_at=given.occurred_at or now - timedelta(microseconds=997 * (index + 1)),
                occurred_at_raw=given.occurred_at_raw, source=envelope.source,
                tenant_id=envelope.tenant_id, actor=given.actor or envelope.actor)
            stored.append(self.tracker.mapper.to_stored_event(event))
            ids.append(event_id.hex)
        self.tracker.store.append(stored, ids)
        return ids

    def _next(self, stream: UUID) -> int:
        version = self.versions.get(stream)
        if version is None:
            last = self.tracker.store.read_stream(stream, desc=True, limit=1)
            version = last[0].originator_version if last else 0
        self.versions[stream] = version + 1
        return version + 1
