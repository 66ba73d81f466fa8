"""What the span builder shares: its state, what it reads back from the store, and how a
span of a run's trace is assembled (ids, parent, bounded attributes). ``lineage.spans.builder``
is the entry point; ``lineage.spans.step_spans`` builds the step-range spans on top of this.

Threading: one instance per thread (it caches which runs exist and checkpoint spans).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper, StoredEvent

from lineage.codec.step_decode import StepBlock
from lineage.codec.step_read import BlockCodec
from lineage.domain import Artifact, Run
from lineage.ports import EventStore
from lineage.spans import identity
from lineage.spans.model import (
    DEFAULT_LIMITS,
    STATUS_ERROR,
    STATUS_OK,
    STATUS_UNSET,
    SpanEvent,
    SpanLimits,
    SpanLink,
    SpanRecord,
    make_event,
    make_link,
    make_span,
    ns_of,
)

RUN_SPAN, STEPS_SPAN, FINISH_SPAN = "train run", "train steps", "finish run"
CHECKPOINT_SPAN, EVALUATE_SPAN = "save checkpoint", "evaluate"
FAILURE_SPAN, RECOVERY_SPAN = "detect failure", "recover run"
BEST_SPAN, RETIRE_SPAN, DELETE_SPAN = "select best checkpoint", "retire checkpoint", "delete checkpoint"
_CACHE = 4096


class SpanAssembly:
    """State, store reads and span assembly shared by the builder's handlers."""

    def __init__(self, store: EventStore, mapper: Mapper, *,
                 limits: SpanLimits = DEFAULT_LIMITS,
                 grouping: identity.StepGrouping = identity.DEFAULT_GROUPING) -> None:
        self.store = store
        self.mapper = mapper
        self.limits = limits
        self.grouping = grouping
        self.blocks = BlockCodec(mapper)
        self._started: OrderedDict[UUID, bool] = OrderedDict()
        self._checkpoints: OrderedDict[UUID, tuple[UUID, bytes]] = OrderedDict()  # trace, span
        self._page: dict[UUID, list[StoredEvent]] = {}  # stream -> the page's step rows
        self._decoded: dict[tuple[Any, int], StepBlock] = {}
        self._run_spans: OrderedDict[UUID, bytes] = OrderedDict()

    # -- reading back ----------------------------------------------------------------------------

    def _history(self, run_id: UUID, upto: int) -> list[Any]:
        """The run's aggregate events up to and including version ``upto``."""
        return [self.mapper.to_domain_event(s)  # versions run 1, 2, ...: the first ``upto``
                for s in self.store.read_stream(run_id, limit=upto)]

    def _run_started(self, run_id: UUID) -> bool:
        """Whether ``run_id`` names a started run (a link to anything else would dangle)."""
        started = self._started.get(run_id)
        if started is None:
            first = self.store.read_stream(run_id, limit=1)
            event: Any = self.mapper.to_domain_event(first[0]) if first else None
            started = remember(self._started, run_id, isinstance(event, Run.Started))
        return started

    def _registered(self, artifact_id: UUID) -> Artifact.Registered | None:
        first = self.store.read_stream(artifact_id, limit=1)
        event: Any = self.mapper.to_domain_event(first[0]) if first else None
        return event if isinstance(event, Artifact.Registered) else None

    def _checkpoint_link(self, artifact_id: UUID, kind: str) -> SpanLink | None:
        """A link to the ``save checkpoint`` span of ``artifact_id`` (None: no run saved it)."""
        found = self._checkpoints.get(artifact_id)
        if found is None:
            registered = self._registered(artifact_id)
            if registered is None or registered.run_id is None:
                return None
            saved = next((e for e in map(self.mapper.to_domain_event,
                                         self.store.read_stream(registered.run_id))
                          if isinstance(e, Run.CheckpointSaved) and e.artifact_id == artifact_id),
                         None)
            if saved is None:
                return None
            found = remember(self._checkpoints, artifact_id, (registered.run_id, identity.event_span_id(
                identity.CHECKPOINT, saved.event_id)))
        run_id, span_id = found
        return make_link(identity.trace_id(run_id), span_id,
                         [("lineage.link.type", kind), ("lineage.artifact.id", str(artifact_id))],
                         self.limits)

    def _run_link(self, run_id: UUID, kind: str) -> SpanLink | None:
        if not self._run_started(run_id):
            return None
        return make_link(identity.trace_id(run_id), identity.run_span_id(run_id),
                         [("lineage.link.type", kind), ("lineage.run.id", str(run_id))], self.limits)

    # -- assembling ------------------------------------------------------------------------------

    def _exception(self, event: Any) -> SpanEvent:
        return make_event("exception", event.occurred_at,
                          [("exception.type", event.error_type),
                           ("exception.message", event.message)], self.limits)

    def _child(self, event: Any, span_id: bytes, name: str, pairs: list[tuple[str, Any]], *,
               events: Iterable[SpanEvent] = (), links: Iterable[SpanLink] = (),
               status: str = STATUS_UNSET, message: str = "",
               start_ns: int | None = None) -> SpanRecord:
        """A span of the run's trace ending at ``event`` (zero length unless ``start_ns``)."""
        return self._span(event.originator_id, span_id, name, start_ns,
                          ns_of(event.occurred_at), pairs, list(events), list(links), status,
                          message)

    def _run_span_id(self, run_id: UUID) -> bytes:
        found = self._run_spans.get(run_id)
        if found is None:
            found = remember(self._run_spans, run_id, identity.run_span_id(run_id))
        return found

    def _span(self, run_id: UUID, span_id: bytes, name: str, start_ns: int | None, end_ns: int,
              pairs: list[tuple[str, Any]], events: list[SpanEvent] | None = None,
              links: list[SpanLink] | None = None, status: str = STATUS_UNSET,
              message: str = "") -> SpanRecord:
        """A span of ``run_id``'s trace; every span but the run's is a child of the run's."""
        parent = b"" if name == RUN_SPAN else self._run_span_id(run_id)
        return make_span(identity.trace_id(run_id), span_id, parent, name,
                         end_ns if start_ns is None else start_ns, end_ns, pairs, events or [],
                         links or [], status, message, self.limits)



def uuid_of(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)


def attempt_of(event: Any) -> int:
    return event.attempts if isinstance(event, Run.RecoveryExhausted) else event.attempt


def count_of(history: list[Any], kind: type) -> int:
    return sum(1 for event in history if isinstance(event, kind))


def last_of(history: list[Any], kind: type, attempt: int | None = None) -> Any:
    for event in reversed(history):
        if isinstance(event, kind) and (attempt is None or getattr(event, "attempt", None) == attempt):
            return event
    return None


def run_status(finished: Any) -> tuple[str, str]:
    """The status of a finished run's ``train run`` and ``finish run`` spans. LineageIR's span
    status is ``ok`` or ``error`` (no unset), and the OTLP export says the same: only a
    completed run is ok; failed, superseded and cancelled runs are errors (with the reason)."""
    if finished.status == "completed":
        return STATUS_OK, ""
    return STATUS_ERROR, finished.reason or f"run {finished.status}"


def remember(cache: OrderedDict[UUID, Any], key: UUID, value: Any) -> Any:
    cache[key] = value
    if len(cache) > _CACHE:
        cache.popitem(last=False)
    return value
