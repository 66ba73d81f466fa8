"""The bounded step grouping (lineage.spans.identity) and the step spans built on it: any run's
trace stays small enough to open, every step stays reachable, the first 10,000 steps keep the
grouping of 100 they always had, and a span per step (an export option) gives the same values
as a one-step group."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import uuid4

from lineage.domain import ids
from lineage.spans import identity
from lineage.spans.builder import STEPS_SPAN, SpanBuilder
from lineage.spans.identity import DEFAULT_GROUPING, StepGrouping
from lineage.spans.model import SpanRecord
from lineage.spans.step_spans import STEP_EVENTS


def spans_of(tracker: Any, grouping: StepGrouping = DEFAULT_GROUPING,
             page: int = 1000) -> list[SpanRecord]:
    builder = SpanBuilder(tracker.store, tracker.mapper, grouping=grouping)
    out, start = [], 1
    while notes := tracker.store.read_log(start, page):
        out += [span for spans in builder.build(notes) for span in spans if span.name == STEPS_SPAN]
        start = notes[-1].id + 1
    return out


def test_groups_grow_tenfold_every_hundred_groups_and_tile_the_stream() -> None:
    assert [identity.step_group_versions(g) for g in (0, 99, 100, 199, 200)] == [
        (1, 100), (9901, 10000), (10001, 11000), (109001, 110000), (110001, 120000)]
    expected_first = 1
    for group in range(450):  # contiguous, no gap or overlap, each version in its group
        first, last = identity.step_group_versions(group)
        assert first == expected_first and identity.step_group(first) == group
        assert identity.step_group(last) == group and last >= first
        expected_first = last + 1
    assert len(DEFAULT_GROUPING.ends(1, 1_000_000)) == 289  # a million steps: 289 spans
    assert len(DEFAULT_GROUPING.ends(1, 10**9)) < 600
    assert DEFAULT_GROUPING.ends(95, 10_500) == list(range(100, 10_001, 100))
    assert StepGrouping(1).ends(5, 8) == [5, 6, 7, 8] and StepGrouping(250).ends(1, 600) == [250, 500]
    run = uuid4()
    assert StepGrouping(1).span_id(run, 0) != identity.step_group_span_id(run, 0)


def log(make_tracker: Callable[..., Any], steps: int) -> tuple[Any, Any]:
    tracker = make_tracker("memory://", export_otlp=False, batch_size=5000)
    with tracker.start_run("long") as run:
        for step in range(1, steps + 1):
            run.log_step(step, {"loss": 1.0 / step, "lr": 1e-4}, epoch=step // 5000, tokens=8)
    tracker.flush()
    return tracker, run


def test_a_long_group_samples_its_step_events_and_summarises_every_step(
        make_tracker: Callable[..., Any]) -> None:
    tracker, run = log(make_tracker, 11_500)
    spans = spans_of(tracker)
    assert len(spans) == 102  # 100 of 100 steps, one of 1,000, the last (partial) one of 500
    full = spans[99]
    assert [dict(e.attributes)["lineage.step"] for e in full.events] == list(range(9901, 10001))
    assert full.dropped_events == 0
    long = dict(spans[100].attributes)
    assert (long["lineage.stream.version.first"], long["lineage.stream.version.last"],
            long["lineage.step.count"]) == (10_001, 11_000, 1000)
    assert long["lineage.metric.loss.max"] == 1 / 10_001 and long["lineage.metric.loss.min"] == 1 / 11_000
    assert abs(long["lineage.metric.loss.mean"] - sum(1 / s for s in range(10_001, 11_001)) / 1000) < 1e-15
    steps = [dict(e.attributes)["lineage.step"] for e in spans[100].events]
    assert len(steps) == STEP_EVENTS and steps[0] == 10_001 and steps[-1] == 11_000
    assert spans[100].dropped_events == 1000 - STEP_EVENTS
    # Every step stays reachable from the span: its stream versions give the steps back.
    first, count = long["lineage.stream.version.first"], long["lineage.step.count"]
    assert [s.step for s in tracker.steps(run, after=first - 1, limit=count)] == list(
        range(10_001, 11_001))
    assert spans_of(tracker, page=7) == spans  # whatever the page


def test_a_span_per_step_has_the_values_of_a_one_step_group(
        make_tracker: Callable[..., Any]) -> None:
    tracker, run = log(make_tracker, 1_250)
    fast = spans_of(tracker, StepGrouping(1))
    assert len(fast) == 1_250 and len({s.span_id for s in fast}) == 1_250
    builder = SpanBuilder(tracker.store, tracker.mapper, grouping=StepGrouping(1))
    stream = ids.step_stream_id(run.id)
    assert [builder._step_span(stream, v) for v in (1, 700, 1_250)] == [fast[0], fast[699], fast[-1]]
    assert dict(fast[699].attributes)["lineage.metric.loss"] == 1 / 700
