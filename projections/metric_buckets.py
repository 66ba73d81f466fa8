"""A downsampled metric history, for plots: N buckets of consecutive points, each with its step
range, count, min, max and last value. The one rule for every downsampled curve: the REST
``metrics/{name}?buckets=N``, ``Tracker.metric_history(..., buckets=N)`` and the web pages' run
curves (``run_buckets``: every metric of a run in one pass).

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
are read per metric, whatever the run's length; with several metrics, each block is fetched
once, in order, a chunk at a time (memory: a chunk of blocks and the buckets).

Why edges fall between points, not only between blocks: the answer is the same however the
writer happened to batch the steps (SQLite or PostgreSQL, live or rebuilt), and N buckets
stay N buckets when blocks are large.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate, filterfalse
from typing import Any, NamedTuple

from sqlalchemy import Connection, select

from lineage.codec.block_peek import peek_ends
from lineage.codec.step_decode import decode_column
from lineage.projections.decoding import loads
from lineage.projections.tables import step_metrics

_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_CHUNK = 64  # blocks read per query: what memory holds (a few MB decoded)


class _Part(NamedTuple):
    """One block's share of a metric: the block (its place in the run), its summary, and
    whether every step of the block has the metric."""

    block: int
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

    def between(self, low: int, high: int) -> Sequence[float]:
        if self.values is None:  # only blocks no edge cuts are left undecoded
            raise ValueError("corrupt step metrics: a bucket edge cuts a block read for its ends")
        return self.values[low:high]


def metric_buckets(conn: Connection, run_id: str, name: str, buckets: int) -> list[dict[str, Any]]:
    """Metric ``name`` of the run in at most ``buckets`` buckets (the module doc's rule); []
    when the run has no point of it. ``buckets`` must be positive (the caller validates)."""
    return run_buckets(conn, run_id, buckets, [name])[name]


def run_buckets(conn: Connection, run_id: str, buckets: int,
                names: Iterable[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """``{name: [bucket...]}``: each of ``names`` (None: every metric the run's steps logged,
    by name) in at most ``buckets`` buckets, by the module doc's rule ([] for a metric without
    points; {} for a run without steps). ``buckets`` must be positive (the caller validates)."""
    query = (select(step_metrics.c.seq_from, step_metrics.c.seq_to, step_metrics.c.summary)
             .where(step_metrics.c.run_id == run_id).order_by(step_metrics.c.seq_from))
    blocks = [(seq_from, seq_to, loads(summary)) for seq_from, seq_to, summary in conn.execute(query)]
    if names is None:
        names = sorted({name for _, _, summary in blocks for name in summary})
    curves = {name: _Curve(_parts(blocks, name), buckets) for name in names}
    needed = sorted({at for curve in curves.values() for at in curve.needed})
    for at, data in _read(conn, run_id, [blocks[at][0] for at in needed], needed):
        ends = peek_ends(data) if any(curve.needed.get(at) is False
                                      for curve in curves.values()) else None
        for name, curve in curves.items():
            if at in curve.needed:
                curve.read(at, _points(data, name, curve.count(at)) if curve.needed[at]
                           else _Points(None, None, ends))
    return {name: curve.finish() for name, curve in curves.items()}


def _parts(blocks: list[tuple[int, int, dict[str, Any]]], name: str) -> list[_Part]:
    parts = []
    for at, (seq_from, seq_to, summary) in enumerate(blocks):
        found = summary.get(name)
        if found:
            count, low, high, last = found
            parts.append(_Part(at, count, _number(low), _number(high),
                               _number(last), count == seq_to - seq_from + 1))
    return parts


def _number(value: Any) -> Any:
    """A summary's number (strict JSON writes NaN and the infinities as strings)."""
    return _NON_FINITE[value] if value.__class__ is str else value


def _read(conn: Connection, run_id: str, seqs: list[int],
          order: list[int]) -> Iterator[tuple[int, bytes]]:
    """(block, its stored bytes) for the blocks ``order`` (their ``seqs``), in that order, read
    a chunk at a time."""
    for first in range(0, len(order), _CHUNK):
        chunk = seqs[first:first + _CHUNK]
        query = select(step_metrics.c.seq_from, step_metrics.c.data).where(
            step_metrics.c.run_id == run_id, step_metrics.c.seq_from.in_(chunk))
        found: dict[int, bytes] = {seq: data for seq, data in conn.execute(query)}
        for at, seq in zip(order[first:first + _CHUNK], chunk, strict=True):
            yield at, found[seq]


class _Curve:
    """One metric's buckets, made in block order: ``read`` is given the blocks it ``needed``
    (block -> whether to decode it: True, or only peek at its ends: False) in order; the blocks
    between contribute their summaries."""

    def __init__(self, parts: list[_Part], buckets: int) -> None:
        self.parts = parts
        self.starts = list(accumulate((part.points for part in parts), initial=0))
        total = self.starts[-1]
        count = min(buckets, total)
        self.edges = [k * total // count for k in range(count + 1)] if total else [0]
        self.needed = _needed(parts, self.starts, self.edges) if total else {}
        self.place = {part.block: at for at, part in enumerate(parts)}
        self.done = 0  # parts taken in
        self.bucket = _Bucket()
        self.found: list[dict[str, Any]] = []

    def read(self, block: int, points: _Points) -> None:
        at = self.place[block]
        for skipped in range(self.done, at):  # inside a bucket: the summary is enough
            self._take(skipped, None)
        self._take(at, points)
        self.done = at + 1

    def count(self, block: int) -> int:
        """How many points of the metric block ``block`` holds."""
        return self.parts[self.place[block]].points

    def finish(self) -> list[dict[str, Any]]:
        if self.done != len(self.parts):
            raise ValueError("corrupt step metrics: the last block of a metric was not read")
        return self.found

    def _take(self, at: int, points: _Points | None) -> None:
        """Part ``at``'s points into the buckets they fall in."""
        part, start = self.parts[at], self.starts[at]
        end = start + part.points
        first = start
        edges, bucket = self.edges, self.bucket
        while first < end:
            k = len(self.found)
            stop = min(end, edges[k + 1])
            if first == edges[k]:
                bucket.step_from = _need(points).step(first - start, part.points)
            if first == start and stop == end:
                bucket.add(part.points, part.low, part.high, part.last)
            else:
                bucket.add_values(_need(points).between(first - start, stop - start))
            if stop == edges[k + 1]:
                bucket.step_to = _need(points).step(stop - 1 - start, part.points)
                self.found.append(bucket.row())
                bucket = self.bucket = _Bucket()
            first = stop


def _need(points: _Points | None) -> _Points:
    if points is None:
        raise ValueError("corrupt step metrics: a bucket edge falls in a block that was not read")
    return points


def _needed(parts: list[_Part], starts: list[int], edges: list[int]) -> dict[int, bool]:
    """Block -> whether it must be decoded (True) or its steps are enough (False): the blocks
    holding a bucket's first or last point."""
    needed: dict[int, bool] = {}

    def need(at: int, decode: bool) -> None:
        block = parts[at].block
        needed[block] = needed.get(block, False) or decode or not parts[at].dense

    for edge in edges[:-1]:  # the first point of a bucket, and the last point before it
        at = bisect_right(starts, edge) - 1
        cut = starts[at] != edge
        need(at, cut)
        if not cut and at > 0:
            need(at - 1, False)
    need(len(parts) - 1, False)
    return needed


def _points(data: bytes, name: str, count: int) -> _Points:
    steps, column = decode_column(data, name)
    if column is None or len(column.values) != count:
        raise ValueError("corrupt step block: its values disagree with its summary")
    return _Points(steps if column.where is None else list(map(steps.__getitem__, column.where)),
                   column.values)


class _Bucket:
    """Count, least and greatest non-NaN value (the first of equals), last value, and the
    steps of the first and last point."""

    __slots__ = ("count", "high", "last", "low", "step_from", "step_to")

    def __init__(self) -> None:
        self.count = 0
        self.low: float | None = None
        self.high: float | None = None
        self.last: float = math.nan
        self.step_from = self.step_to = 0

    def add(self, count: int, low: float | None, high: float | None, last: float) -> None:
        self.count += count
        if low is not None and (self.low is None or low < self.low):
            self.low = low
        if high is not None and (self.high is None or high > self.high):
            self.high = high
        self.last = last

    def add_values(self, values: Sequence[float]) -> None:
        total = sum(values)  # NaN when a value is NaN (or when both infinities are there)
        numbers = values if total == total else list(filterfalse(math.isnan, values))
        self.add(len(values), min(numbers) if numbers else None,
                 max(numbers) if numbers else None, values[-1])

    def row(self) -> dict[str, Any]:
        return {"step_from": self.step_from, "step_to": self.step_to, "count": self.count,
                "min": self.low, "max": self.high, "last": self.last}
