"""Stored events -> span records (lineage.spans.model, lineage.spans.builder), tested by value."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from lineage.spans import identity
from lineage.spans.builder import SpanBuilder
from lineage.spans.model import (
    STATUS_ERROR,
    STATUS_OK,
    SpanLimits,
    SpanRecord,
    attributes,
    flatten,
    ns_of,
)
from tests.otlp_scenario import START, Scenario, deterministic_tracker, record_scenario


def build(tracker: Any, page: int = 1000, limits: SpanLimits | None = None) -> list[SpanRecord]:
    builder = SpanBuilder(tracker.store, tracker.mapper, **({"limits": limits} if limits else {}))
    out: list[SpanRecord] = []
    start = 1
    while notes := tracker.store.read_log(start, page):
        out += [span for group in builder.build(notes) for span in group]
        start = notes[-1].id + 1
    return out


@pytest.fixture
def scenario(make_tracker: Callable[..., Any]) -> tuple[Any, Scenario]:
    tracker, clock = deterministic_tracker("memory://", make_tracker)
    return tracker, record_scenario(tracker, clock)


Built = tuple[list[SpanRecord], Scenario]


@pytest.fixture
def built(scenario: tuple[Any, Scenario]) -> Built:
    """The scenario's spans, and what it recorded."""
    tracker, s = scenario
    return build(tracker), s


def named(spans: list[SpanRecord], name: str, run: UUID | None = None) -> list[SpanRecord]:
    return [s for s in spans if s.name == name and (run is None or s.trace_id == run.bytes)]


def attrs(span: SpanRecord) -> dict[str, Any]:
    return dict(span.attributes)


def at(seconds: int) -> int:
    return ns_of(START + timedelta(seconds=seconds))


# -- ids, times, limits --------------------------------------------------------------------------


def test_span_ids_are_8_bytes_of_a_hash_of_the_event_id_and_stable() -> None:
    event = UUID("12345678-1234-4234-8234-123456789abc")
    span_id = identity.event_span_id(identity.CHECKPOINT, event)
    assert span_id == identity.event_span_id(identity.CHECKPOINT, UUID(str(event)))
    assert len(span_id) == 8 and span_id != identity.event_span_id(identity.CHECKPOINT, uuid4())
    assert span_id != identity.event_span_id(identity.FAILURE, event)  # kinds never share ids
    assert identity.run_span_id(event) != identity.step_group_span_id(event, 0)
    assert identity.step_group_span_id(event, 0) != identity.step_group_span_id(event, 1)
    assert identity.recovery_span_id(event, 1) != identity.recovery_span_id(event, 2)
    assert identity.trace_id(event) == event.bytes


def test_a_zero_digest_never_becomes_a_zero_span_id(monkeypatch: pytest.MonkeyPatch) -> None:
    class Zero:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def digest(self) -> bytes:
            return bytes(8)

    monkeypatch.setattr(identity, "blake2b", Zero)
    assert identity.run_span_id(uuid4()) == b"\x80" + b"\x00" * 7


def test_lineageir_span_ids_are_uuids_that_end_with_the_span_id() -> None:
    run = UUID("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
    span_id = identity.run_span_id(run)
    text = identity.lineage_span_id(run, span_id)
    assert UUID(text).version == 8 and UUID(text).variant == "specified in RFC 4122"
    assert text.startswith("0190a1b2-c3d4-8e5f-") and text.replace("-", "").endswith(span_id.hex())
    assert identity.otlp_span_id(text) == span_id


def test_steps_group_by_stream_version() -> None:
    assert [identity.step_group(v) for v in (1, 100, 101, 200, 201)] == [0, 0, 1, 1, 2]
    assert identity.step_group_versions(2) == (201, 300) and identity.STEPS_PER_SPAN == 100


def test_times_are_exact_nanoseconds() -> None:
    moment = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert ns_of(moment) == 1740830400_123456000
    assert ns_of(moment.replace(tzinfo=None)) == ns_of(moment)


def test_attributes_are_bounded_and_counted() -> None:
    pairs = [(f"k{i:03d}", i) for i in range(200)] + [("k000", "again"), ("none", None)]
    kept, dropped = attributes(pairs)
    assert len(kept) == 128 and dropped == 72 and kept[0] == ("k000", 0)
    long, _ = attributes([("text", "x" * 5000), ("big", 2**70), ("nan", float("nan"))],
                         SpanLimits(max_value_length=100))
    values = dict(long)
    assert values["text"] == "x" * 100 and values["big"] == str(2**70)
    assert values["nan"] != values["nan"]


def test_flatten_keeps_scalars_sorted() -> None:
    job = {"model": "m", "adapter": {"rank": 16, "type": "lora"}, "gpus": [0, 1],
           "nested": [{"a": 1}]}
    assert flatten("lineage.job", job) == [
        ("lineage.job.adapter.rank", 16), ("lineage.job.adapter.type", "lora"),
        ("lineage.job.gpus", "0,1"), ("lineage.job.model", "m")]


# -- the scenario ----------------------------------------------------------------------------


def test_every_span_belongs_to_its_run_trace_under_the_run_span(built: Built) -> None:
    spans, s = built
    runs = {span.trace_id: span for span in named(spans, "train run")}
    assert set(runs) == {s.failed_run.bytes, s.resumed_run.bytes}
    assert all(span.parent_span_id == b"" for span in runs.values())
    for span in spans:
        if span.name != "train run":
            assert span.parent_span_id == runs[span.trace_id].span_id, span.name
    assert sorted(span.name for span in spans) == sorted(
        ["train run", "finish run"] * 2 + ["train steps"] * 2 + ["save checkpoint"] * 2
        + ["evaluate", "detect failure", "recover run"])
    assert len({span.span_id for span in spans}) == len(spans)


def test_spans_carry_the_events_own_historical_times(built: Built) -> None:
    spans, s = built
    [root] = named(spans, "train run", s.failed_run)
    [failed] = named(spans, "finish run", s.failed_run)
    [steps] = named(spans, "train steps", s.failed_run)
    assert failed.start_ns == at(0) and root.start_ns == root.end_ns == at(0)
    assert (steps.start_ns, steps.end_ns) == (at(1), at(6))  # from the group's first step to its last
    [recover] = named(spans, "recover run")
    assert (recover.start_ns, recover.end_ns) == (at(10), at(13))
    assert failed.end_ns == at(13) and all(x.end_ns < ns_of(datetime.now(UTC)) for x in spans)


def test_attributes_name_runs_steps_artifacts_and_metrics(built: Built) -> None:
    spans, s = built
    step = attrs(named(spans, "train steps", s.failed_run)[0])
    assert step == {"lineage.run.id": str(s.failed_run), "lineage.step": 6, "lineage.epoch": 0,
                    "lineage.step.first": 1, "lineage.step.min": 1, "lineage.step.max": 6,
                    "lineage.step.count": 6, "lineage.step.group": 0,
                    "lineage.stream.version.first": 1, "lineage.stream.version.last": 6,
                    "lineage.tokens": 6 * 64, "lineage.metric.loss": 0.166667,
                    "lineage.metric.lr": 1e-4, "lineage.metric.loss.min": 0.166667,
                    "lineage.metric.loss.max": 1.0, "lineage.metric.lr.min": 1e-4,
                    "lineage.metric.lr.max": 1e-4, "lineage.metric.lr.mean": 1e-4,
                    "lineage.metric.loss.mean": sum(round(1.0 / n, 6) for n in range(1, 7)) / 6}
    [steps] = named(spans, "train steps", s.failed_run)
    assert [dict(e.attributes)["lineage.step"] for e in steps.events] == [1, 2, 3, 4, 5, 6]
    assert dict(steps.events[2].attributes)["lineage.metric.loss"] == round(1 / 3, 6)
    assert steps.events[2].time_ns == at(3) and steps.dropped_events == 0
    checkpoint = attrs(named(spans, "save checkpoint", s.failed_run)[0])
    assert checkpoint["lineage.artifact.uri"] == "tinker://sft/ckpt-4"
    assert checkpoint["lineage.artifact.checksum"] == "a" * 64
    assert (checkpoint["lineage.step"], checkpoint["lineage.artifact.id"]) == (4, str(s.checkpoint))
    evaluation = attrs(named(spans, "evaluate")[0])
    assert evaluation["lineage.metric.val_loss"] == 0.5 and evaluation["lineage.eval.dataset"] == "val"
    run = attrs(named(spans, "finish run", s.failed_run)[0])
    assert run["lineage.run.status"] == "superseded" and run["lineage.run.steps"] == 6
    assert run["error.type"] == "backend_corrupted"
    root = attrs(named(spans, "train run", s.failed_run)[0])
    assert root["lineage.job.adapter.rank"] == 16 and root["lineage.tag.team"] == "alignment"
    assert root["lineage.tenant.id"] == "acme" and "lineage.run.status" not in root


def test_failures_are_errors_with_exception_events(built: Built) -> None:
    spans, s = built
    [failure] = named(spans, "detect failure")
    assert failure.status == STATUS_ERROR and attrs(failure)["error.type"] == "backend_corrupted"
    [event] = failure.events
    assert event.name == "exception" and dict(event.attributes) == {
        "exception.type": "backend_corrupted",
        "exception.message": "training service flagged the session corrupted"}
    [failed] = named(spans, "finish run", s.failed_run)
    assert failed.status == STATUS_ERROR
    assert [e.name for e in failed.events] == ["input used", "exception"]
    [resumed] = named(spans, "finish run", s.resumed_run)
    assert resumed.status == STATUS_OK and named(spans, "recover run")[0].status == STATUS_OK


def test_links_join_a_resumed_run_to_its_origin(built: Built) -> None:
    spans, s = built
    [failed] = named(spans, "train run", s.failed_run)
    [resumed] = named(spans, "train run", s.resumed_run)
    [resumed_finish] = named(spans, "finish run", s.resumed_run)
    [first, second] = named(spans, "save checkpoint")

    def targets(span: SpanRecord) -> list[tuple[bytes, bytes, str]]:
        return [(x.trace_id, x.span_id, dict(x.attributes)["lineage.link.type"]) for x in span.links]

    assert targets(resumed_finish) == [(failed.trace_id, failed.span_id, "resumed_from"),
                                (first.trace_id, first.span_id, "resumed_from_checkpoint")]
    assert targets(named(spans, "recover run")[0]) == [
        (resumed.trace_id, resumed.span_id, "resumed_as"),
        (first.trace_id, first.span_id, "resumed_from_checkpoint")]
    assert targets(second) == [(first.trace_id, first.span_id, "derived_from")]


def test_the_same_events_give_equal_spans_whatever_the_page_size(scenario: tuple[Any, Scenario]) -> None:
    tracker, _ = scenario
    assert build(tracker) == build(tracker, page=3) == build(tracker, page=1)


def test_long_runs_have_one_span_per_step_group(make_tracker: Callable[..., Any]) -> None:
    tracker, clock = deterministic_tracker("memory://", make_tracker)
    with tracker.start_run("long") as run:
        for step in range(1, 251):
            clock.advance()
            run.log_step(step, {"loss": 1.0 / step}, tokens=2)
        run.flush()
        clock.advance()
    spans = build(tracker)
    groups = named(spans, "train steps", run.id)
    assert [(attrs(g)["lineage.step.first"], attrs(g)["lineage.step"], attrs(g)["lineage.step.count"])
            for g in groups] == [(1, 100, 100), (101, 200, 100), (201, 250, 50)]  # 50: the run ended
    assert [g.span_id for g in groups] == [identity.step_group_span_id(run.id, n) for n in range(3)]
    assert (groups[1].start_ns, groups[1].end_ns) == (at(101), at(200))
    assert attrs(groups[0])["lineage.tokens"] == 200
    assert build(tracker, page=7) == spans == build(tracker, page=1)


def test_a_run_span_is_emitted_once_even_when_a_failed_run_is_later_superseded(
        make_tracker: Callable[..., Any]) -> None:
    tracker = make_tracker("memory://", export_otlp=False)
    with pytest.raises(RuntimeError), tracker.start_run("boom") as run:
        run.log_step(1, {"loss": 1.0})
        ckpt = run.save_checkpoint("s3://b/c1", step=1, checksum="sha256:" + "c" * 64)
        raise RuntimeError("out of memory")
    handle = tracker.run_handle(run.id)
    handle.begin_recovery().wait()
    resumed = tracker.resume_run(run.id, ckpt)
    handle.complete_recovery(resumed, ckpt).wait()
    resumed.finish().wait()
    spans = build(tracker)
    [failed] = named(spans, "finish run", run.id)
    assert attrs(failed)["lineage.run.status"] == "failed" and failed.status == STATUS_ERROR
    assert failed.status_message == "RuntimeError: out of memory"
    assert [dict(e.attributes)["exception.message"] for e in failed.events
            if e.name == "exception"] == ["out of memory"]


def test_span_limits_hold_for_huge_runs(make_tracker: Callable[..., Any]) -> None:
    tracker = make_tracker("memory://", export_otlp=False)
    tags = {f"tag{i:03d}": "v" * 3000 for i in range(200)}
    with tracker.start_run("wide", tags=tags) as run:
        for i in range(130):
            run.record_failure("flaky", f"failure {i}")
    [root] = named(build(tracker), "train run")
    assert len(root.attributes) == 128 and root.dropped_attributes > 0
    assert all(len(v) <= 2048 for _, v in root.attributes if isinstance(v, str))
    [span] = named(build(tracker), "finish run")
    assert len(span.events) == 128 and span.dropped_events == 2


@pytest.mark.parametrize("page", [1, 3, 1000])
def test_step_groups_cut_across_many_blocks_give_the_same_spans_whatever_the_page(
        make_tracker: Callable[..., Any], page: int) -> None:
    tracker = make_tracker("memory://", export_otlp=False)
    with tracker.start_run("blocks") as run:
        for step in range(250):
            run.log_step(step, {"loss": 1.0 / (step + 1)}, tokens=2)
            if step % 7 == 6:
                tracker.flush()  # blocks of 7 steps: each group of 100 spans 15 of them
    spans = named(build(tracker, page=page), "train steps")
    assert [dict(s.attributes)["lineage.step.count"] for s in spans] == [100, 100, 50]
    assert [dict(s.attributes)["lineage.step.first"] for s in spans] == [0, 100, 200]
    assert [dict(s.attributes)["lineage.step.max"] for s in spans] == [99, 199, 249]
    assert [dict(s.attributes)["lineage.tokens"] for s in spans] == [200, 200, 100]
    assert dict(spans[-1].attributes)["lineage.metric.loss"] == 1.0 / 250
    assert spans == named(build(tracker, page=1000), "train steps")


def test_a_running_run_has_its_root_at_once_and_its_finish_span_when_it_ends(
        make_tracker: Callable[..., Any]) -> None:
    tracker, clock = deterministic_tracker("memory://", make_tracker)
    run = tracker.start_run("live", tags={"team": "a"})
    for step in range(1, 151):
        clock.advance()
        run.log_step(step, {"loss": 1.0 / step})
    run.flush()
    running = build(tracker)
    [root] = named(running, "train run")
    assert root.parent_span_id == b"" and root.span_id == identity.run_span_id(run.id)
    assert {span.parent_span_id for span in running if span is not root} == {root.span_id}
    assert named(running, "finish run") == [] and len(named(running, "train steps")) == 1
    clock.advance()
    run.finish().wait()
    finished = build(tracker)
    assert finished[:len(running)] == running  # what was sent while it ran does not change
    [finish] = named(finished, "finish run")
    assert (finish.parent_span_id, finish.start_ns, finish.status) == (root.span_id, root.start_ns,
                                                                      STATUS_OK)
    assert finish.span_id == identity.finish_span_id(run.id)
    assert attrs(finish)["lineage.run.steps"] == 150 and len(named(finished, "train steps")) == 2
