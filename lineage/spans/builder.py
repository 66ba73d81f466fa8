"""Stored events -> finished spans (DESIGN §6), a pure function of the store's events.

``SpanBuilder.build(events)`` takes stored events in log order (a page of the notification log,
or one run's streams) and returns, for each, the spans that event completes:

=============================  ================================================================
event                          span (parent: the run's ``train run`` span)
=============================  ================================================================
steps (a stored step block)    ``train steps``: one per step group whose last step-stream
                               version the block holds (``identity.STEPS_PER_SPAN`` steps),
                               from the group's first step to its last
``Run.CheckpointSaved``        ``save checkpoint``, linked to its parent checkpoints' spans
``Run.EvaluationRecorded``     ``evaluate``
``Run.FailureDetected``        ``detect failure`` (status error, an ``exception`` event)
``Run.RecoveryCompleted`` /    ``recover run``: from its ``RecoveryStarted`` to this event,
``RecoveryFailed`` /           linked to the resumed run and the checkpoint it resumed from
``RecoveryExhausted``
``Run.Finished`` (the first)   ``train run`` (the root): from ``Started`` to ``Finished``, with
                               the job spec, inputs, failures as ``exception`` events, links to
                               the run and checkpoint it resumed from; and the run's last,
                               partial ``train steps`` span
=============================  ================================================================

Ids, parents and the step grouping are the trace identity's (``lineage.spans.identity``), the
same as the read model's LineageIR trace of the same events.

Every span is emitted once, by exactly one event, with its final content: what it needs from
other events is read back from the store (the run's aggregate stream, a range of the step
stream, a parent artifact) and restricted to versions at or before the triggering event, so a
re-export of the same events gives equal records. Other events (artifacts, aliases, run start,
inputs) complete no span. A run that never finishes has no ``train run`` span (its children
point at a parent that never arrives, which trace viewers show as such). A later ``Finished``
(``failed`` -> ``superseded``) adds nothing: the ``recover run`` span carries the outcome.

Threading: one builder per thread (it caches which runs exist and checkpoint spans).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper, StoredEvent

from lineage.codec.dispatch import Dispatcher, handles
from lineage.codec.step_decode import StepBlock
from lineage.codec.step_read import BlockCodec, read_blocks
from lineage.domain import Artifact, Run, StepRecorded, ids
from lineage.domain.steps import StepsRecorded
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
    flatten,
    make_event,
    make_link,
    make_span,
    ns_of,
    prefixed,
)

RUN_SPAN, STEPS_SPAN = "train run", "train steps"
CHECKPOINT_SPAN, EVALUATE_SPAN = "save checkpoint", "evaluate"
FAILURE_SPAN, RECOVERY_SPAN = "detect failure", "recover run"
_CACHE = 4096



_RECOVERY_ENDS = (Run.RecoveryCompleted, Run.RecoveryFailed, Run.RecoveryExhausted)


class SpanBuilder(Dispatcher):
    """Builds span records from stored events; see the module docstring for the mapping. The
    step grouping is the trace identity's (``identity.STEPS_PER_SPAN``), shared with the read
    model, so it is not configurable."""

    def __init__(self, store: EventStore, mapper: Mapper, *,
                 limits: SpanLimits = DEFAULT_LIMITS) -> None:
        self.store = store
        self.mapper = mapper
        self.limits = limits
        self.blocks = BlockCodec(mapper)
        self._started: OrderedDict[UUID, bool] = OrderedDict()
        self._checkpoints: OrderedDict[UUID, tuple[UUID, bytes]] = OrderedDict()  # trace, span
        self._page: dict[UUID, list[StoredEvent]] = {}  # stream -> the page's step rows
        self._decoded: dict[tuple[Any, int], StepBlock] = {}
        self._handlers = self.topics()  # dispatched on the stored topic, before decoding

    def build(self, events: Sequence[StoredEvent]) -> list[list[SpanRecord]]:
        """For each stored event (in log order), the spans it completes (often none)."""
        self._page = {}
        for stored in events:  # step rows by stream, decoded only when a span needs them
            if self.blocks.is_step(stored.topic):
                self._page.setdefault(_uuid(stored.originator_id), []).append(stored)
        try:
            results = []
            for stored in events:
                handler = self._handlers.get(stored.topic)
                results.append(handler(stored) if handler is not None else [])
            return results
        finally:
            self._page = {}
            self._decoded.clear()

    # -- steps -----------------------------------------------------------------------------------

    @handles(StepRecorded, StepsRecorded)
    def _step(self, stored: StoredEvent) -> list[SpanRecord]:
        """The groups whose last version this block holds (versions ``seq_from..last``)."""
        last = stored.originator_version
        first = self._decode(stored).seq_from
        per = identity.STEPS_PER_SPAN
        ends = range((first + per - 1) // per * per, last + 1, per)
        return [self._step_span(_uuid(stored.originator_id), end) for end in ends]

    def _step_span(self, stream: UUID, last: int) -> SpanRecord:
        """The ``train steps`` span of ``last``'s group (``last`` may end a partial group,
        when the run finished), from the blocks' columns."""
        group = identity.step_group(last)
        first = identity.step_group_versions(group)[0]
        parts = self._parts(stream, first, last)
        head_block, head_range = parts[0]
        final_block, final_range = parts[-1]
        head, final = head_block.decoded(head_range[0]), final_block.decoded(final_range[-1])
        numbers = [block.steps[i] for block, indexes in parts for i in indexes]
        tokens = [block.tokens[i] for block, indexes in parts if block.tokens is not None
                  for i in indexes if block.tokens[i] is not None]
        run_id = final.run_uuid
        pairs: list[tuple[str, Any]] = [
            ("lineage.run.id", final.run_id), ("lineage.step", final.step),
            ("lineage.epoch", final.epoch), ("lineage.step.first", head.step),
            ("lineage.step.min", min(numbers)), ("lineage.step.max", max(numbers)),
            ("lineage.step.count", len(numbers)), ("lineage.step.group", group),
            ("lineage.stream.version.first", first), ("lineage.stream.version.last", last),
            ("lineage.tokens", sum(tokens) if tokens else None),
            *prefixed("lineage.metric.", final.metrics)]
        return self._span(run_id, identity.step_group_span_id(run_id, group), STEPS_SPAN,
                          ns_of(head.occurred_datetime), ns_of(final.occurred_datetime), pairs)

    def _parts(self, stream: UUID, first: int, last: int) -> list[tuple[StepBlock, range]]:
        """The blocks holding versions ``first..last`` with the indexes of those versions in
        each: from the page when it holds them all, else read from the store."""
        rows = [row for row in self._page.get(stream, ()) if row.originator_version >= first]
        parts = []
        for row in rows:
            block = self._decode(row)
            if block.seq_from > last:
                break
            parts.append((block, block.slice_seq(first, last)))
        if not parts or parts[0][0].seq_from > first:
            parts = [(block, block.slice_seq(first, last)) for block in
                     read_blocks(self.store, self.blocks, stream, first, last)]
        return [(block, indexes) for block, indexes in parts if indexes]

    def _decode(self, stored: StoredEvent) -> StepBlock:
        """A page row decoded, kept while the page is built (a group may need it again)."""
        key = (stored.originator_id, stored.originator_version)
        block = self._decoded.get(key)
        if block is None:
            if len(self._decoded) >= 8:
                self._decoded.clear()  # blocks are visited in order: a few suffice
            block = self._decoded[key] = self.blocks.decode(stored)
        return block

    # -- run events ------------------------------------------------------------------------------

    @handles(Run.CheckpointSaved)
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
        return [self._child(event, identity.event_span_id(identity.CHECKPOINT, event.event_id),
                            CHECKPOINT_SPAN, pairs, links=links)]

    @handles(Run.EvaluationRecorded)
    def _evaluation(self, stored: StoredEvent) -> list[SpanRecord]:
        event: Run.EvaluationRecorded = self.mapper.to_domain_event(stored)  # type: ignore[assignment]
        pairs = [("lineage.run.id", str(event.originator_id)), ("lineage.step", event.step),
                 ("lineage.eval.dataset", event.dataset), ("lineage.eval.split", event.split),
                 *prefixed("lineage.metric.", event.metrics)]
        return [self._child(event, identity.event_span_id(identity.EVALUATION, event.event_id),
                            EVALUATE_SPAN, pairs)]

    @handles(Run.FailureDetected)
    def _failure(self, stored: StoredEvent) -> list[SpanRecord]:
        event: Run.FailureDetected = self.mapper.to_domain_event(stored)  # type: ignore[assignment]
        pairs = [("lineage.run.id", str(event.originator_id)), ("error.type", event.error_type),
                 ("lineage.step", event.step), ("lineage.failure.signal", event.signal),
                 ("lineage.failure.retryable", event.retryable),
                 ("lineage.failure.corrupted", event.corrupted)]
        return [self._child(event, identity.event_span_id(identity.FAILURE, event.event_id),
                            FAILURE_SPAN, pairs, events=[self._exception(event)],
                            status=STATUS_ERROR, message=event.message or event.error_type)]

    @handles(*_RECOVERY_ENDS)
    def _recovery(self, stored: StoredEvent) -> list[SpanRecord]:
        event: Any = self.mapper.to_domain_event(stored)
        history = self._history(event.originator_id, stored.originator_version)[:-1]
        attempt = _attempt(event)
        closed = any(isinstance(e, _RECOVERY_ENDS) and _attempt(e) == attempt for e in history)
        started = None if closed else _last(history, Run.RecoveryStarted, attempt)
        # The attempt's span when this event closes an open attempt; else (an exhaustion
        # recorded with no attempt open) a span of its own.
        span_id = (identity.recovery_span_id(event.originator_id, attempt) if started is not None
                   else identity.event_span_id(identity.RECOVERY, event.event_id))
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
        return [self._child(event, span_id, RECOVERY_SPAN, pairs, events=events,
                            links=[link for link in links if link is not None], status=status,
                            message=message, start_ns=began)]

    @handles(Run.Finished)
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
        if steps % identity.STEPS_PER_SPAN:
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
        return self._span(run_id, identity.run_span_id(run_id), RUN_SPAN, ns_of(started.occurred_at),
                          ns_of(finished.occurred_at), pairs, events,
                          [link for link in links if link is not None], status, message)

    # -- reading back ----------------------------------------------------------------------------

    def _history(self, run_id: UUID, upto: int) -> list[Any]:
        """The run's aggregate events up to and including version ``upto``."""
        return [self.mapper.to_domain_event(s) for s in self.store.read_stream(run_id)
                if s.originator_version <= upto]

    def _run_started(self, run_id: UUID) -> bool:
        """Whether ``run_id`` names a started run (a link to anything else would dangle)."""
        started = self._started.get(run_id)
        if started is None:
            first = self.store.read_stream(run_id, limit=1)
            event: Any = self.mapper.to_domain_event(first[0]) if first else None
            started = _remember(self._started, run_id, isinstance(event, Run.Started))
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
            found = _remember(self._checkpoints, artifact_id, (registered.run_id, identity.event_span_id(
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

    def _span(self, run_id: UUID, span_id: bytes, name: str, start_ns: int | None, end_ns: int,
              pairs: list[tuple[str, Any]], events: list[SpanEvent] | None = None,
              links: list[SpanLink] | None = None, status: str = STATUS_UNSET,
              message: str = "") -> SpanRecord:
        """A span of ``run_id``'s trace; every span but the run's is a child of the run's."""
        parent = b"" if name == RUN_SPAN else identity.run_span_id(run_id)
        return make_span(identity.trace_id(run_id), span_id, parent, name,
                         end_ns if start_ns is None else start_ns, end_ns, pairs, events or [],
                         links or [], status, message, self.limits)


def _uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)


def _attempt(event: Any) -> int:
    return event.attempts if isinstance(event, Run.RecoveryExhausted) else event.attempt


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
