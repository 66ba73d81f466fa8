"""Metric curves for the run page: every metric of a run downsampled in one read, cheap however
long the run.

A run's steps are stored in blocks, each with a summary per metric (count, min, max, last:
``lineage_step_metrics.summary``). When the run has many blocks (at least ``buckets /
BLOCKS_PER_BUCKET_SHARE``), the curve is drawn from the summaries alone: the blocks holding the
metric are cut into at most ``buckets`` groups of consecutive blocks (``k*n//b`` as in
``metric_buckets``), each group one bucket with the exact count, minimum, maximum and last value
of its points, from ``step_from`` (its first block's lowest step) to ``step_to`` (its last
block's highest step). Nothing is decoded, so a 1,000,000-step run (about a thousand blocks)
costs one query and a thousand small JSON summaries. With fewer blocks the buckets follow
``metric_buckets``' rule (equal point counts; it decodes only the blocks an edge cuts, and
there are few).
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from sqlalchemy import Connection, select

from lineage.projections.decoding import loads
from lineage.projections.metric_buckets import BucketStats, metric_buckets, summary_number
from lineage.projections.tables import step_metrics

BLOCKS_PER_BUCKET_SHARE = 4  # summaries alone once there are buckets/4 blocks or more


def curves(conn: Connection, run_id: str, buckets: int) -> dict[str, Any]:
    """``{name: [bucket...]}`` for every metric the run's steps logged, by name (dicts of
    ``BUCKET_FIELDS``), at most ``buckets`` buckets each (the module doc's rule); {} for a run
    without steps (or no such run). ``buckets`` must be positive (the caller validates)."""
    rows = conn.execute(select(step_metrics.c.step_min, step_metrics.c.step_max,
                               step_metrics.c.summary)
                        .where(step_metrics.c.run_id == run_id)
                        .order_by(step_metrics.c.seq_from)).all()
    summaries = [(row.step_min, row.step_max, loads(row.summary)) for row in rows]
    names = sorted({name for _, _, summary in summaries for name in summary})
    if len(rows) * BLOCKS_PER_BUCKET_SHARE < buckets:
        return {name: metric_buckets(conn, run_id, name, buckets) for name in names}
    found = {}
    for name in names:
        parts = [(low, high, summary[name]) for low, high, summary in summaries
                 if summary.get(name)]
        found[name] = _grouped(parts, buckets)
    return found


def _grouped(parts: list[tuple[int, int, list[Any]]], buckets: int) -> list[dict[str, Any]]:
    if not parts:
        return []
    count = min(buckets, len(parts))
    edges = [k * len(parts) // count for k in range(count + 1)]
    found = []
    for first, end in pairwise(edges):
        stats = BucketStats()
        for _, _, (points, low, high, last) in parts[first:end]:
            stats.add(points, summary_number(low), summary_number(high), summary_number(last))
        found.append({"step_from": parts[first][0], "step_to": parts[end - 1][1],
                      "count": stats.count, "min": stats.low, "max": stats.high,
                      "last": stats.last})
    return found
