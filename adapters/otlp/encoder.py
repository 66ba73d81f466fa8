"""Span records -> OTLP protobuf bytes (``ExportTraceServiceRequest``), deterministically.

Each span is serialised once, by hand (``wire.encode_span``: the bytes the
``opentelemetry-proto`` classes write, without building message objects); a request is framed
by hand around those bytes (one ``ResourceSpans`` with the explicit Resource, one ``ScopeSpans``
with the ``lineage`` scope, then the spans), which is exactly what the protobuf library writes
for the same message, but lets the runner know a request's size before building it and keep
every batch under its byte limit. The Resource has only what the configuration says
(``service.name``) and the SDK identity keys, never a random instance id: the same records
always give the same bytes.

Flags follow the specification's ``SpanFlags``: every span is sampled (W3C trace flag 01) and
says whether its parent is remote (``HAS_IS_REMOTE``, plus ``IS_REMOTE`` for a parent in another
process: ``SpanRecord.remote_parent``); a link says the same of its target: remote when it
points into another trace (another run, or the caller's own OpenTelemetry trace).

``request_json`` renders a request as OTLP/JSON (lowerCamelCase keys, hex ids, enum numbers,
64-bit integers as strings), as ``lineage export otlp --dry-run`` prints it.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Sequence
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from lineage.spans.model import Attributes, SpanRecord
from lineage.version import __version__

from .wire import encode_span, field, varint

SCOPE_NAME = "lineage"
_ID_FIELDS = ("traceId", "spanId", "parentSpanId")
# What an oversized span keeps (a span must fit in one request; see OtlpEncoder.encode_span).
_SHRUNK_ATTRIBUTES, _SHRUNK_LENGTH = 32, 256


def entry_size(span: bytes) -> int:
    """Bytes one encoded span adds to a request (tag + length + span)."""
    size = len(span)
    return 1 + (size.bit_length() + 6) // 7 + size if size else 2


def _value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=str(value))


def key_values(attributes: Attributes) -> list[KeyValue]:
    return [KeyValue(key=key, value=_value(value)) for key, value in attributes]


class OtlpEncoder:
    """Encodes span records and frames requests. Stateless after construction; thread-safe."""

    def __init__(self, service_name: str = "lineage",
                 resource_attributes: dict[str, Any] | None = None,
                 scope_version: str = __version__) -> None:
        # As the SDK merges a Resource: its identity keys, then OTEL_RESOURCE_ATTRIBUTES, then
        # the service name (OTEL_SERVICE_NAME wins over a service.name among the attributes).
        attributes = {"telemetry.sdk.name": "lineage", "telemetry.sdk.language": "python",
                      "telemetry.sdk.version": scope_version, **(resource_attributes or {}),
                      "service.name": service_name}
        resource = Resource(attributes=key_values(tuple(sorted(attributes.items()))))
        scope = InstrumentationScope(name=SCOPE_NAME, version=scope_version)
        self._resource_field = field(1, resource.SerializeToString(deterministic=True))
        self._scope_field = field(1, scope.SerializeToString(deterministic=True))
        # Room for the two outer length prefixes growing to 5 bytes each, and their tags.
        self.overhead = len(self._resource_field) + len(self._scope_field) + 12

    def encode_span(self, record: SpanRecord, max_size: int | None = None) -> bytes:
        """The serialised ``Span``. When it would not fit in ``max_size`` bytes (a request's
        room), its events and links are dropped and its attributes cut to 32 of at most 256
        characters, all counted in the ``dropped_*`` fields."""
        encoded = encode_span(record)
        if max_size is not None and entry_size(encoded) > max_size:
            encoded = encode_span(_shrunk(record))
        return encoded

    def request(self, spans: Sequence[bytes]) -> bytes:
        """An ``ExportTraceServiceRequest`` holding the encoded ``spans``, in order."""
        scope_spans = self._scope_field + b"".join(
            [b"\x12" + varint(len(span)) + span for span in spans])
        resource_spans = self._resource_field + field(2, scope_spans)
        return field(1, resource_spans)

    def encode(self, records: Sequence[SpanRecord]) -> bytes:
        """One request for ``records`` (no size limit: for tests and the dry run)."""
        return self.request([self.encode_span(record) for record in records])


def _shrunk(record: SpanRecord) -> SpanRecord:
    kept = tuple((key[:_SHRUNK_LENGTH], value[:_SHRUNK_LENGTH] if isinstance(value, str) else value)
                 for key, value in record.attributes[:_SHRUNK_ATTRIBUTES])
    return dataclasses.replace(
        record, attributes=kept, events=(), links=(),
        status_message=record.status_message[:_SHRUNK_LENGTH],
        dropped_attributes=record.dropped_attributes + len(record.attributes) - len(kept),
        dropped_events=record.dropped_events + len(record.events),
        dropped_links=record.dropped_links + len(record.links))


def request_json(payload: bytes) -> dict[str, Any]:
    """OTLP/JSON of an encoded request (ids as hex, as the OTLP JSON encoding requires)."""
    message = ExportTraceServiceRequest.FromString(payload)
    document = MessageToDict(message, use_integers_for_enums=True)
    _hex_ids(document)
    return document


def _hex_ids(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _hex_ids(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids(item)
