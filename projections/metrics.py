"""Step metrics per run: one row per stored step block, for metric-history queries.

The row keeps the block's stored bytes (every step's values, at ~8 bytes a number) and, per
metric name, ``[count, min, max, last]`` of the block's values, so a downsampled history (for
plots) reads the summaries and decodes only the blocks a bucket edge cuts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from lineage.codec.step_decode import StepBlock
from lineage.domain.steps import StepsRecorded
from lineage.projections.bulk import append_rows
from lineage.projections.decoding import Item, dumps
from lineage.projections.tables import step_metrics


class StepMetricsProjection:
    name = "step_metrics"
    tables = (step_metrics,)

    def apply(self, items: Sequence[Item], conn: Connection) -> None:
        append_rows(conn, step_metrics, [
            row(item.event) for item in items if item.type is StepsRecorded])


def row(block: StepBlock) -> tuple[Any, ...]:
    return (str(block.run_id), block.seq_from, block.seq_to, min(block.steps), max(block.steps),
            block.occurred_at(0), block.occurred_at(block.count - 1), dumps(summary(block)),
            block.state, block.position)


def summary(block: StepBlock) -> dict[str, list[Any]]:
    """name -> [count, min, max, last] over the block's values (min and max skip NaN; None
    when every value is NaN)."""
    found = {}
    for name in block.metric_names:
        column = block.column(name)
        values = column.values if column is not None else []
        total = sum(values)  # in C; NaN when a value is NaN (or +inf meets -inf)
        numbers = values if total == total else [
            v for v in values if not (isinstance(v, float) and math.isnan(v))]
        found[name] = [len(values), min(numbers) if numbers else None,
                       max(numbers) if numbers else None, values[-1]]
    return found
