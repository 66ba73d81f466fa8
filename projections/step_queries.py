"""Queries over the step metrics read model (one row per stored step block).

Each row's ``data`` is the block as stored; these functions decode only the rows a query needs
(``decode_block``) and give plain values back.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, func, select

from lineage.application.metric_history import MetricHistory
from lineage.codec.step_decode import StepBlock, decode_block, decode_column
from lineage.projections.tables import step_metrics


def blocks(conn: Connection, run_id: str, *, where: Any = None) -> Iterator[StepBlock]:
    """The run's blocks in stream order (``where``: an extra filter on the rows)."""
    query = (select(step_metrics.c.data, step_metrics.c.position)
             .where(step_metrics.c.run_id == run_id).order_by(step_metrics.c.seq_from))
    if where is not None:
        query = query.where(where)
    for row in conn.execute(query.execution_options(yield_per=64)):
        yield decode_block(row.data, row.position)


def metric_history(conn: Connection, run_id: str, name: str) -> MetricHistory:
    """Every point of metric ``name`` over the run, in the order logged (no run, or no such
    metric: an empty history). Reads every block of the run, decoding its steps and that
    metric's column only (``decode_column``)."""
    history = MetricHistory()
    query = (select(step_metrics.c.data).where(step_metrics.c.run_id == run_id)
             .order_by(step_metrics.c.seq_from))
    for row in conn.execute(query.execution_options(yield_per=64)):
        steps, column = decode_column(row.data, name)
        if column is not None:
            history.extend(steps if column.where is None
                           else list(map(steps.__getitem__, column.where)), column.values)
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
