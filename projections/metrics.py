"""Step metrics per run: one row per step event, for metric-history queries."""

from __future__ import annotations

from collections.abc import Sequence

from lineage.projections.decoding import Item, dumps
from lineage.projections.tables import step_metrics
from sqlalchemy import Connection


class StepMetricsProjection:
    name = "step_metrics"
    tables = (step_metrics,)

    def apply(self, items: Sequence[Item], conn: Connection) -> None:
        rows = [
            {"run_id": e.run_id, "seq": e.seq, "step": e.step, "epoch": e.epoch,
             "occurred_at": e.occurred_at, "metrics": dumps(e.metrics), "tokens": e.tokens,
             "duration_s": e.duration_s, "position": e.position}
            for item in items if item.kind == "StepRecorded" for e in (item.event,)
        ]
        if rows:
            conn.execute(step_metrics.insert(), rows)
