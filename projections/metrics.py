"""Step metrics per run: one row per step event, for metric-history queries."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from lineage.domain import StepRecorded
from lineage.projections.bulk import append_rows
from lineage.projections.decoding import Item
from lineage.projections.tables import step_metrics


class StepMetricsProjection:
    name = "step_metrics"
    tables = (step_metrics,)

    def apply(self, items: Sequence[Item], conn: Connection) -> None:
        append_rows(conn, step_metrics, [
            (e.run_id, e.seq, e.step, e.epoch, e.occurred_at, e.metrics_json, e.tokens,
             e.duration_s, e.position)
            for item in items if item.type is StepRecorded for e in (item.event,)])
