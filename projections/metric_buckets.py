"""A downsampled metric history, for plots: N buckets of consecutive points, each with its step
range, count, min, max and last value.

The rule (what a test recomputes from the full history): a metric's ``n`` points, in the
order logged, are cut into ``min(N, n)`` buckets of consecutive points, bucket ``k`` holding
points ``k*n//b`` to ``(k+1)*n//b - 1`` (``b`` buckets: sizes differ by at most one). Each
bucket is ``{"step_from", "step_to", "count", "min", "max", "last"}``: the steps of its first
and last point, its number of points, the least and greatest of its values that are not NaN
(None when every value is NaN; infinities count), and its last value (NaN included).

How it stays cheap on a long run (one step metrics row per stored block, each with a
``summary``: name -> [count, min, max, last]): one query reads the run's summaries; a block
lying inside a bucket contributes its summary as it is; only the blocks holding a bucket's
first or last point are read further: a block a bucket edge cuts is decoded, a block that
starts or ends a bucket needs only its first or last step (``peek_ends``), unless the metric
is missing from some of its steps (then it is decoded too). So at most about ``2*N`` blocks
are read, whatever the run's length.

Why edges fall between points, not only between blocks: the answer is the same however the
writer happened to batch the steps (SQLite or PostgreSQL, live or rebuilt), and N buckets
stay N buckets when blocks are large.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate, filterfalse, pairwise
from typing import Any, NamedTuple

from sqlalchemy import Connection, select

from lineage.codec.block_peek import peek_ends
from lineage.codec.step_decode import decode_column
from lineage.projections.decoding import loads
from lineage.projections.tables import step_metrics

_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_CHUNK = 64  # blocks read per query: what memory holds (a few MB decoded)


class _Part(NamedTuple):
    """One block's share of the metric: its summary, and whether every step has the metric."""

    seq_from: int
    points: int
    low: float | None
    high: float | None
    last: float
    dense: bool


class _Points:
    """A block's points of the metric: every step and value (decoded), or, for a block no edge
    cuts and every step of which has the metric, its first and last step alone (peeked)."""

    __slots__ = ("ends", "steps", "values")

    def __init__(self, steps: Sequence[int] | None, values: Sequence[float] | None,
                 ends: tuple[int, int] | None = None) -> None:
        self.steps, self.values, self.ends = steps, values, ends

    def step(self, k: int, count: int) -> int:
        """The step of point ``k`` (of ``count``); a peeked block knows its ends only."""
        if self.steps is not None:
            return self.steps[k]
        if self.ends is None or k not in (0, count - 1):
            raise ValueError("corrupt step metrics: a bucket edge cuts a block read for its ends")
        return self.ends[0] if k == 0 else self.ends[1]


def metric_buckets(conn: Connection, run_id: str, name: str, buckets: int) -> list[dict[str, Any]]:
    """Metric ``name`` of the run in at most ``buckets`` buckets (the module doc's rule); []
    when the run has no point of it. ``buckets`` must be positive (the caller validates)."""
    parts = _parts(conn, run_id, name)
    starts = list(accumulate((part.points for part in parts), initial=0))
    total = starts[-1]
    if total == 0:
        return []
    count = min(buckets, total)
    edges = [k * total // count for k in range(count + 1)]
    reader = _Reader(conn, run_id, name, parts, _needed(parts, starts, edges))
    found = []
    for first, end in pairwise(edges):
        found.append(_bucket(parts, starts, reader, first, end))
        reader.release_before(bisect_right(starts, end - 1) - 1)
    return found


def _parts(conn: Connection, run_id: str, name: str) -> list[_Part]:
    query = (select(step_metrics.c.seq_from, step_metrics.c.seq_to, step_metrics.c.summary)
             .where(step_metrics.c.run_id == run_id).order_by(step_metrics.c.seq_from))
    parts = []
    for seq_from, seq_to, summary in conn.execute(query):
        found = loads(summary).get(name)
        if found:
            count, low, high, last = found
            parts.append(_Part(seq_from, count, summary_number(low), summary_number(high),
                               summary_number(last), count == seq_to - seq_from + 1))
    return parts


def summary_number(value: Any) -> Any:
    """A summary's number (strict JSON writes NaN and the infinities as strings)."""
    return _NON_FINITE[value] if value.__class__ is str else value


def _needed(parts: list[_Part], starts: list[int], edges: list[int]) -> dict[int, bool]:
    """Block index -> whether it must be decoded (True) or its steps are enough (False): the
    blocks holding a bucket's first or last point."""
    needed: dict[int, bool] = {}
    for edge in edges[:-1]:  # the first point of a bucket, and the last point before it
        at = bisect_right(starts, edge) - 1
        cut = starts[at] != edge
        needed[at] = needed.get(at, False) or cut or not parts[at].dense
        if not cut and at > 0:
            needed[at - 1] = needed.get(at - 1, False) or not parts[at - 1].dense
    last = len(parts) - 1
    needed[last] = needed.get(last, False) or not parts[last].dense
    return needed


class _Reader:
    """The blocks a bucket needs (``_needed``), read in order a chunk at a time and dropped once
    no later bucket needs them: memory stays a chunk of blocks, whatever ``buckets`` is."""

    def __init__(self, conn: Connection, run_id: str, name: str, parts: list[_Part],
                 needed: dict[int, bool]) -> None:
        self.conn, self.run_id, self.name, self.parts, self.needed = conn, run_id, name, parts, needed
        self.order = sorted(needed)
        self.read = 0  # how many of ``order`` were read
        self.held: dict[int, _Points] = {}

    def points(self, at: int) -> _Points:
        while at not in self.held:
            if self.read == len(self.order):
                raise ValueError(f"block {at} was not read: not at a bucket edge")
            self._read_chunk()
        return self.held[at]

    def release_before(self, at: int) -> None:
        for held in [held for held in self.held if held < at]:
            del self.held[held]

    def _read_chunk(self) -> None:
        chunk = self.order[self.read:self.read + _CHUNK]
        self.read += len(chunk)
        by_seq = {self.parts[at].seq_from: at for at in chunk}
        query = select(step_metrics.c.seq_from, step_metrics.c.data).where(
            step_metrics.c.run_id == self.run_id, step_metrics.c.seq_from.in_(list(by_seq)))
        for row in self.conn.execute(query):
            at = by_seq[row.seq_from]
            self.held[at] = _points(row.data, self.name, self.parts[at].points,
                                    decode=self.needed[at])


def _points(data: bytes, name: str, count: int, *, decode: bool) -> _Points:
    if not decode:
        return _Points(None, None, peek_ends(data))
    steps, column = decode_column(data, name)
    if column is None or len(column.values) != count:
        raise ValueError("corrupt step block: its values disagree with its summary")
    return _Points(steps if column.where is None else list(map(steps.__getitem__, column.where)),
                   column.values)


def _bucket(parts: list[_Part], starts: list[int], reader: _Reader, first: int,
            end: int) -> dict[str, Any]:
    """The bucket of points ``first`` to ``end - 1``: whole blocks by their summaries, the
    blocks an edge cuts by their values."""
    head = bisect_right(starts, first) - 1
    tail = bisect_right(starts, end - 1) - 1
    stats = BucketStats()
    for at in range(head, tail + 1):
        part = parts[at]
        low, high = max(first - starts[at], 0), min(end - starts[at], part.points)
        if low == 0 and high == part.points:
            stats.add(part.points, part.low, part.high, part.last)
        else:
            stats.add_values(_values(reader.points(at))[low:high])
    return {"step_from": reader.points(head).step(first - starts[head], parts[head].points),
            "step_to": reader.points(tail).step(end - 1 - starts[tail], parts[tail].points),
            "count": stats.count, "min": stats.low, "max": stats.high, "last": stats.last}


def _values(points: _Points) -> Sequence[float]:
    if points.values is None:  # only blocks no edge cuts are left undecoded
        raise ValueError("corrupt step metrics: a bucket edge cuts a block read for its ends")
    return points.values


class BucketStats:
    """Count, least and greatest non-NaN value (the first of equals), and last value."""

    def __init__(self) -> None:
        self.count = 0
        self.low: float | None = None
        self.high: float | None = None
        self.last: float = math.nan

    def add(self, count: int, low: float | None, high: float | None, last: float) -> None:
        self.count += count
        if low is not None and (self.low is None or low < self.low):
            self.low = low
        if high is not None and (self.high is None or high > self.high):
            self.high = high
        self.last = last

    def add_values(self, values: Sequence[float]) -> None:
        numbers = list(filterfalse(math.isnan, values))
        self.add(len(values), min(numbers) if numbers else None,
                 max(numbers) if numbers else None, values[-1])
