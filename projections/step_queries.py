"""Queries over the step metrics read model (one row per stored step block).

Each row's ``data`` is the block as stored; these functions decode only the rows a query needs
(``decode_block``) and give plain values back.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, func, select

from lineage.codec.step_block import StepBlock, decode_block
from lineage.projections.tables import step_metrics


def blocks(conn: Connection, run_id: str, *, where: Any = None) -> Iterator[StepBlock]:
    """The run's blocks in stream order (``where``: an extra filter on the rows)."""
    query = (select(step_metrics.c.data, step_metrics.c.position)
             .where(step_metrics.c.run_id == run_id).order_by(step_metrics.c.seq_from))
    if where is not None:
        query = query.where(where)
    for row in conn.execute(query.execution_options(yield_per=64)):
        yield decode_block(row.data, row.position)


class MetricHistory:
    """A metric's values over a run, in the order logged: ``steps[k]`` and ``values[k]``
    (compact arrays: 16 bytes a point, for runs of millions of steps). Iterating gives
    ``(step, value)`` pairs; it compares equal to a list of them."""

    __slots__ = ("steps", "values")

    def __init__(self) -> None:
        self.steps = array("q")
        self.values: list[float] | array[float] = array("d")

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[tuple[int, float]]:
        return zip(self.steps, self.values, strict=True)

    def __getitem__(self, k: int) -> tuple[int, float]:
        return self.steps[k], self.values[k]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MetricHistory | list | tuple):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    def __repr__(self) -> str:
        shown = ", ".join(map(repr, list(self)[:3]))
        return f"MetricHistory([{shown}{', ...' if len(self) > 3 else ''}], points={len(self)})"


def metric_history(conn: Connection, run_id: str, name: str) -> MetricHistory:
    history = MetricHistory()
    ints: list[float] | None = None  # a metric logged as ints keeps them
    for block in blocks(conn, run_id):
        column = block.column(name)
        if column is None:
            continue
        steps = block.steps if column.where is None else [block.steps[i] for i in column.where]
        history.steps.extend(steps)
        if ints is None and any(type(v) is int for v in column.values):
            ints = list(history.values)
            history.values = ints
        history.values.extend(column.values)
    return history


def steps_after(conn: Connection, run_id: str, after: int) -> tuple[int, int | None, int | None]:
    """(count, lowest, highest) of the run's steps numbered above ``after``."""
    count, low, high = 0, None, None
    for block in blocks(conn, run_id, where=step_metrics.c.step_max > after):
        later = [step for step in block.steps if step > after]
        if later:
            count += len(later)
            low = min(later) if low is None else min(low, min(later))
            high = max(later) if high is None else max(high, max(later))
    return count, low, high


def step_count(conn: Connection, run_id: str) -> int:
    return int(conn.execute(select(func.coalesce(func.sum(
        step_metrics.c.seq_to - step_metrics.c.seq_from + 1), 0))
        .where(step_metrics.c.run_id == run_id)).scalar() or 0)
