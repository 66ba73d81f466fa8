"""Questions answered straight from the event store (until the read models answer them).

These replay aggregates and read the ends of step streams; they never scan a run's steps except
when asked to list them. ``Tracker`` inherits them; the CLI formats what they return.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Mapper

from lineage.application.commands import id_of
from lineage.application.job_status import JOB_STATUSES, job_status
from lineage.domain import Artifact, Run, StepRecorded, ids
from lineage.errors import ArtifactNotFoundError, RunNotFoundError, ValidationError
from lineage.ports import EventStore

RUN_STARTED = f"{Run.Started.__module__}:{Run.Started.__qualname__}"
PAGE = 1000


@dataclass(frozen=True)
class LostSteps:
    """Steps a run logged after the checkpoint it was recovered from (redone by its successor)."""

    first_step: int
    last_step: int
    count: int


@dataclass(frozen=True)
class RunView:
    id: UUID
    name: str
    status: str
    job: dict[str, Any]
    tags: dict[str, str]
    started_at: datetime
    finished_at: datetime | None
    start_step: int
    steps: int
    last_step: int | None
    last_metrics: dict[str, float]
    checkpoints: list[tuple[UUID, int]]
    evaluations: int
    failures: int
    corrupted: bool
    resumed_from: UUID | None
    superseded_by: UUID | None
    inputs: list[UUID] = field(default_factory=list)
    job_status: str = "running"  # lineage.application.job_status: pending, running, ..., superseded
    status_reason: str | None = None
    failure_retryable: bool = False  # the last failure recorded says a retry may help
    recovering: bool = False
    recovery_attempts: int = 0
    best_checkpoint: UUID | None = None
    best_value: float | None = None
    resumed_checkpoint: UUID | None = None
    lost_steps: LostSteps | None = None


@dataclass(frozen=True)
class ArtifactView:
    id: UUID
    type: str
    uri: str
    name: str | None
    size: int | None
    checksum_algorithm: str | None
    checksum: str | None
    format: str | None
    run_id: UUID | None
    step: int | None
    parents: list[UUID]
    status: str
    registered_at: datetime
    metadata: dict[str, Any]
    includes_optimizer: bool | None
    aliases: list[str] = field(default_factory=list)  # from the read models; [] when replayed
    pins: dict[str, str] = field(default_factory=dict)  # why retention keeps it (replay only)
    deletion: str | None = None  # outcome of deleting a retired artifact's bytes (replay only)
    last_verified_ok: bool | None = None


class Queries:
    store: EventStore
    mapper: Mapper

    def run(self, run: Any) -> RunView:
        run_id = id_of(run, "run")
        aggregate = self._replay(run_id)
        if not isinstance(aggregate, Run):
            raise RunNotFoundError(run_id)
        last = self.store.read_stream(ids.step_stream_id(run_id), desc=True, limit=1)
        step: StepRecorded | None = self.mapper.to_domain_event(last[0]) if last else None  # type: ignore[assignment]
        count = last[0].originator_version if last else 0
        status, reason = job_status(aggregate, count)
        return RunView(
            id=run_id, name=aggregate.name, status=aggregate.status, job=aggregate.job,
            tags=aggregate.tags, started_at=aggregate.started_at,
            finished_at=aggregate.finished_at, start_step=aggregate.start_step,
            steps=count,
            last_step=step.step if step else None, last_metrics=step.metrics if step else {},
            checkpoints=list(aggregate.checkpoints), evaluations=aggregate.evaluations,
            failures=aggregate.failures, corrupted=aggregate.corrupted,
            resumed_from=aggregate.resumed_from, superseded_by=aggregate.superseded_by,
            inputs=list(aggregate.inputs), job_status=status, status_reason=reason,
            failure_retryable=aggregate.failure_retryable,
            recovering=aggregate.recovering, recovery_attempts=aggregate.recovery_attempts,
            best_checkpoint=aggregate.best_checkpoint, best_value=aggregate.best_value,
            resumed_checkpoint=aggregate.resumed_checkpoint,
            lost_steps=None if aggregate.lost_steps is None else LostSteps(*aggregate.lost_steps),
        )

    def runs(self, status: str | None = None) -> list[RunView]:
        """Every run, oldest first; with ``status``, only runs with that job status (pending,
        running, completed, failed, corrupted, superseded, cancelled: see lineage.application.job_status)."""
        if status is not None and status not in JOB_STATUSES:
            raise ValidationError("status", f"must be one of {', '.join(JOB_STATUSES)}; "
                                            f"got {status!r}", status)
        views = [self.run(n.originator_id) for n in self._log([RUN_STARTED])]
        return [v for v in views if status is None or v.job_status == status]

    def run_events(self, run: Any, *, steps: bool = True) -> list[Any]:
        """The run's aggregate events and (when ``steps``) its step events, in commit order."""
        run_id = id_of(run, "run")
        self.run(run_id)
        if not steps:
            return [self.mapper.to_domain_event(s) for s in self.store.read_stream(run_id)]
        # Interleaving with steps needs the global order: one pass over the log.
        wanted = {run_id, ids.step_stream_id(run_id)}
        return [self.mapper.to_domain_event(n) for n in self._log() if n.originator_id in wanted]

    def steps(self, run: Any, *, after: int = 0, limit: int | None = None,
              last: bool = False) -> list[StepRecorded]:
        """Step events of a run in the order logged (``after`` is a stream position); with
        ``last``, the final ``limit`` steps (still in logged order)."""
        stream = ids.step_stream_id(id_of(run, "run"))
        stored = self.store.read_stream(stream, after=after or None, limit=limit, desc=last)
        events = [self.mapper.to_domain_event(s) for s in stored]
        return events[::-1] if last else events  # type: ignore[return-value]

    def artifact(self, artifact: Any) -> ArtifactView:
        artifact_id = id_of(artifact, "artifact")
        aggregate = self._replay(artifact_id)
        if not isinstance(aggregate, Artifact):
            raise ArtifactNotFoundError(artifact_id)
        return ArtifactView(
            id=artifact_id, type=aggregate.type, uri=aggregate.uri, name=aggregate.name,
            size=aggregate.size, checksum_algorithm=aggregate.checksum_algorithm,
            checksum=aggregate.checksum, format=aggregate.format, run_id=aggregate.run_id,
            step=aggregate.step, parents=list(aggregate.parents), status=aggregate.status,
            registered_at=aggregate.created_on, metadata=aggregate.metadata,
            includes_optimizer=aggregate.includes_optimizer, pins=dict(aggregate.pins),
            deletion=aggregate.deletion, last_verified_ok=aggregate.last_verified_ok,
        )

    def _replay(self, aggregate_id: UUID) -> Aggregate | None:
        aggregate: Any = None
        for stored in self.store.read_stream(aggregate_id):
            event: Any = self.mapper.to_domain_event(stored)
            aggregate = event.mutate(aggregate)
        return cast(Aggregate | None, aggregate)

    def _log(self, topics: list[str] | None = None) -> Iterator[Any]:
        start = 1
        while True:
            page = self.store.read_log(start, PAGE, topics or ())
            yield from page
            if len(page) < PAGE:
                return
            start = page[-1].id + 1
