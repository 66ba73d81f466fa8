"""The hand-written span encoder writes exactly what the protobuf library writes for the same
``Span`` message, on every kind of value (hypothesis) and on the spans of a real scenario."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from lineage.adapters.otlp.encoder import key_values
from lineage.adapters.otlp.wire import LOCAL, REMOTE, encode_span
from lineage.spans.model import (
    STATUS_ERROR,
    STATUS_OK,
    STATUS_UNSET,
    SpanEvent,
    SpanLink,
    SpanRecord,
)
from tests.unit.test_otlp_encoder import scenario_spans

_KIND = {"internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}


def _kvs(attributes: Any) -> list[KeyValue]:
    return key_values(attributes)  # the protobuf classes' KeyValue list


def reference(record: SpanRecord) -> bytes:
    """The protobuf library's bytes for ``record``: the specification of ``encode_span``."""
    span = Span(
        trace_id=record.trace_id, span_id=record.span_id, parent_span_id=record.parent_span_id,
        flags=REMOTE if record.remote_parent else LOCAL, name=record.name,
        kind=_KIND[record.kind], start_time_unix_nano=record.start_ns,
        end_time_unix_nano=record.end_ns, attributes=_kvs(record.attributes),
        dropped_attributes_count=record.dropped_attributes,
        events=[Span.Event(time_unix_nano=e.time_ns, name=e.name, attributes=_kvs(e.attributes),
                           dropped_attributes_count=e.dropped_attributes) for e in record.events],
        dropped_events_count=record.dropped_events,
        links=[Span.Link(trace_id=x.trace_id, span_id=x.span_id, attributes=_kvs(x.attributes),
                         dropped_attributes_count=x.dropped_attributes,
                         flags=LOCAL if x.trace_id == record.trace_id else REMOTE)
               for x in record.links],
        dropped_links_count=record.dropped_links)
    if record.status in (STATUS_OK, STATUS_ERROR):
        span.status.code = (Status.STATUS_CODE_OK if record.status == STATUS_OK
                            else Status.STATUS_CODE_ERROR)
        span.status.message = record.status_message if record.status == STATUS_ERROR else ""
    return span.SerializeToString(deterministic=True)


values = st.one_of(st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(width=64),
                   st.text(st.characters(exclude_categories=("Cs",)), max_size=40))
attributes = st.lists(st.tuples(st.text(max_size=20), values), max_size=6).map(tuple)
counts = st.integers(0, 2**31)
ids = st.binary(min_size=8, max_size=8)
traces = st.sampled_from([b"\x01" * 16, b"\x02" * 16])
events = st.builds(SpanEvent, st.text(max_size=10), st.integers(0, 2**64 - 1), attributes, counts)
links = st.builds(SpanLink, traces, ids, attributes, counts)
records = st.builds(
    SpanRecord, trace_id=st.just(b"\x01" * 16), span_id=ids,
    parent_span_id=st.one_of(st.just(b""), ids), name=st.text(max_size=30),
    start_ns=st.integers(0, 2**64 - 1), end_ns=st.integers(0, 2**64 - 1), attributes=attributes,
    events=st.lists(events, max_size=3).map(tuple), links=st.lists(links, max_size=3).map(tuple),
    status=st.sampled_from([STATUS_OK, STATUS_ERROR, STATUS_UNSET]),
    status_message=st.text(max_size=20), kind=st.sampled_from(list(_KIND)),
    dropped_attributes=counts, dropped_events=counts, dropped_links=counts,
    remote_parent=st.booleans())


@settings(max_examples=150, deadline=None)
@given(records)
def test_every_record_encodes_to_the_protobuf_librarys_bytes(record: SpanRecord) -> None:
    assert encode_span(record) == reference(record)


def test_the_scenarios_spans_encode_to_the_protobuf_librarys_bytes(
        make_tracker: Callable[..., Any]) -> None:
    spans = scenario_spans(make_tracker)
    assert spans and all(encode_span(span) == reference(span) for span in spans)


@pytest.mark.parametrize("value", ["\ud800", 2**63, -2**63 - 1])
def test_what_protobuf_refuses_is_refused_too(value: Any) -> None:
    record = SpanRecord(b"\x01" * 16, b"\x02" * 8, b"", "x", 1, 2, (("k", value),))
    with pytest.raises((ValueError, UnicodeEncodeError)):
        reference(record)
    with pytest.raises((ValueError, UnicodeEncodeError)):
        encode_span(record)
