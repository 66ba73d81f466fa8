"""Stored events -> finished spans (DESIGN §6), a pure function of the store's events.

``SpanBuilder.build(events)`` takes stored events in log order (a page of the notification log,
or one run's streams) and returns, for each, the spans that event completes:

=============================  ================================================================
event                          span (parent: the run's ``train run`` span)
=============================  ================================================================
``StepRecorded``               ``train step``: from the previous step (or the run's start) to
                               this step; with ``steps_per_span`` N > 1, one ``train steps``
                               span per N step-stream versions, when version k*N arrives
``Run.CheckpointSaved``        ``save checkpoint``, linked to its parent checkpoints' spans
``Run.EvaluationRecorded``     ``evaluate``
``Run.FailureDetected``        ``detect failure`` (status error, an ``exception`` event)
``Run.RecoveryCompleted`` /    ``recover run``: from its ``RecoveryStarted`` to this event,
``RecoveryFailed`` /           linked to the resumed run and the checkpoint it resumed from
``RecoveryExhausted``
``Run.Finished`` (the first)   ``train run`` (the root): from ``Started`` to ``Finished``, with
                               the job spec, inputs, failures as ``exception`` events, links to
                               the run and checkpoint it resumed from; with N > 1 also the last,
                               partial ``train steps`` span
=============================  ================================================================

Every span is emitted once, by exactly one event, with its final content: what it needs from
other events is read back from the store (the run's aggregate stream, a range of the step
stream, a parent artifact) and restricted to versions at or before the triggering event, so a
re-export of the same events gives equal records. Other events (artifacts, aliases, run start,
inputs) complete no span. A run that never finishes has no ``train run`` span (its children
point at a parent that never arrives, which trace viewers show as such). A later ``Finished``
(``failed`` -> ``superseded``) adds nothing: the ``recover run`` span carries the outcome.

Threading: one builder per thread (it caches run starts and checkpoint spans).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper, StoredEvent

from lineage.codec.step_facts import StepFacts, fast_step
from lineage.domain import Artifact, Run, StepRecorded, ids
from lineage.ports import EventStore
from lineage.spans.model import (
    DEFAULT_LIMITS,
    STATUS_ERROR,
    STATUS_OK,
    STATUS_UNSET,
    SpanEvent,
    SpanLimits,
    SpanLink,
    SpanRecord,
    flatten,
    make_event,
    make_link,
    make_span,
    ns_of,
    prefixed,
    span_id_of,
    trace_id_of,
)

RUN_SPAN, STEP_SPAN, STEPS_SPAN = "train run", "train step", "train steps"
CHECKPOINT_SPAN, EVALUATE_SPAN = "save checkpoint", "evaluate"
FAILURE_SPAN, RECOVERY_SPAN = "detect failure", "recover run"
_CACHE = 4096


def topic_of(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


STEP_TOPIC = topic_of(StepRecorded)
_RECOVERY_ENDS = (Run.RecoveryCompleted, Run.RecoveryFailed, Run.RecoveryExhausted)


@dataclass(frozen=True, slots=True)
class RunStart:
    """What a child span needs of its run: the run span's id and the run's start time."""

    span_id: bytes
    start_ns: int


class SpanBuilder:
    """Builds span records from stored events; see the module docstring for the mapping."""

    def __init__(self, store: EventStore, mapper: Mapper, *, steps_per_span: int = 1,
                 limits: SpanLimits = DEFAULT_LIMITS) -> None:
        if steps_per_span < 1:
            raise ValueError(f"steps_per_span must be at least 1, got {steps_per_span}")
        self.store = store
        self.mapper = mapper
        self.steps_per_span = steps_per_span
        self.limits = limits
        self._starts: OrderedDict[UUID, RunStart] = OrderedDict()
        self._checkpoints: OrderedDict[UUID, tuple[UUID, UUID]] = OrderedDict()
        # Steps are most of the log: read their plain JSON directly when the mapper adds
        # nothing (no cipher, no compression); see ``fast_step``.
        self._fast = getattr(mapper, "cipher", None) is None and getattr(
            mapper, "compressor", None) is None
        self._page: dict[tuple[UUID, int], StoredEvent] = {}
        self._decoded: dict[tuple[UUID, int], Any] = {}
        self._handlers = {
            STEP_TOPIC: self._step,
            topic_of(Run.CheckpointSaved): self._checkpoint,
            topic_of(Run.EvaluationRecorded): self._evaluation,
            topic_of(Run.FailureDetected): self._failure,
            topic_of(Run.Finished): self._finished,
            **{topic_of(cls): self._recovery for cls in _RECOVERY_ENDS},
        }

    def build(self, events: Sequence[StoredEvent]) -> list[list[SpanRecord]]:
        """For each stored event (in log order), the spans it completes (often none)."""
        self._page = {(_uuid(e.originator_id), e.originator_version): e for e in events
                      if e.topic == STEP_TOPIC}
        self._decoded = {}
        try:
            results = []
            for stored in events:
                handler = self._handlers.get(stored.topic)
                results.append(handler(stored) if handler is not None else [])
            return results
        finally:
            self._page, self._decoded = {}, {}

    # -- steps -----------------------------------------------------------------------------------

    def _step(self, stored: StoredEvent) -> list[SpanRecord]:
        version = stored.originator_version
        if version % self.steps_per_span:
            return []
        return [self._step_span(_uuid(stored.originator_id), version)]

    def _step_span(self, stream: UUID, last: int) -> SpanRecord:
        """The span of the step-stream versions in ``last``'s group (``last`` may end a
        partial group when the run finished)."""
        first = (last - 1) // self.steps_per_span * self.steps_per_span + 1
        steps: list[StepFacts] = self._steps(stream, max(first - 1, 1), last)
        previous = steps.pop(0) if first > 1 else None
        final = steps[-1]
        start = self._run_start(final.run_id)
        began = ns_of(previous.occurred_at) if previous else start.start_ns if start else None
        pairs: list[tuple[str, Any]] = [("lineage.run.id", str(final.run_id)),
                                        ("lineage.step", final.step), ("lineage.epoch", final.epoch)]
        if self.steps_per_span == 1:
            pairs += [("lineage.tokens", final.tokens)]
            pairs += prefixed("lineage.metric.", final.metrics)
            pairs += prefixed("lineage.duration.", final.durations)
            pairs += prefixed("lineage.resource.", final.resources)
        else:
            tokens = [s.tokens for s in steps if s.tokens is not None]
            pairs += [("lineage.step.first", steps[0].step), ("lineage.step.count", len(steps)),
                      ("lineage.stream.version.first", first), ("lineage.stream.version.last", last),
                      ("lineage.tokens", sum(tokens) if tokens else None)]
            pairs += prefixed("lineage.metric.", final.metrics)
        return self._span(final.run_id, final.event_id, start, STEP_SPAN if self.steps_per_span == 1
                          else STEPS_SPAN, began, ns_of(final.occurred_at), pairs)

    def _steps(self, stream: UUID, first: int, last: int) -> list[Any]:
        """Decoded step events of versions ``first..last``, from the page when it has them."""
        keys = [(stream, version) for version in range(first, last + 1)]
        if not all(key in self._page for key in keys):
            for stored in self.store.read_stream(stream, after=first - 1, limit=last - first + 1):
                self._page[(stream, stored.originator_version)] = stored
        return [self._decode(key) for key in keys]

    def _decode(self, key: tuple[UUID, int]) -> Any:
        event = self._decoded.get(key)
        if event is None:
            stored = self._page[key]
            event = (self._fast and fast_step(stored.state)) or self.mapper.to_domain_event(stored)
            self._decoded[key] = event
        return event

    # -- run events ------------------------------------------------------------------------------

    def _checkpoint(self, stored: StoredEvent) -> list[SpanRecord]:
        event: Run.CheckpointSaved = self.mapper.to_domain_event(stored)  # type: ignore[assignment]
        registered = self._registered(event.artifact_id)
        pairs: list[tuple[str, Any]] = [
            ("lineage.run.id", str(event.originator_id)), ("lineage.step", event.step),
            ("lineage.artifact.id", str(event.artifact_id)), ("lineage.artifact.uri", event.uri),
            ("lineage.artifact.format", event.format),
            ("lineage.artifact.includes_optimizer", event.includes_optimizer)]
        links: list[SpanLink] = []
        if registered is not None:
            pairs += [("lineage.artifact.checksum", registered.checksum),
                      ("lineage.artifact.checksum_algorithm", registered.checksum_algorithm),
                      ("lineage.artifact.size", registered.size)]
            for parent in registered.parents:
                link = self._checkpoint_link(parent, "derived_from")
                if link is not None:
                    links.append(link)
        return [self._child(event, CHECKPOINT_SPAN, pairs, links=links)]

    def _evaluation(self, stored: StoredEvent) -> list[SpanRecord]:
        event: Run.EvaluationRecorded = self.mapper.to_domain_event(stored)  # type: ignore[assignment]
        pairs = [("lineage.run.id", str(event.originator_id)), ("lineage.step", event.step),
                 ("lineage.eval.dataset", event.dataset), ("lineage.eval.split", event.split),
                 *prefixed("lineage.metric.", event.metrics)]
        return [self._child(event, EVALUATE_SPAN, pairs)]

    def _failure(self, stored: StoredEvent) -> list[SpanRecord]:
        event: Run.FailureDetected = self.mapper.to_domain_event(stored)  # type: ignore[assignment]
        pairs = [("lineage.run.id", str(event.originator_id)), ("error.type", event.error_type),
                 ("lineage.step", event.step), ("lineage.failure.signal", event.signal),
                 ("lineage.failure.retryable", event.retryable),
                 ("lineage.failure.corrupted", event.corrupted)]
        return [self._child(event, FAILURE_SPAN, pairs, events=[self._exception(event)],
                            status=STATUS_ERROR, message=event.message or event.error_type)]

    def _recovery(self, stored: StoredEvent) -> list[SpanRecord]:
        event: Any = self.mapper.to_domain_event(stored)
        history = self._history(event.originator_id, stored.originator_version)[:-1]
        attempt = event.attempts if isinstance(event, Run.RecoveryExhausted) else event.attempt
        closed = any(isinstance(e, Run.RecoveryCompleted | Run.RecoveryFailed)
                     and e.attempt == attempt for e in history)
        started = None if closed else _last(history, Run.RecoveryStarted, attempt)
        selected = _last(history, Run.RecoveryCheckpointSelected, attempt)
        outcome = {Run.RecoveryCompleted: "completed", Run.RecoveryFailed: "failed",
                   Run.RecoveryExhausted: "exhausted"}[type(event)]
        pairs: list[tuple[str, Any]] = [
            ("lineage.run.id", str(event.originator_id)), ("lineage.recovery.attempt", attempt),
            ("lineage.recovery.outcome", outcome),
            ("lineage.recovery.strategy", started.strategy if started else None)]
        if selected is not None:
            pairs += [("lineage.recovery.checkpoint.id", str(selected.checkpoint_id)),
                      ("lineage.step", selected.step), ("lineage.recovery.reason", selected.reason)]
        links: list[SpanLink | None] = []
        events: list[SpanEvent] = []
        status, message = STATUS_OK, ""
        if isinstance(event, Run.RecoveryCompleted):
            pairs += [("lineage.recovery.new_run.id", str(event.new_run_id)),
                      ("lineage.recovery.checkpoint.id", str(event.checkpoint_id))]
            links = [self._run_link(event.new_run_id, "resumed_as"),
                     self._checkpoint_link(event.checkpoint_id, "resumed_from_checkpoint")]
        elif isinstance(event, Run.RecoveryFailed):
            pairs.append(("error.type", event.error_type))
            events.append(self._exception(event))
            status, message = STATUS_ERROR, event.message or event.error_type
        else:
            pairs.append(("error.type", "recovery_exhausted"))
            status, message = STATUS_ERROR, f"recovery exhausted after {attempt} attempt(s)"
        began = ns_of(started.occurred_at) if started else None
        return [self._child(event, RECOVERY_SPAN, pairs, events=events,
                            links=[link for link in links if link is not None], status=status,
                            message=message, start_ns=began)]

    def _finished(self, stored: StoredEvent) -> list[SpanRecord]:
        run_id = _uuid(stored.originator_id)
        history = self._history(run_id, stored.originator_version)
        if not history or not isinstance(history[0], Run.Started) or any(
                isinstance(e, Run.Finished) for e in history[:-1]):
            return []  # the run span went out with the first Finished
        stream = ids.step_stream_id(run_id)
        last = self.store.read_stream(stream, desc=True, limit=1)
        steps = last[0].originator_version if last else 0
        spans = [self._run_span(history, steps)]
        if steps % self.steps_per_span:
            spans.insert(0, self._step_span(stream, steps))
        return spans

    def _run_span(self, history: list[Any], steps: int) -> SpanRecord:
        started, finished = history[0], history[-1]
        run_id = started.originator_id
        failures = [e for e in history if isinstance(e, Run.FailureDetected)]
        resumed = _last(history, Run.ResumedFrom)
        pairs: list[tuple[str, Any]] = [
            ("lineage.run.id", str(run_id)), ("lineage.run.name", started.name),
            ("lineage.run.status", finished.status), ("lineage.run.reason", finished.reason),
            ("lineage.run.start_step", started.start_step), ("lineage.run.steps", steps),
            ("lineage.run.checkpoints", _count(history, Run.CheckpointSaved)),
            ("lineage.run.evaluations", _count(history, Run.EvaluationRecorded)),
            ("lineage.run.failures", len(failures)),
            ("lineage.run.resumed_from", resumed.previous_run_id if resumed else None),
            ("lineage.run.superseded_by", finished.superseded_by),
            ("lineage.tenant.id", started.tenant_id), ("lineage.source", started.source),
            ("lineage.actor", started.actor)]
        status, message = _run_status(finished)
        if status == STATUS_ERROR:
            pairs.append(("error.type", failures[-1].error_type if failures else "_OTHER"))
        pairs += prefixed("lineage.tag.", started.tags)
        pairs += flatten("lineage.job", started.job)
        events = [self._exception(e) if isinstance(e, Run.FailureDetected) else make_event(
            "input used", e.occurred_at, [("lineage.artifact.id", str(e.artifact_id)),
                                          ("lineage.artifact.uri", e.uri),
                                          ("lineage.input.role", e.role)], self.limits)
                  for e in history if isinstance(e, Run.InputUsed | Run.FailureDetected)]
        links = [] if resumed is None else [
            self._run_link(resumed.previous_run_id, "resumed_from"),
            self._checkpoint_link(resumed.checkpoint_id, "resumed_from_checkpoint")]
        return self._span(run_id, started.event_id, None, RUN_SPAN, ns_of(started.occurred_at),
                          ns_of(finished.occurred_at), pairs, events,
                          [link for link in links if link is not None], status, message)

    # -- reading back ----------------------------------------------------------------------------

    def _history(self, run_id: UUID, upto: int) -> list[Any]:
        """The run's aggregate events up to and including version ``upto``."""
        return [self.mapper.to_domain_event(s) for s in self.store.read_stream(run_id)
                if s.originator_version <= upto]

    def _run_start(self, run_id: UUID) -> RunStart | None:
        start = self._starts.get(run_id)
        if start is None:
            first = self.store.read_stream(run_id, limit=1)
            event: Any = self.mapper.to_domain_event(first[0]) if first else None
            if not isinstance(event, Run.Started):
                return None
            start = _remember(self._starts, run_id,
                              RunStart(span_id_of(event.event_id), ns_of(event.occurred_at)))
        return start

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
            found = _remember(self._checkpoints, artifact_id,
                              (registered.run_id, saved.event_id))
        run_id, event_id = found
        return make_link(trace_id_of(run_id), span_id_of(event_id),
                         [("lineage.link.type", kind), ("lineage.artifact.id", str(artifact_id))],
                         self.limits)

    def _run_link(self, run_id: UUID, kind: str) -> SpanLink | None:
        start = self._run_start(run_id)
        if start is None:
            return None
        return make_link(trace_id_of(run_id), start.span_id,
                         [("lineage.link.type", kind), ("lineage.run.id", str(run_id))], self.limits)

    # -- assembling ------------------------------------------------------------------------------

    def _exception(self, event: Any) -> SpanEvent:
        return make_event("exception", event.occurred_at,
                          [("exception.type", event.error_type),
                           ("exception.message", event.message)], self.limits)

    def _child(self, event: Any, name: str, pairs: list[tuple[str, Any]], *,
               events: Iterable[SpanEvent] = (), links: Iterable[SpanLink] = (),
               status: str = STATUS_UNSET, message: str = "",
               start_ns: int | None = None) -> SpanRecord:
        """A span of the run's trace ending at ``event`` (zero length unless ``start_ns``)."""
        run_id = event.originator_id
        return self._span(run_id, event.event_id, self._run_start(run_id), name, start_ns,
                          ns_of(event.occurred_at), pairs, list(events), list(links), status,
                          message)

    def _span(self, run_id: UUID, event_id: UUID, parent: RunStart | None, name: str,
              start_ns: int | None, end_ns: int, pairs: list[tuple[str, Any]],
              events: list[SpanEvent] | None = None, links: list[SpanLink] | None = None,
              status: str = STATUS_UNSET, message: str = "") -> SpanRecord:
        return make_span(trace_id_of(run_id), span_id_of(event_id),
                         parent.span_id if parent is not None else b"", name,
                         end_ns if start_ns is None else start_ns, end_ns, pairs, events or [],
                         links or [], status, message, self.limits)


def _uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)


def _count(history: list[Any], kind: type) -> int:
    return sum(1 for event in history if isinstance(event, kind))


def _last(history: list[Any], kind: type, attempt: int | None = None) -> Any:
    for event in reversed(history):
        if isinstance(event, kind) and (attempt is None or getattr(event, "attempt", None) == attempt):
            return event
    return None


def _run_status(finished: Any) -> tuple[str, str]:
    if finished.status == "completed":
        return STATUS_OK, ""
    if finished.status == "cancelled":
        return STATUS_UNSET, ""
    return STATUS_ERROR, finished.reason or f"run {finished.status}"


def _remember(cache: OrderedDict[UUID, Any], key: UUID, value: Any) -> Any:
    cache[key] = value
    if len(cache) > _CACHE:
        cache.popitem(last=False)
    return value
