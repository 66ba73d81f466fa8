"""Any OpenTelemetry SDK ``SpanExporter`` as the exporter's sink (console, in-memory, a
vendor's exporter): ``Tracker(export_otlp=exporter)``, or ``SdkExporterTransport(exporter)``
as the transport of an ``OtlpExportRunner``.

The runner hands over encoded requests, as to the network transports, so delivery keeps its
rules (tracked position, at least once, the same spans again on a re-export); this transport
turns each request back into SDK ``ReadableSpan`` objects (ids, parent, times, attributes,
events, links with their remote flag, status, kind, the Resource and the ``lineage`` scope)
and calls ``exporter.export``. ``SUCCESS`` delivers the request; ``FAILURE`` (or an exception
of the exporter) is ``CollectorUnavailableError``: retried with the background exporter's
backoff, the position unchanged. ``close()`` shuts the exporter down.

Imports the OpenTelemetry SDK (the ``otel`` extra), so only the composition root imports this.
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from lineage.adapters.otlp.wire import IS_REMOTE
from lineage.errors import CollectorUnavailableError

from .transport import ExportResult

_KINDS = {1: SpanKind.INTERNAL, 2: SpanKind.SERVER, 3: SpanKind.CLIENT, 4: SpanKind.PRODUCER,
          5: SpanKind.CONSUMER}
_CODES = {0: StatusCode.UNSET, 1: StatusCode.OK, 2: StatusCode.ERROR}


class SdkExporterTransport:
    """Delivers each request to an SDK ``SpanExporter`` (module doc). Thread: the runner's."""

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter
        self.endpoint = f"{type(exporter).__name__} (OpenTelemetry SDK exporter)"

    def export(self, payload: bytes, cancel: threading.Event | None = None) -> ExportResult:
        spans = readable_spans(payload)
        try:
            result = self.exporter.export(spans)
        except Exception as error:  # a sink that raises is a sink that failed: retry later
            raise CollectorUnavailableError(self.endpoint, f"{type(error).__name__}: {error}",
                                            1) from None
        if result is not SpanExportResult.SUCCESS:
            raise CollectorUnavailableError(self.endpoint, f"the exporter answered {result.name}", 1)
        return ExportResult()

    def close(self) -> None:
        self.exporter.shutdown()


def readable_spans(payload: bytes) -> list[ReadableSpan]:
    """The SDK's view of an encoded ``ExportTraceServiceRequest``."""
    request = ExportTraceServiceRequest.FromString(payload)
    spans: list[ReadableSpan] = []
    for resource_spans in request.resource_spans:
        resource = Resource(_values(resource_spans.resource.attributes))
        for scope_spans in resource_spans.scope_spans:
            scope = InstrumentationScope(scope_spans.scope.name, scope_spans.scope.version)
            spans += [_span(span, resource, scope) for span in scope_spans.spans]
    return spans


def _span(span: Any, resource: Resource, scope: InstrumentationScope) -> ReadableSpan:
    trace_id = int.from_bytes(span.trace_id, "big")
    parent = None if not span.parent_span_id else _context(
        trace_id, span.parent_span_id, span.flags)
    return ReadableSpan(
        name=span.name, context=_context(trace_id, span.span_id, span.flags & 0xFF),
        parent=parent, resource=resource, attributes=_values(span.attributes),
        events=[Event(e.name, _values(e.attributes), e.time_unix_nano) for e in span.events],
        links=[Link(_context(int.from_bytes(x.trace_id, "big"), x.span_id, x.flags),
                    _values(x.attributes)) for x in span.links],
        kind=_KINDS.get(span.kind, SpanKind.INTERNAL),
        status=Status(_CODES.get(span.status.code, StatusCode.UNSET),
                      span.status.message or None),
        start_time=span.start_time_unix_nano, end_time=span.end_time_unix_nano,
        instrumentation_scope=scope)


def _context(trace_id: int, span_id: bytes, flags: int) -> SpanContext:
    return SpanContext(trace_id, int.from_bytes(span_id, "big"), bool(flags & IS_REMOTE),
                       TraceFlags(flags & 0xFF))


def _values(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair) for pair in pairs}


def _value(pair: KeyValue) -> Any:
    which = pair.value.WhichOneof("value")
    return getattr(pair.value, which) if which else None
