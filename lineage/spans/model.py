"""Span records: what the OTLP exporter sends, as plain values (DESIGN §6).

A ``SpanRecord`` is a finished span with everything decided: deterministic ids, the events' own
historical times, bounded attributes, events and links. ``lineage.spans.builder`` makes them from
stored events; ``lineage.adapters.otlp.encoder`` turns them into OTLP protobuf. Nothing here does
I/O or imports OpenTelemetry: the records are compared by value in tests.

Ids are pure functions of stored ids (``lineage.spans.identity``, shared with the read model),
so exporting the same events twice gives the same spans.

Limits follow OpenTelemetry's defaults (128 attributes, events and links per span, 128
attributes per event and link); string values are cut to ``max_value_length`` characters, and
what is dropped is counted on the record (``dropped_*``), as the OTLP fields expect.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

AttributeValue = str | bool | int | float
Attributes = tuple[tuple[str, AttributeValue], ...]

INTERNAL = "internal"
STATUS_UNSET, STATUS_OK, STATUS_ERROR = "unset", "ok", "error"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT64 = 2**63
OTEL_DEFAULT_LIMIT = 128  # OpenTelemetry's default bound on attributes, events and links


@dataclass(frozen=True, slots=True)
class SpanLimits:
    """Bounds on one span (OpenTelemetry's defaults, except the value length, which the SDK
    leaves unlimited: long values are cut so a span, and so a batch, stays small)."""

    max_attributes: int = OTEL_DEFAULT_LIMIT
    max_events: int = OTEL_DEFAULT_LIMIT
    max_links: int = OTEL_DEFAULT_LIMIT
    max_event_attributes: int = OTEL_DEFAULT_LIMIT
    max_link_attributes: int = OTEL_DEFAULT_LIMIT
    max_value_length: int = 2048


DEFAULT_LIMITS = SpanLimits()


class SpanEvent(NamedTuple):
    """A point in time on a span (``exception``, ``input used``). Events and links are named
    tuples: a long run's step spans make one per step, and a tuple is built several times
    faster than a frozen dataclass."""

    name: str
    time_ns: int
    attributes: Attributes = ()
    dropped_attributes: int = 0


class SpanLink(NamedTuple):
    """A pointer to a span in this or another trace (a resumed run's origin, a parent
    checkpoint)."""

    trace_id: bytes
    span_id: bytes
    attributes: Attributes = ()
    dropped_attributes: int = 0


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """One finished span. ``parent_span_id`` is ``b""`` for a root span; times are epoch ns;
    ``remote_parent``: the parent is a span of another process (the caller's OpenTelemetry
    span a run was started in)."""

    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes
    name: str
    start_ns: int
    end_ns: int
    attributes: Attributes = ()
    events: tuple[SpanEvent, ...] = ()
    links: tuple[SpanLink, ...] = ()
    status: str = STATUS_UNSET
    status_message: str = ""
    kind: str = INTERNAL
    dropped_attributes: int = 0
    dropped_events: int = 0
    dropped_links: int = 0
    remote_parent: bool = False


# -- ids and times ---------------------------------------------------------------------------


def ns_of(moment: datetime) -> int:
    """Exact epoch nanoseconds of an aware datetime (no float rounding); naive means UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


# -- bounded attributes ----------------------------------------------------------------------


def attribute_value(value: Any, max_length: int) -> AttributeValue | None:
    """An OTLP-compatible scalar for ``value`` (None: leave the attribute out).

    Strings are cut to ``max_length`` characters; ints outside int64 become strings; UUIDs and
    other objects are written as ``str``. NaN and infinities stay doubles (OTLP allows them).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else str(value)[:max_length]
    if isinstance(value, float):
        return value
    text = value if isinstance(value, str) else str(value)
    return text[:max_length]


def attributes(pairs: Iterable[tuple[str, Any]], limits: SpanLimits = DEFAULT_LIMITS,
               limit: int | None = None) -> tuple[Attributes, int]:
    """Bounded attributes from ``(key, value)`` pairs, in order: the first of a repeated key,
    values converted (``attribute_value``), None left out, at most ``limit`` (default
    ``limits.max_attributes``) of them; returns (attributes, how many were dropped). One loop
    with the common types inline: it runs for every span and event the exporter builds."""
    bound = limits.max_attributes if limit is None else limit
    length = limits.max_value_length
    items: dict[str, AttributeValue] = {}
    dropped = 0
    for key, value in pairs:
        kind = type(value)
        if kind is float or kind is bool:
            converted: AttributeValue | None = value
        elif kind is int:
            converted = value if -_INT64 <= value < _INT64 else str(value)[:length]
        elif kind is str:
            converted = value if len(value) <= length else value[:length]
        else:
            converted = attribute_value(value, length)
        if converted is None or key in items:
            continue
        if len(items) >= bound:
            dropped += 1
            continue
        items[key if len(key) <= length else key[:length]] = converted
    return tuple(items.items()), dropped


def flatten(prefix: str, value: Any, depth: int = 3) -> list[tuple[str, Any]]:
    """``{"adapter": {"rank": 16}}`` under ``lineage.job`` -> ``[("lineage.job.adapter.rank",
    16)]``: scalars only, keys sorted, lists of scalars joined with commas, ``depth`` levels."""
    if isinstance(value, Mapping):
        if depth == 0:
            return []
        pairs: list[tuple[str, Any]] = []
        for key in sorted(value, key=str):
            pairs.extend(flatten(f"{prefix}.{key}", value[key], depth - 1))
        return pairs
    if isinstance(value, list | tuple):
        if all(isinstance(item, str | int | float | bool) for item in value):
            return [(prefix, ",".join(str(item) for item in value))]
        return []
    return [(prefix, value)]


def bounded(items: list[Any], limit: int) -> tuple[tuple[Any, ...], int]:
    """The first ``limit`` items and how many were dropped."""
    return tuple(items[:limit]), max(0, len(items) - limit)


def make_event(name: str, moment: datetime, pairs: Iterable[tuple[str, Any]],
               limits: SpanLimits = DEFAULT_LIMITS) -> SpanEvent:
    values, dropped = attributes(pairs, limits, limits.max_event_attributes)
    return SpanEvent(name, ns_of(moment), values, dropped)


def make_link(trace_id: bytes, span_id: bytes, pairs: Iterable[tuple[str, Any]],
              limits: SpanLimits = DEFAULT_LIMITS) -> SpanLink:
    values, dropped = attributes(pairs, limits, limits.max_link_attributes)
    return SpanLink(trace_id, span_id, values, dropped)


def prefixed(prefix: str, values: Mapping[str, Any] | None) -> list[tuple[str, Any]]:
    """``(prefix + key, value)`` pairs, sorted by key (deterministic attribute order)."""
    items = values or {}
    return [(prefix + key, items[key]) for key in sorted(items)]


def make_span(trace_id: bytes, span_id: bytes, parent_span_id: bytes, name: str, start_ns: int,
              end_ns: int, pairs: Iterable[tuple[str, Any]], events: list[SpanEvent],
              links: list[SpanLink], status: str = STATUS_UNSET, message: str = "",
              limits: SpanLimits = DEFAULT_LIMITS) -> SpanRecord:
    """A span record with its attributes, events and links bounded by ``limits`` (what was
    dropped counted); a start after the end is moved to the end."""
    values, dropped = attributes(pairs, limits)
    kept_events, dropped_events = bounded(events, limits.max_events)
    kept_links, dropped_links = bounded(links, limits.max_links)
    return SpanRecord(
        trace_id=trace_id, span_id=span_id, parent_span_id=parent_span_id, name=name,
        start_ns=min(start_ns, end_ns), end_ns=end_ns, attributes=values, events=kept_events,
        links=kept_links, status=status, status_message=message[: limits.max_value_length],
        dropped_attributes=dropped, dropped_events=dropped_events, dropped_links=dropped_links)

