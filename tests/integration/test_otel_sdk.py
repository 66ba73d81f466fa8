"""Interoperating with the OpenTelemetry SDK: any SDK ``SpanExporter`` is a sink
(``Tracker(export_otlp=exporter)``), with the same spans as the OTLP export; a failing sink
delays delivery and loses nothing; a run started inside an active OpenTelemetry span links its
root span to it, as a remote link."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from lineage.spans.builder import SpanBuilder


def built_spans(tracker: Any) -> dict[int, tuple[int, str]]:
    """span id -> (parent span id, name) as the span builder makes them from the store."""
    builder = SpanBuilder(tracker.store, tracker.mapper)
    notes = tracker.store.read_log(1, 10_000)
    return {int.from_bytes(s.span_id, "big"): (int.from_bytes(s.parent_span_id or b"\0", "big"),
                                              s.name)
            for spans in builder.build(notes) for s in spans}


def test_an_sdk_exporter_receives_the_spans_of_the_otlp_export(
        tmp_path: Path, make_tracker: Callable[..., Any]) -> None:
    sink = InMemorySpanExporter()
    tracker = make_tracker(str(tmp_path / "sdk.db"), export_otlp=sink)
    with tracker.start_run("sdk", tags={"team": "a"}) as run:
        for step in range(1, 151):
            run.log_step(step, {"loss": 1.0 / step})
        run.save_checkpoint("s3://b/c", step=150, checksum="sha256:" + "a" * 64).wait()
    tracker.close()
    spans = sink.get_finished_spans()
    received = {s.context.span_id: (s.parent.span_id if s.parent else 0, s.name) for s in spans}
    reader = make_tracker(str(tmp_path / "sdk.db"), export_otlp=False)
    assert received == built_spans(reader)
    root = next(s for s in spans if s.name == "train run")
    assert root.context.trace_id == int.from_bytes(run.id.bytes, "big") and root.parent is None
    steps = [s for s in spans if s.name == "train steps"]
    assert len(steps) == 2 and len(steps[0].events) == 100
    assert steps[0].attributes["lineage.metric.loss"] == 1 / 100
    assert root.resource.attributes["service.name"] == "lineage"
    assert all(s.instrumentation_scope.name == "lineage" for s in spans)


class Flaky(SpanExporter):
    """Fails the first ``failures`` exports, then keeps what it is given."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.failures:
            self.failures -= 1
            return SpanExportResult.FAILURE
        self.spans += spans
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def test_a_failing_sdk_exporter_delays_delivery_and_loses_nothing(
        tmp_path: Path, make_tracker: Callable[..., Any], monkeypatch: Any) -> None:
    monkeypatch.setenv("LINEAGE_OTLP_POLL_S", "0.05")
    sink = Flaky(failures=2)
    tracker = make_tracker(str(tmp_path / "flaky.db"), export_otlp=sink)
    with tracker.start_run("flaky") as run:
        run.log_step(1, {"loss": 1.0})
    exporter = tracker._otlp
    for _ in range(400):  # bounded wait for the retries (0.5 s, then 1 s backoff)
        if exporter.runner.position >= tracker.store.max_position():
            break
        exporter._stop.wait(0.05)
    tracker.close()
    assert exporter.failures == 2 and sink.failures == 0
    assert sorted(s.name for s in sink.spans) == ["finish run", "train run", "train steps"]


def test_a_run_started_inside_an_opentelemetry_span_links_to_it(
        tmp_path: Path, make_tracker: Callable[..., Any]) -> None:
    sink = InMemorySpanExporter()
    tracker = make_tracker(str(tmp_path / "linked.db"), export_otlp=sink)
    tracer = TracerProvider().get_tracer("training-service")
    with tracer.start_as_current_span("train job") as outer:
        run = tracker.start_run("inside")
    run.finish().wait()
    other = tracker.start_run("outside")  # no active span: no link
    other.finish().wait()
    tracker.close()
    roots = {s.context.trace_id: s for s in sink.get_finished_spans() if s.name == "train run"}
    inside = roots[int.from_bytes(run.id.bytes, "big")]
    [link] = inside.links
    assert (link.context.trace_id, link.context.span_id) == (
        outer.get_span_context().trace_id, outer.get_span_context().span_id)
    assert link.context.is_remote and link.attributes["lineage.link.type"] == "started_in"
    assert roots[int.from_bytes(other.id.bytes, "big")].links == ()
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing left active
