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
``RecoveryFailed`` /           linked to the resumed run and the checkpoint it resumed from;
                               the steps lost (``StepsLost``) as attributes and an event
``RecoveryExhausted``
``Run.BestCheckpointChanged``  ``select best checkpoint``, linked to the new best's span
``Artifact.Retired`` /         ``retire checkpoint`` / ``delete checkpoint`` in the trace of the
``DeletionRecorded``           run that saved the artifact, linked to its ``save checkpoint``
``Log.Sealed``                 ``seal log`` (``lineage.spans.seal_span``: in the seal stream's
                               trace, not a run's; the same span ``lineage seal --otlp`` sends)
``Run.Started``                ``train run`` (the root, no parent), zero length at the start,
                               with the job spec and tags: sent at once, so a running run's
                               trace has its root while it trains
``Run.Finished`` (the first)   ``finish run``: from ``Started`` to ``Finished``, with the
                               outcome (status), counts, inputs, failures as ``exception``
                               events, links to the run and checkpoint it resumed from; and
                               the run's last, partial ``train steps`` span
=============================  ================================================================

Ids, parents and the step grouping are the trace identity's (``lineage.spans.identity``), the
same as the read model's LineageIR trace of the same events.

Every span is emitted once, by exactly one event, with its final content: what it needs from
other events is read back from the store (the run's aggregate stream, a range of the step
stream, a parent artifact) and restricted to versions at or before the triggering event, so a
re-export of the same events gives equal records. Other events (artifact registrations,
aliases, inputs) complete no span. A run that never finishes has its root and the spans of what it
did, but no ``finish run``. A later ``Finished`` (``failed`` -> ``superseded``) adds nothing:
the ``recover run`` span carries the outcome.

Threading: one builder per thread (it caches which runs exist and checkpoint spans).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper, StoredEvent

from lineage.codec.dispatch import Dispatcher, handles
from lineage.domain import Artifact, Run, ids
from lineage.domain.seals import Log
from lineage.ports import EventStore
from lineage.proof.seals import TreeHead
from lineage.spans import identity
from lineage.spans.assembly import (
    BEST_SPAN,
    CHECKPOINT_SPAN,
    DELETE_SPAN,
    EVALUATE_SPAN,
    FAILURE_SPAN,
    FINISH_SPAN,
    RECOVERY_SPAN,
    RETIRE_SPAN,
    RUN_SPAN,
    STEPS_SPAN,
    attempt_of,
    count_of,
    last_of,
    run_status,
    uuid_of,
)
from lineage.spans.model import (
    DEFAULT_LIMITS,
    STATUS_ERROR,
    STATUS_OK,
    SpanEvent,
    SpanLimits,
    SpanLink,
    SpanRecord,
    flatten,
    make_event,
    make_link,
    ns_of,
    prefixed,
)
from lineage.spans.seal_span import seal_span
from lineage.spans.step_spans import StepSpans

__all__ = ["BEST_SPAN", "CHECKPOINT_SPAN", "DELETE_SPAN", "EVALUATE_SPAN", "FAILURE_SPAN",
           "FINISH_SPAN", "RECOVERY_SPAN", "RETIRE_SPAN", "RUN_SPAN", "STEPS_SPAN", "SpanBuilder"]

_RECOVERY_ENDS = (Run.RecoveryCompleted, Run.RecoveryFailed, Run.RecoveryExhausted)


class SpanBuilder(StepSpans, Dispatcher):
    """Builds span records from stored events; see the module docstring for the mapping. The
    step grouping is the trace identity's (shared with the read model) unless ``grouping``
    says otherwise (an export option)."""

    def __init__(self, store: EventStore, mapper: Mapper, *,
                 limits: SpanLimits = DEFAULT_LIMITS,
                 grouping: identity.StepGrouping = identity.DEFAULT_GROUPING) -> None:
        super().__init__(store, mapper, limits=limits, grouping=grouping)
        self._handlers = self.topics()  # dispatched on the stored topic, before decoding

    def build(self, events: Sequence[StoredEvent]) -> list[list[SpanRecord]]:
        """For each stored event (in log order), the spans it completes (often none)."""
        self._page = {}
        for stored in events:  # step rows by stream, decoded only when a span needs them
            if self.blocks.is_step(stored.topic):
                self._page.setdefault(uuid_of(stored.originator_id), []).append(stored)
        try:
            results = []
            for stored in events:
                handler = self._handlers.get(stored.topic)
                results.append(handler(stored) if handler is not None else [])
            return results
        finally:
            self._page = {}
            self._decoded.clear()


    @handles(Log.Sealed)
    def _seal(self, stored: StoredEvent) -> list[SpanRecord]:
        return [seal_span(TreeHead.of_event(self.mapper.to_domain_event(stored)))]

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
        attempt = attempt_of(event)
        closed = any(isinstance(e, _RECOVERY_ENDS) and attempt_of(e) == attempt for e in history)
        started = None if closed else last_of(history, Run.RecoveryStarted, attempt)
        # The attempt's span when this event closes an open attempt; else (an exhaustion
        # recorded with no attempt open) a span of its own.
        span_id = (identity.recovery_span_id(event.originator_id, attempt) if started is not None
                   else identity.event_span_id(identity.RECOVERY, event.event_id))
        selected = last_of(history, Run.RecoveryCheckpointSelected, attempt)
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
            lost = next((e for e in reversed(history) if isinstance(e, Run.StepsLost)
                         and e.new_run_id == event.new_run_id), None)
            if lost is not None:
                lost_pairs = [("lineage.steps_lost.count", lost.count),
                              ("lineage.steps_lost.first", lost.first_step),
                              ("lineage.steps_lost.last", lost.last_step),
                              ("lineage.steps_lost.after_checkpoint_step", lost.checkpoint_step)]
                pairs += lost_pairs
                events.append(make_event("steps lost", lost.occurred_at, lost_pairs, self.limits))
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

    @handles(Run.BestCheckpointChanged)
    def _best(self, stored: StoredEvent) -> list[SpanRecord]:
        event: Run.BestCheckpointChanged = self.mapper.to_domain_event(stored)  # type: ignore[assignment]
        pairs = [("lineage.run.id", str(event.originator_id)), ("lineage.step", event.eval_step),
                 ("lineage.best.artifact.id", str(event.artifact_id)),
                 ("lineage.best.previous_artifact.id", event.previous_artifact_id),
                 ("lineage.best.metric", event.metric), ("lineage.best.mode", event.mode),
                 ("lineage.best.value", event.value),
                 ("lineage.best.checkpoint_step", event.checkpoint_step)]
        link = self._checkpoint_link(event.artifact_id, "best_checkpoint")
        return [self._child(event, identity.event_span_id(identity.BEST, event.event_id),
                            BEST_SPAN, pairs, links=[link] if link is not None else [])]

    @handles(Artifact.Retired, Artifact.DeletionRecorded)
    def _retention(self, stored: StoredEvent) -> list[SpanRecord]:
        """Retention of an artifact a run saved, in that run's trace (other artifacts: none)."""
        event: Any = self.mapper.to_domain_event(stored)
        registered = self._registered(event.originator_id)
        if registered is None or registered.run_id is None or not self._run_started(
                registered.run_id):
            return []
        pairs: list[tuple[str, Any]] = [
            ("lineage.run.id", str(registered.run_id)),
            ("lineage.artifact.id", str(event.originator_id)),
            ("lineage.artifact.uri", registered.uri), ("lineage.step", registered.step)]
        if isinstance(event, Artifact.Retired):
            name = RETIRE_SPAN
            pairs += [("lineage.retention.reason", event.reason),
                      ("lineage.retention.policy", event.policy)]
        else:
            name = DELETE_SPAN
            pairs += [("lineage.deletion.outcome", event.outcome),
                      ("lineage.deletion.detail", event.detail)]
        link = self._checkpoint_link(event.originator_id, "retention_of")
        return [self._span(registered.run_id, identity.event_span_id(identity.RETENTION,
                                                                     event.event_id),
                           name, None, ns_of(event.occurred_at), pairs,
                           links=[link] if link is not None else [])]

    @handles(Run.Started)
    def _run_begins(self, stored: StoredEvent) -> list[SpanRecord]:
        """The root ``train run`` span, at once (zero length): a running run's spans have
        their parent in the trace from the start; ``finish run`` completes it."""
        started: Run.Started = self.mapper.to_domain_event(stored)  # type: ignore[assignment]
        run_id = started.originator_id
        pairs: list[tuple[str, Any]] = [
            ("lineage.run.id", str(run_id)), ("lineage.run.name", started.name),
            ("lineage.run.start_step", started.start_step),
            ("lineage.tenant.id", started.tenant_id), ("lineage.source", started.source),
            ("lineage.actor", started.actor)]
        pairs += prefixed("lineage.tag.", started.tags)
        pairs += flatten("lineage.job", started.job)
        at = ns_of(started.occurred_at)
        return [self._span(run_id, identity.run_span_id(run_id), RUN_SPAN, at, at, pairs,
                           links=self._caller_link(run_id, stored.originator_version))]

    def _caller_link(self, run_id: UUID, started: int) -> list[SpanLink]:
        """A link to the caller's OpenTelemetry span the run was started in: the event right
        after ``Started``, committed with it (so reading it keeps the span deterministic)."""
        following = self.store.read_stream(run_id, after=started, limit=1)
        event: Any = self.mapper.to_domain_event(following[0]) if following else None
        if not isinstance(event, Run.TraceContextLinked):
            return []
        return [make_link(bytes.fromhex(event.trace_id), bytes.fromhex(event.span_id),
                          [("lineage.link.type", "started_in")], self.limits)]

    @handles(Run.Finished)
    def _finished(self, stored: StoredEvent) -> list[SpanRecord]:
        run_id = uuid_of(stored.originator_id)
        history = self._history(run_id, stored.originator_version)
        if not history or not isinstance(history[0], Run.Started) or any(
                isinstance(e, Run.Finished) for e in history[:-1]):
            return []  # the finish span went out with the first Finished
        stream = ids.step_stream_id(run_id)
        last = self.store.read_stream(stream, desc=True, limit=1)
        steps = last[0].originator_version if last else 0
        spans = [self._finish_span(history, steps)]
        if steps and not self.grouping.ends_group(steps):
            spans.insert(0, self._step_span(stream, steps))
        return spans

    def _finish_span(self, history: list[Any], steps: int) -> SpanRecord:
        """``finish run``: from the run's start to its first ``Finished``, with its outcome,
        counts, inputs, failures and the run it resumed."""
        started, finished = history[0], history[-1]
        run_id = started.originator_id
        failures = [e for e in history if isinstance(e, Run.FailureDetected)]
        resumed = last_of(history, Run.ResumedFrom)
        pairs: list[tuple[str, Any]] = [
            ("lineage.run.id", str(run_id)), ("lineage.run.name", started.name),
            ("lineage.run.status", finished.status), ("lineage.run.reason", finished.reason),
            ("lineage.run.start_step", started.start_step), ("lineage.run.steps", steps),
            ("lineage.run.checkpoints", count_of(history, Run.CheckpointSaved)),
            ("lineage.run.evaluations", count_of(history, Run.EvaluationRecorded)),
            ("lineage.run.failures", len(failures)),
            ("lineage.run.resumed_from", resumed.previous_run_id if resumed else None),
            ("lineage.run.superseded_by", finished.superseded_by)]
        status, message = run_status(finished)
        if status == STATUS_ERROR:
            pairs.append(("error.type", failures[-1].error_type if failures else "_OTHER"))
        events = [self._exception(e) if isinstance(e, Run.FailureDetected) else make_event(
            "input used", e.occurred_at, [("lineage.artifact.id", str(e.artifact_id)),
                                          ("lineage.artifact.uri", e.uri),
                                          ("lineage.input.role", e.role)], self.limits)
                  for e in history if isinstance(e, Run.InputUsed | Run.FailureDetected)]
        links = [] if resumed is None else [
            self._run_link(resumed.previous_run_id, "resumed_from"),
            self._checkpoint_link(resumed.checkpoint_id, "resumed_from_checkpoint")]
        return self._span(run_id, identity.finish_span_id(run_id), FINISH_SPAN,
                          ns_of(started.occurred_at),
                          ns_of(finished.occurred_at), pairs, events,
                          [link for link in links if link is not None], status, message)
