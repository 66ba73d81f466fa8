"""The OTLP encoder and the runner's packing: deterministic bytes, bounded requests, golden JSON.

Set LINEAGE_UPDATE_GOLDEN=1 to rewrite tests/golden/otlp_scenario.json after a deliberate change
(then read the diff: it is the change users will see in their trace viewer).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from lineage.adapters.otlp.encoder import OtlpEncoder, entry_size, key_values, request_json
from lineage.adapters.otlp.runner import OtlpExportRunner
from lineage.bootstrap import open_positions
from lineage.spans.builder import SpanBuilder
from lineage.spans.model import STATUS_ERROR, SpanEvent, SpanLink, SpanRecord
from tests.otlp_scenario import deterministic_tracker, record_scenario

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "otlp_scenario.json"
TRACE, PARENT = bytes(range(16)), bytes(range(8))


def record(name: str = "train step", **changes: Any) -> SpanRecord:
    fields: dict[str, Any] = dict(
        trace_id=TRACE, span_id=bytes(range(1, 9)), parent_span_id=PARENT, name=name,
        start_ns=1_000, end_ns=2_000, attributes=(("lineage.step", 3), ("lineage.metric.loss", 0.5),
                                                  ("lineage.run.id", "r"), ("ok", True)))
    fields.update(changes)
    return SpanRecord(**fields)


def scenario_spans(make_tracker: Callable[..., Any]) -> list[SpanRecord]:
    tracker, clock = deterministic_tracker("memory://", make_tracker)
    record_scenario(tracker, clock)
    notes = tracker.store.read_log(1, 1000)
    return [s for group in SpanBuilder(tracker.store, tracker.mapper).build(notes) for s in group]


def test_a_request_is_what_the_protobuf_library_writes_for_the_same_message() -> None:
    encoder = OtlpEncoder("svc", scope_version="9")
    records = [record(), record(span_id=bytes(range(2, 10)), status=STATUS_ERROR,
                                status_message="boom",
                                events=(SpanEvent("exception", 1_500, (("exception.type", "E"),)),),
                                links=(SpanLink(TRACE, PARENT, (("lineage.link.type", "x"),)),))]
    expected = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=Resource(attributes=key_values((
            ("service.name", "svc"), ("telemetry.sdk.language", "python"),
            ("telemetry.sdk.name", "lineage"), ("telemetry.sdk.version", "9")))),
        scope_spans=[ScopeSpans(scope=InstrumentationScope(name="lineage", version="9"),
                                spans=[Span.FromString(encoder.encode_span(r)) for r in records])])])
    payload = encoder.encode(records)
    assert payload == expected.SerializeToString(deterministic=True)
    decoded = ExportTraceServiceRequest.FromString(payload).resource_spans[0].scope_spans[0].spans
    assert decoded[1].status.code == Status.STATUS_CODE_ERROR and decoded[1].status.message == "boom"
    assert decoded[1].events[0].name == "exception" and decoded[1].links[0].span_id == PARENT
    assert decoded[0].attributes[0].value.int_value == 3
    assert decoded[0].attributes[1].value.double_value == 0.5
    assert decoded[0].attributes[3].value.bool_value is True
    assert (decoded[0].start_time_unix_nano, decoded[0].kind) == (1_000, Span.SPAN_KIND_INTERNAL)


def test_the_same_records_always_give_the_same_bytes() -> None:
    assert OtlpEncoder("svc").encode([record()]) == OtlpEncoder("svc").encode([record()])
    assert OtlpEncoder("svc").encode([record()]) != OtlpEncoder("other").encode([record()])


def test_a_span_too_big_for_a_request_is_shrunk_and_says_what_it_dropped() -> None:
    big = record(attributes=tuple((f"k{i}", "v" * 2000) for i in range(128)),
                 events=tuple(SpanEvent("exception", 1, (("m", "x" * 2000),)) for _ in range(128)))
    encoder = OtlpEncoder()
    assert entry_size(encoder.encode_span(big)) > 100_000
    small = Span.FromString(encoder.encode_span(big, 100_000))
    assert entry_size(small.SerializeToString()) <= 100_000
    assert (len(small.attributes), small.dropped_attributes_count) == (32, 96)
    assert (len(small.events), small.dropped_events_count) == (0, 128)


def test_packing_respects_span_and_byte_limits_and_positions(make_tracker: Callable[..., Any]) -> None:
    tracker = make_tracker("memory://", export_otlp=False)
    runner = OtlpExportRunner(tracker.store, open_positions("memory://"),
                              SpanBuilder(tracker.store, tracker.mapper), OtlpEncoder(),
                              transport=None,  # type: ignore[arg-type]  # packing only
                              batch_spans=3, batch_bytes=65_536)
    items = [(1, []), (2, [record()] * 2), (3, [record()] * 2), (4, []), (5, [record()]), (6, [])]
    requests = list(runner.pack(items, position=0))
    assert [(r.spans, r.position) for r in requests] == [(3, 2), (2, 6)]  # 6: no spans
    assert sum(len(ExportTraceServiceRequest.FromString(r.payload).resource_spans[0]
                   .scope_spans[0].spans) for r in requests) == 5
    huge = record(attributes=tuple((f"k{i}", "v" * 2000) for i in range(20)))
    runner.batch_spans = 1000
    by_bytes = list(runner.pack([(n, [huge]) for n in range(1, 11)], position=0))
    assert len(by_bytes) > 1 and all(len(r.payload) <= 65_536 for r in by_bytes)
    assert [r.position for r in by_bytes] == sorted(r.position for r in by_bytes)


def test_dry_run_json_uses_hex_ids_and_camel_case() -> None:
    document = request_json(OtlpEncoder().encode([record()]))
    span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert (span["traceId"], span["spanId"], span["parentSpanId"]) == (
        TRACE.hex(), bytes(range(1, 9)).hex(), PARENT.hex())
    assert span["startTimeUnixNano"] == "1000" and span["kind"] == 1


def test_golden_otlp_json_of_the_deterministic_scenario(make_tracker: Callable[..., Any]) -> None:
    payload = OtlpEncoder("lineage-golden", scope_version="test").encode(scenario_spans(make_tracker))
    document = request_json(payload)
    if os.environ.get("LINEAGE_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    if not GOLDEN.exists():
        pytest.fail(f"{GOLDEN} is missing: run with LINEAGE_UPDATE_GOLDEN=1 and review it")
    assert document == json.loads(GOLDEN.read_text())
