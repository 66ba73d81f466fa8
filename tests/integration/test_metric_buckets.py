"""Metric history: every point (``MetricHistory``, compact arrays) and downsampled for plots
(``metric_history(run, name, buckets=N)``): the buckets equal what the rule in
``lineage.projections.metric_buckets`` makes of the full history, whatever the blocks."""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import create_engine

import lineage
from lineage.application.metric_history import BUCKET_FIELDS, MetricHistory
from lineage.application.validation import MAX_BUCKETS
from lineage.codec.step_block import Origin, StepColumns, encode_block
from lineage.codec.step_decode import decode_block
from lineage.projections import metric_buckets as buckets_module
from lineage.projections.metrics import row as metrics_row
from lineage.projections.tables import step_metrics

MakeTracker = Callable[..., Any]
GROUPS = [1, 5, 17, 3, 40, 2, 9, 1, 30]  # steps per commit: blocks of uneven sizes


def reference(history: MetricHistory, buckets: int) -> list[dict[str, Any]]:
    """The rule, computed from every point."""
    points = list(history)
    total = len(points)
    count = min(buckets, total)
    found = []
    for k in range(count):
        chunk = points[k * total // count:(k + 1) * total // count]
        values = [value for _, value in chunk]
        numbers = [value for value in values if value == value]
        found.append({"step_from": chunk[0][0], "step_to": chunk[-1][0], "count": len(chunk),
                      "min": min(numbers) if numbers else None,
                      "max": max(numbers) if numbers else None, "last": values[-1]})
    return found


def same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Equal, with NaN equal to NaN and an int never equal to a float."""
    def plain(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return "NaN"
        return (type(value).__name__, value)
    return [{k: plain(v) for k, v in bucket.items()} for bucket in a] == [
        {k: plain(v) for k, v in bucket.items()} for bucket in b]


def record(tracker: Any) -> tuple[Any, int]:
    """A run whose metrics are missing at some steps, NaN or infinite at others, ints, a mix of
    ints and floats, with step numbers that repeat; committed in blocks of uneven sizes."""
    run = tracker.start_run("plot")
    logged = 0
    for group, size in enumerate(GROUPS):
        for _ in range(size):
            step = logged if logged < 60 else logged - 20  # steps 40..59 come twice
            metrics: dict[str, float] = {"loss": 1.0 / (1 + logged), "count": logged * 3}
            if logged % 7 == 2:
                metrics["loss"] = math.nan
            if logged % 11 == 5:
                metrics["loss"] = math.inf if logged % 2 else -math.inf
            if logged % 3 == 0:
                metrics["sparse"] = float(logged % 13)
            if group in (2, 3):
                metrics["all_nan"] = math.nan
            metrics["mixed"] = logged if logged % 4 else logged + 0.5
            run.log_step(step, metrics)
            logged += 1
        tracker.flush()
        if group == 4:
            run.log_eval(logged, {"val": 1.0})  # a command between blocks
    run.finish().wait()
    return run, logged


NAMES = ("loss", "count", "sparse", "all_nan", "mixed")


def test_buckets_equal_the_rule_over_the_full_history(any_url: str,
                                                      make_tracker: MakeTracker) -> None:
    tracker = make_tracker(any_url)
    run, total = record(tracker)
    for name in NAMES:
        history = tracker.metric_history(run.id, name)
        assert len(history) > 0
        for count in (1, 2, 3, 4, 5, 7, 10, 16, 33, 39, 40, 41, 70, total - 1, total, total + 1,
                      MAX_BUCKETS):
            found = tracker.metric_history(run.id, name, buckets=count)
            assert same(found, reference(history, count)), (name, count)
            assert len(found) == min(count, len(history))
            assert all(list(bucket) == list(BUCKET_FIELDS) for bucket in found)


def test_what_the_full_history_holds(any_url: str, make_tracker: MakeTracker) -> None:
    tracker = make_tracker(any_url)
    run, total = record(tracker)
    loss, count = tracker.metric_history(run.id, "loss"), tracker.metric_history(run.id, "count")
    assert isinstance(loss, MetricHistory) and len(loss) == len(count) == total
    assert loss.steps.typecode == "q" and isinstance(loss.values, array)
    assert loss.values.typecode == "d" and isinstance(count.values, array)
    assert count.values.typecode == "q" and list(count) == [
        (s if s < 60 else s - 20, s * 3) for s in range(total)]
    mixed = tracker.metric_history(run.id, "mixed")
    assert isinstance(mixed.values, list)
    assert [type(v) for v in mixed.values[:5]] == [float, int, int, int, float]
    sparse = tracker.metric_history(run.id, "sparse")
    assert [step for step, _ in sparse] == [s if s < 60 else s - 20 for s in range(0, total, 3)]
    assert sparse[0] == (0, 0.0) and sparse == list(sparse)
    assert tracker.metric_history(run.id, "no_such") == []


def test_no_points_no_buckets(any_url: str, make_tracker: MakeTracker) -> None:
    tracker = make_tracker(any_url)
    run = tracker.start_run("empty")
    assert tracker.metric_history(run.id, "loss", buckets=10) == []
    run.log_step(1, {"other": 1.0})
    assert tracker.metric_history(run.id, "loss", buckets=10) == []
    assert tracker.metric_history(run.id, "other", buckets=10) == [
        {"step_from": 1, "step_to": 1, "count": 1, "min": 1.0, "max": 1.0, "last": 1.0}]


@pytest.mark.parametrize("buckets", [0, -1, True, False, 1.5, "10", 10**6, MAX_BUCKETS + 1, 2**70,
                                     math.nan, [3], b"3"])
def test_hostile_buckets(buckets: Any, make_tracker: MakeTracker) -> None:
    tracker = make_tracker("memory://")
    run = tracker.start_run("r")
    run.log_step(1, {"loss": 1.0})
    with pytest.raises(lineage.ValidationError) as raised:
        tracker.metric_history(run.id, "loss", buckets=buckets)
    assert raised.value.field == "buckets"
    with pytest.raises(lineage.ValidationError):
        tracker.views.metric_buckets(str(run.id), "loss", buckets)


def store_blocks(engine: Any, run_id: UUID, sizes: list[int]) -> None:
    """Step metrics rows of one run, one per block of ``sizes`` steps (``loss`` = the index in
    the block), as the projection writes them: block boundaries exactly where asked."""
    step_metrics.create(engine)
    rows, seq = [], 1
    for position, size in enumerate(sizes, start=1):
        steps = list(range(seq - 1, seq - 1 + size))
        columns = StepColumns(steps, [10**15 + s for s in steps], [None] * size, [None] * size,
                              [None] * size, [{"loss": float(i)} for i in range(size)],
                              [None] * size, [None] * size, {})
        state = encode_block(run_id, seq, uuid4().bytes, Origin(10**15, "t", "default", "a"),
                             columns)
        rows.append(dict(zip([c.name for c in step_metrics.columns],
                             metrics_row(decode_block(state, position)), strict=True)))
        seq += size
    with engine.begin() as conn:
        conn.execute(step_metrics.insert(), rows)


def test_only_the_blocks_at_bucket_edges_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    engine, run_id = create_engine("sqlite://"), uuid4()
    store_blocks(engine, run_id, [10] * 40)
    decoded, peeked = counting(monkeypatch, "decode_column"), counting(monkeypatch, "peek_ends")
    with engine.connect() as conn:
        whole = buckets_module.metric_buckets(conn, str(run_id), "loss", 4)  # edges between blocks
        assert [(b["step_from"], b["step_to"], b["count"]) for b in whole] == [
            (0, 99, 100), (100, 199, 100), (200, 299, 100), (300, 399, 100)]
        assert (len(decoded), len(peeked)) == (0, 8)  # the first and last block of each bucket
        cut = buckets_module.metric_buckets(conn, str(run_id), "loss", 3)  # edges at 133, 266
        assert [(b["step_from"], b["step_to"], b["count"]) for b in cut] == [
            (0, 132, 133), (133, 265, 133), (266, 399, 134)]
        assert (len(decoded), len(peeked)) == (2, 8 + 2)


def counting(monkeypatch: pytest.MonkeyPatch, name: str) -> list[Any]:
    calls: list[Any] = []
    real = getattr(buckets_module, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(buckets_module, name, counted)
    return calls
