"""The ``train steps`` spans: one per step group of a run's step stream (the trace identity's
grouping, ``lineage.spans.identity``, or the export's ``StepGrouping``), built from the stored
step blocks' columns.

A span of several steps has the range (``lineage.step.first/min/max/count``, the stream
versions ``lineage.stream.version.first/last``, from which ``Tracker.steps(run,
after=first - 1, limit=count)`` gives every step back), the last step's metrics
(``lineage.metric.NAME``), each metric's ``.min`` / ``.max`` / ``.mean`` over the group, and
``step`` events: every step of a group of up to 100 (so the first 10,000 steps of a run are all
in its trace), 100 evenly spaced ones of a longer group. A span of one step (``StepGrouping(1)``)
has that step's values and no events.

Threading: part of ``SpanBuilder``; one per thread.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import replace
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from lineage.codec.block_peek import peek_count
from lineage.codec.dispatch import handles
from lineage.codec.step_block import STEPS_TOPIC
from lineage.codec.step_decode import StepBlock
from lineage.codec.step_read import read_blocks
from lineage.domain import StepRecorded
from lineage.domain.steps import StepsRecorded
from lineage.spans import identity
from lineage.spans.assembly import STEPS_SPAN, SpanAssembly, uuid_of
from lineage.spans.model import SpanEvent, SpanRecord, attributes, prefixed

STEP_EVENTS = 100  # most ``step`` events on one span (OpenTelemetry's default limit is 128)


class StepSpans(SpanAssembly):
    """The step handler of ``SpanBuilder``; see the module docstring."""

    @handles(StepRecorded, StepsRecorded)
    def _step(self, stored: StoredEvent) -> list[SpanRecord]:
        """The groups whose last version this block holds (versions ``seq_from..last``)."""
        last = stored.originator_version
        if self.grouping.fixed == 1:
            return self._single_steps(self._decode(stored))
        # Most blocks end no group (groups grow to thousands of steps): find out from the
        # block's header, and decode only the blocks that do.
        count = peek_count(stored.state) if stored.topic == STEPS_TOPIC else 1
        ends = self.grouping.ends(last - count + 1, last)
        if not ends:
            return []
        block = self._decode(stored)
        return [self._step_span(uuid_of(stored.originator_id), end, block) for end in ends]

    def _single_steps(self, block: StepBlock) -> list[SpanRecord]:
        """A span per step (``StepGrouping(1)``): the same content ``_step_span`` gives a
        one-step group, made in one pass over the block (the hot path of that option)."""
        run_id, limits = block.run_id, self.limits
        run_text, trace, parent = str(run_id), identity.trace_id(run_id), self._run_span_id(run_id)
        # Metric names short enough and few enough to need no bounding: the values are the
        # block's int64 / float64 columns, within OTLP's types as they are.
        plain = (len(block.metric_names) <= limits.max_attributes - 7 and all(
            len(name) + 15 <= limits.max_value_length for name in block.metric_names))
        keys = [(name, "lineage.metric." + name) for name in sorted(block.metric_names)]
        spans = []
        for i in range(block.count):
            version, step, metrics = block.seq_from + i, block.steps[i], block.metrics(i)
            pairs: list[tuple[str, Any]] = [
                ("lineage.run.id", run_text), ("lineage.step", step),
                ("lineage.epoch", block.epoch(i)), ("lineage.step.first", step),
                ("lineage.step.count", 1), ("lineage.stream.version.first", version),
                ("lineage.tokens", block.token_count(i)),
                *[(key, metrics[name]) for name, key in keys if name in metrics]]
            if plain:  # (prefixed's pairs, with its key order, without sorting each step's)
                values, dropped = tuple([pair for pair in pairs if pair[1] is not None]), 0
            else:
                values, dropped = attributes(pairs, limits)
            at = block.occurred_us[i] * 1000
            spans.append(SpanRecord(trace, self.grouping.span_id(run_id, version - 1), parent,
                                    STEPS_SPAN, at, at, values, dropped_attributes=dropped))
        return spans

    def _step_span(self, stream: UUID, last: int, block: StepBlock | None = None) -> SpanRecord:
        """The ``train steps`` span of ``last``'s group (``last`` may end a partial group,
        when the run finished), from the blocks' columns (module doc); ``block`` holds
        ``last`` (then a group that starts in it needs no other)."""
        group = self.grouping.group(last)
        first = self.grouping.versions(group)[0]
        parts = ([(block, block.slice_seq(first, last))]
                 if block is not None and first >= block.seq_from
                 else self._parts(stream, first, last))
        head_block, head_range = parts[0]
        final_block, final_range = parts[-1]
        head, final = head_range[0], final_range[-1]
        count = sum(len(indexes) for _, indexes in parts)
        run_id = final_block.run_id
        pairs: list[tuple[str, Any]] = [
            ("lineage.run.id", str(run_id)), ("lineage.step", final_block.steps[final]),
            ("lineage.epoch", final_block.epoch(final)),
            ("lineage.step.first", head_block.steps[head])]
        if count == 1:
            pairs += [("lineage.step.count", 1), ("lineage.stream.version.first", first),
                      ("lineage.tokens", final_block.token_count(final)),
                      *prefixed("lineage.metric.", final_block.metrics(final))]
            events: list[SpanEvent] = []
        else:
            numbers = [block.steps[i] for block, indexes in parts for i in indexes]
            tokens = [block.tokens[i] for block, indexes in parts if block.tokens is not None
                      for i in indexes if block.tokens[i] is not None]
            pairs += [("lineage.step.min", min(numbers)), ("lineage.step.max", max(numbers)),
                      ("lineage.step.count", count), ("lineage.step.group", group),
                      ("lineage.stream.version.first", first),
                      ("lineage.stream.version.last", last),
                      ("lineage.tokens", sum(tokens) if tokens else None),
                      *prefixed("lineage.metric.", final_block.metrics(final)),
                      *_summaries(parts)]
            events = self._step_events(parts, count)
        span = self._span(run_id, self.grouping.span_id(run_id, group), STEPS_SPAN,
                          head_block.occurred_us[head] * 1000,
                          final_block.occurred_us[final] * 1000, pairs, events)
        sampled_out = count - len(events) if events else 0
        return replace(span, dropped_events=span.dropped_events + sampled_out) \
            if sampled_out else span

    def _step_events(self, parts: list[tuple[StepBlock, range]], count: int) -> list[SpanEvent]:
        """A ``step`` event per step (its number, epoch, tokens and metrics, at its time):
        every step when the group has at most ``STEP_EVENTS``, else that many evenly spaced
        ones, first and last included (the rest are counted as dropped events)."""
        wanted = (range(count) if count <= STEP_EVENTS else
                  sorted({k * (count - 1) // (STEP_EVENTS - 1) for k in range(STEP_EVENTS)}))
        events: list[SpanEvent] = []
        offset, chosen = 0, iter(wanted)
        position = next(chosen, None)
        for block, indexes in parts:
            while position is not None and position < offset + len(indexes):
                i = indexes[position - offset]
                values, dropped = attributes(
                    [("lineage.step", block.steps[i]), ("lineage.epoch", block.epoch(i)),
                     ("lineage.tokens", block.token_count(i)),
                     *prefixed("lineage.metric.", block.metrics(i))],
                    self.limits, self.limits.max_event_attributes)
                events.append(SpanEvent("step", block.occurred_us[i] * 1000, values, dropped))
                position = next(chosen, None)
            offset += len(indexes)
        return events

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


def _summaries(parts: list[tuple[StepBlock, range]]) -> list[tuple[str, Any]]:
    """``lineage.metric.NAME.min`` / ``.max`` / ``.mean`` of each metric over the group."""
    names = sorted({name for block, _ in parts for name in block.metric_names})
    pairs: list[tuple[str, Any]] = []
    for name in names:
        values = [value for block, indexes in parts for value in _values(block, name, indexes)]
        if values:  # numbers (validated when logged, stored as float64 or int64 columns)
            pairs += [(f"lineage.metric.{name}.min", min(values)),
                      (f"lineage.metric.{name}.max", max(values)),
                      (f"lineage.metric.{name}.mean", sum(values) / len(values))]
    return pairs


def _values(block: StepBlock, name: str, indexes: range) -> list[Any]:
    """The values of metric ``name`` at block ``indexes`` (steps without it left out)."""
    column = block.column(name)
    if column is None or not indexes:
        return []
    if column.where is None:
        return list(column.values[indexes.start:indexes.stop])
    low = bisect_left(column.where, indexes.start)
    high = bisect_left(column.where, indexes.stop)
    return list(column.values[low:high])
