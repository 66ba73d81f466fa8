"""The caller's active OpenTelemetry span, if any, read without importing OpenTelemetry.

``import lineage`` imports no OpenTelemetry package (a test checks it). A training service that
traces itself has already imported ``opentelemetry.trace``; then ``active_trace_context()``
asks it for the current span of the calling thread (its context), and ``Tracker.start_run``
records that span's ids with the run (``Run.TraceContextLinked``), so the run's root span links
to it. Without OpenTelemetry loaded, or outside any span, it is None.
"""

from __future__ import annotations

import sys


def active_trace_context() -> tuple[str, str, bool] | None:
    """(trace id, span id, sampled) of the current OpenTelemetry span, ids in lowercase hex;
    None when OpenTelemetry is not loaded or no valid span is active. Never raises."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    try:
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        return f"{context.trace_id:032x}", f"{context.span_id:016x}", bool(context.trace_flags & 1)
    except Exception:  # a broken tracing setup must not stop a run from starting
        return None
