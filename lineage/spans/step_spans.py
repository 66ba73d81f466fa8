"""The ``train steps`` spans: one per step group of a run's step stream (the trace identity's
grouping, ``lineage.spans.identity``), built from the stored step blocks' columns.

Threading: part of ``SpanBuilder``; one per thread.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from lineage.codec.dispatch import handles
from lineage.codec.step_block import StepBlock, read_blocks
from lineage.domain import StepRecorded
from lineage.domain.steps import StepsRecorded
from lineage.spans import identity
from lineage.spans.assembly import STEPS_SPAN, SpanAssembly, uuid_of
from lineage.spans.model import SpanRecord, ns_of, prefixed


class StepSpans(SpanAssembly):
    """The step handler of ``SpanBuilder``; see the module docstring."""

    @handles(StepRecorded, StepsRecorded)
    def _step(self, stored: StoredEvent) -> list[SpanRecord]:
        """The groups whose last version this block holds (versions ``seq_from..last``)."""
        last = stored.originator_version
        first = self._decode(stored).seq_from
        per = identity.STEPS_PER_SPAN
        ends = range((first + per - 1) // per * per, last + 1, per)
        return [self._step_span(uuid_of(stored.originator_id), end) for end in ends]

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
