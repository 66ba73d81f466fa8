"""The writer's view of the aggregates while it builds one batch.

Aggregates are cached between batches (the writer is their only user in this process). A batch
mutates cached aggregates in place; when a command fails half-way, the aggregates it touched are
rebuilt from the store plus the batch's earlier events, so one bad command never leaks into the
others. When the whole append fails, the writer drops the cache and rebuilds the batch.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar, cast
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Mapper

from lineage.domain import Alias, Artifact, Run
from lineage.domain.envelope import Envelope
from lineage.errors import ArtifactNotFoundError, InvariantError, RunNotFoundError
from lineage.ports import EventStore

A = TypeVar("A", bound=Aggregate)

CACHE_LIMIT = 10_000


class AggregateCache:
    """Least-recently-used aggregates by id, shared by the writer's batches."""

    def __init__(self, limit: int = CACHE_LIMIT) -> None:
        self.limit = limit
        self.items: OrderedDict[UUID, Aggregate] = OrderedDict()

    def get(self, aggregate_id: UUID) -> Aggregate | None:
        aggregate = self.items.get(aggregate_id)
        if aggregate is not None:
            self.items.move_to_end(aggregate_id)
        return aggregate

    def put(self, aggregate: Aggregate) -> None:
        self.items[aggregate.id] = aggregate
        self.items.move_to_end(aggregate.id)
        while len(self.items) > self.limit:
            self.items.popitem(last=False)

    def clear(self) -> None:
        self.items.clear()


class UnitOfWork:
    """Loads and creates aggregates for command handlers; collects their events in order."""

    def __init__(self, store: EventStore, mapper: Mapper, cache: AggregateCache,
                 timestamp: datetime) -> None:
        self.store = store
        self.mapper = mapper
        self.cache = cache
        self.timestamp = timestamp
        self.events: list[Any] = []
        self.stored: list[Any] = []
        self.hex_ids: list[str] = []
        self.event_ids: list[UUID] = []
        self._batch_events: dict[UUID, list[Any]] = {}
        self._touched: set[UUID] = set()
        self._envelope: Envelope | None = None
        self._issued: dict[UUID, int] = {}
        self._logged: list[Any] = []
        self._expected: dict[UUID, int] = {}  # see expect_unchanged

    # -- used by command handlers ------------------------------------------------------------

    def run(self, run_id: UUID) -> Run:
        run = self._get(run_id, Run)
        if run is None:
            raise RunNotFoundError(run_id)
        return run

    def expect_unchanged(self, run: Run) -> None:
        """What this batch adds for ``run`` without an event of its own (its steps) assumes
        the run is as loaded here: the append checks, in its transaction, that the run's
        stream still ends at that version (``expectations``), and fails the batch as a
        conflict when another writer moved it on (finished the run, say); the batch is then
        built again against the run as stored. A run with events in the batch needs no check:
        those events take versions another writer would have taken first."""
        if self.is_stored(run.id):
            self._expected.setdefault(run.id, run.version)

    def expectations(self) -> list[tuple[UUID, int]]:
        """For ``EventStore.append(expect=)``: the runs ``expect_unchanged`` named that the
        batch, as built, adds no event to."""
        return [(run_id, version) for run_id, version in self._expected.items()
                if run_id not in self._batch_events]

    def fresh_run(self, run_id: UUID) -> Run:
        """``run``, reloaded first when the store holds events the cached copy lacks (another
        writer changed it). One stream read."""
        run = self.run(run_id)
        last = self.store.read_stream(run_id, desc=True, limit=1)
        if last and last[0].originator_version > run.version:
            self.cache.items.pop(run_id, None)
            run = self.run(run_id)
        return run

    def artifact(self, artifact_id: UUID) -> Artifact:
        artifact = self.find_artifact(artifact_id)
        if artifact is None:
            raise ArtifactNotFoundError(artifact_id)
        return artifact

    def find_artifact(self, artifact_id: UUID) -> Artifact | None:
        return self._get(artifact_id, Artifact)

    def find_alias(self, alias_id: UUID) -> Alias | None:
        return self._get(alias_id, Alias)

    def find_run(self, run_id: UUID) -> Run | None:
        return self._get(run_id, Run)

    def is_stored(self, aggregate_id: UUID) -> bool:
        """Whether the aggregate as loaded here is all stored: no event of this batch, nor one
        the running command has not handed in yet, changes it (False when not loaded)."""
        aggregate = self.cache.get(aggregate_id)
        return (aggregate is not None and not aggregate.pending_events
                and aggregate_id not in self._batch_events)

    def exists(self, aggregate_id: UUID) -> bool:
        """Whether any aggregate (of any kind) has this id."""
        return self.cache.get(aggregate_id) is not None or bool(
            self.store.read_stream(aggregate_id, limit=1)) or aggregate_id in self._batch_events

    def envelope(self) -> Envelope:
        """The envelope for the next event of the current command (see ``apply``)."""
        base = self._envelope
        if base is None:
            raise InvariantError("envelope() is only valid inside a command handler (apply)")
        count = len(self._issued)
        issued = base if count == 0 else replace(base, event_id=uuid5(base.event_id, str(count)))
        self._issued[issued.event_id] = count
        return issued

    def next_log_version(self, stream_id: UUID) -> int:
        """The next version of a log stream (a stream no aggregate owns, such as a run's
        heartbeats): its last stored version, or the last one this batch adds, plus one."""
        for event in reversed([*self._logged, *self.events]):
            if event.originator_id == stream_id:
                return int(event.originator_version) + 1
        last = self.store.read_stream(stream_id, desc=True, limit=1)
        return (last[0].originator_version if last else 0) + 1

    def log(self, event: Any) -> None:
        """Append a log-stream event built by the handler (its ``event_id`` from ``envelope()``
        and its version from ``next_log_version``). Dropped if the handler then fails."""
        self._logged.append(event)

    def add(self, aggregate: A) -> A:
        self.cache.put(aggregate)
        self._touched.add(aggregate.id)
        return aggregate

    # -- used by the writer --------------------------------------------------------------------

    def apply(self, handler: Callable[[UnitOfWork], Any], envelope: Envelope) -> Any:
        """Run one command handler; on success its events join the batch, on error none do.

        The k-th event of a command gets ``event_id`` = the envelope's id for k = 0, and a
        uuid5 of it after that, so a retried command carries the same ids.
        """
        self._touched = set()
        self._envelope, self._issued, self._logged = envelope, {}, []
        try:
            result = handler(self)
        except BaseException:
            self._discard_touched()
            raise
        finally:
            self._envelope = None
        new_events: list[Any] = [
            event
            for aggregate_id in self._touched
            if (aggregate := self.cache.get(aggregate_id)) is not None
            for event in aggregate.collect_events()
        ]
        new_events.extend(self._logged)
        self._logged = []
        # Keep the order in which the handler triggered them (envelopes were issued in order).
        new_events.sort(key=lambda event: self._issued[event.event_id])
        for event in new_events:
            self._batch_events.setdefault(event.originator_id, []).append(event)
            self.events.append(event)
            self.event_ids.append(event.event_id)
        return result

    def _discard_touched(self) -> None:
        for aggregate_id in self._touched:
            aggregate = self.cache.get(aggregate_id)
            if aggregate is not None and aggregate.pending_events:
                self.cache.items.pop(aggregate_id, None)

    def _get(self, aggregate_id: UUID, kind: type[A]) -> A | None:
        aggregate = self.cache.get(aggregate_id)
        if aggregate is None:
            aggregate = self._load(aggregate_id)
            if aggregate is None:
                return None
            self.cache.put(aggregate)
        if not isinstance(aggregate, kind):
            return None
        self._touched.add(aggregate_id)
        return aggregate

    def _load(self, aggregate_id: UUID) -> Aggregate | None:
        aggregate: Any = None
        for stored in self.store.read_stream(aggregate_id):
            event: Any = self.mapper.to_domain_event(stored)
            aggregate = event.mutate(aggregate)
        for event in self._batch_events.get(aggregate_id, ()):
            aggregate = event.mutate(aggregate)
        return cast(Aggregate | None, aggregate)
