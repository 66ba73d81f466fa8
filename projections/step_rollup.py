"""The steps in the trace read model: run counters and ``train steps`` spans, from block columns.

A batch's step blocks (``lineage.codec.step_block.StepBlock``, one per stored row) fold into

- each run's counters in ``lineage_traces``: ``steps`` += the steps, ``last_step`` and
  ``last_metrics`` = the last step's;
- one ``train steps`` span per step group (``identity.step_group``: ``STEPS_PER_SPAN`` stream
  versions): ``step_from``/``step_to`` = min/max step number, ``started_at`` = the group's
  first step's time, ``finished_at`` and ``metrics`` = its last step's, attributes
  ``{count, seq_from, seq_to}``, ``position`` = the last block's.

The work is per block and per group, not per step: the part of a block a group holds is a
slice of its ``steps`` column (min and max run in C), and a step's time or metrics are read
only for the first and last step of each group the batch touches. The rows do not depend on
how the log is cut into batches: a batch continues the spans earlier batches started.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from sqlalchemy import Connection, bindparam, select, update

from lineage.codec.step_decode import StepBlock
from lineage.projections.bulk import append_rows
from lineage.projections.decoding import dumps, loads
from lineage.projections.tables import spans, traces
from lineage.spans import identity


def run_span_id(run_id: str) -> str:
    run = UUID(run_id)
    return identity.lineage_span_id(run, identity.run_span_id(run))


def step_span_id(run_id: str | UUID, group: int) -> str:
    """The ``train steps`` span of step group ``group`` (``identity.step_group``)."""
    run = run_id if isinstance(run_id, UUID) else UUID(run_id)
    return identity.lineage_span_id(run, identity.step_group_span_id(run, group))


class Piece:
    """The steps of one step group that one batch holds: where they start and end (block and
    index), how many, and their lowest and highest step numbers."""

    __slots__ = ("count", "first", "first_index", "high", "last", "last_index", "low", "run_id")

    def __init__(self, run_id: str, block: StepBlock, start: int, stop: int,
                 steps: Sequence[int]) -> None:
        self.run_id = run_id
        self.first, self.first_index = block, start
        self.last, self.last_index = block, stop - 1
        self.count = stop - start
        self.low, self.high = min(steps), max(steps)

    def extend(self, block: StepBlock, start: int, stop: int, steps: Sequence[int]) -> None:
        self.last, self.last_index = block, stop - 1
        self.count += stop - start
        self.low, self.high = min(self.low, min(steps)), max(self.high, max(steps))

    @property
    def seq_from(self) -> int:
        return self.first.seq_from + self.first_index

    @property
    def seq_to(self) -> int:
        return self.last.seq_from + self.last_index


def pieces_of(run_id: str, blocks: Sequence[StepBlock]) -> dict[int, Piece]:
    """The step groups that ``blocks`` (one run's, in log order, none empty) touch, by group
    number."""
    found: dict[int, Piece] = {}
    for block in blocks:
        count, seq_from = block.count, block.seq_from
        for group in range(identity.step_group(seq_from),
                           identity.step_group(seq_from + count - 1) + 1):
            first, last = identity.step_group_versions(group)
            start, stop = max(first - seq_from, 0), min(last - seq_from + 1, count)
            steps = block.steps if stop - start == count else block.steps[start:stop]
            piece = found.get(group)
            if piece is None:
                found[group] = Piece(run_id, block, start, stop, steps)
            else:
                piece.extend(block, start, stop, steps)
    return found


class StepRollup:
    """Folds a batch's step blocks into the traces' counters and the step-group spans, with a
    handful of statements per batch (one lookup of the spans a batch may extend, bulk
    writes)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def apply(self, blocks: Sequence[StepBlock]) -> list[str]:
        """Fold ``blocks`` (in log order) in; returns the runs they touched."""
        by_run: dict[str, list[StepBlock]] = {}
        for block in blocks:
            if block.count:
                by_run.setdefault(str(block.run_id), []).append(block)
        counters, pieces, openers = [], {}, []
        for run_id, run_blocks in by_run.items():
            last = run_blocks[-1]
            counters.append({"run": run_id, "added": sum(b.count for b in run_blocks),
                             "step": last.steps[-1], "metrics": dumps(last.metrics(last.count - 1))})
            for group, piece in pieces_of(run_id, run_blocks).items():
                pieces[step_span_id(last.run_id, group)] = piece
            openers.append(step_span_id(last.run_id, identity.step_group(run_blocks[0].seq_from)))
        if counters:
            self.conn.execute(update(traces).where(traces.c.id == bindparam("run")).values(
                steps=traces.c.steps + bindparam("added"), last_step=bindparam("step"),
                last_metrics=bindparam("metrics")), counters)
        self._spans(pieces, openers)
        return list(by_run)

    def _spans(self, pieces: dict[str, Piece], openers: list[str]) -> None:
        """Insert or extend the spans of ``pieces``. Only ``openers`` (each run's first group
        in the batch) may exist already: a stream's versions grow with its rows' positions,
        so the groups after it start in this batch."""
        if not pieces:
            return
        existing = {r.id: r for r in self.conn.execute(
            select(spans.c.id, spans.c.step_from, spans.c.step_to, spans.c.attributes)
            .where(spans.c.id.in_(openers)))}
        inserts, updates = [], []
        parents: dict[str, str] = {}
        for span_id, piece in pieces.items():
            found = existing.get(span_id)
            attributes = loads(found.attributes) if found else {"count": 0, "seq_from": piece.seq_from}
            attributes.update(count=attributes["count"] + piece.count, seq_to=piece.seq_to)
            last, index = piece.last, piece.last_index
            low = min(piece.low, found.step_from) if found else piece.low
            high = max(piece.high, found.step_to) if found else piece.high
            if found:
                updates.append({"span_id": span_id, "step_from": low, "step_to": high,
                                "finished_at": last.occurred_at(index),
                                "metrics": dumps(last.metrics(index)),
                                "attributes": dumps(attributes), "position": last.position})
                continue
            run_id = piece.run_id
            parent = parents.get(run_id) or parents.setdefault(run_id, run_span_id(run_id))
            inserts.append((  # in the table's column order
                span_id, run_id, parent, "steps", "train steps", "ok",
                piece.first.occurred_at(piece.first_index), last.occurred_at(index), low, high,
                dumps(attributes), dumps(last.metrics(index)), None, None, last.position))
        append_rows(self.conn, spans, inserts)
        if updates:
            self.conn.execute(update(spans).where(spans.c.id == bindparam("span_id")).values(
                {name: bindparam(name) for name in updates[0] if name != "span_id"}), updates)
