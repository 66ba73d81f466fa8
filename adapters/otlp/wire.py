"""Span records -> OTLP ``Span`` protobuf bytes, written by hand.

The same bytes ``opentelemetry-proto``'s ``Span(...).SerializeToString(deterministic=True)``
writes for the same record (a unit test compares them on every kind of value), without
building message objects: fields in field-number order, proto3 defaults left out, a oneof's
value written even when it is the default. It is the exporter's hot path (a span per step of a
million-step run).

    Span:      1 trace_id, 2 span_id, 4 parent_span_id, 5 name, 6 kind, 7 start (fixed64),
               8 end (fixed64), 9 attributes, 10 dropped_attributes_count, 11 events,
               12 dropped_events_count, 13 links, 14 dropped_links_count, 15 status,
               16 flags (fixed32)
    Event:     1 time (fixed64), 2 name, 3 attributes, 4 dropped_attributes_count
    Link:      1 trace_id, 2 span_id, 4 attributes, 5 dropped_attributes_count, 6 flags
    Status:    2 message, 3 code
    KeyValue:  1 key, 2 value (AnyValue: 1 string, 2 bool, 3 int64, 4 double)
"""

from __future__ import annotations

import struct

from lineage.spans.model import STATUS_ERROR, STATUS_OK, Attributes, SpanRecord

_FIXED64, _FIXED32, _DOUBLE = struct.Struct("<Q").pack, struct.Struct("<I").pack, \
    struct.Struct("<d").pack
_STATUS_CODES = {STATUS_OK: 1, STATUS_ERROR: 2}
_KINDS = {"internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
SAMPLED, HAS_IS_REMOTE, IS_REMOTE = 0x01, 0x100, 0x200
LOCAL, REMOTE = SAMPLED | HAS_IS_REMOTE, SAMPLED | HAS_IS_REMOTE | IS_REMOTE
_SMALL = [bytes([n]) for n in range(128)]
_INT64 = 1 << 63


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int."""
    if value < 0x80:
        return _SMALL[value]
    if value < 0x4000:
        return bytes((value & 0x7F | 0x80, value >> 7))
    if value < 0x200000:
        return bytes((value & 0x7F | 0x80, (value >> 7) & 0x7F | 0x80, value >> 14))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, bytes."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def _text(number: int, text: str) -> bytes:
    data = text.encode("utf-8")  # a lone surrogate raises, as protobuf does: the span is skipped
    return varint(number << 3 | 2) + varint(len(data)) + data


def _any_value(value: object) -> bytes:
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            raise ValueError(f"integer {value} is out of range for int64")
        return b"\x18" + varint(value if value >= 0 else value + (1 << 64))
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    data = (value if isinstance(value, str) else str(value)).encode("utf-8")
    return b"\x0a" + varint(len(data)) + data


_KEYS: dict[str, bytes] = {}  # attribute keys repeat: each encoded once (bounded)
# Whole key-values repeat too (a run's id, an epoch, a learning rate, step after step); the
# type is part of the key, since True == 1 == 1.0 would otherwise share an entry.
_PAIRS: dict[tuple[str, type, object], bytes] = {}
_PAIRS_KEPT = 65_536


def _key_value(key: str, value: object) -> bytes:
    """A serialised ``KeyValue`` (its length prefix first). Floats and non-negative ints, the
    values that change step after step, are framed straight from a per-key head; anything else
    is memoised whole."""
    kind = type(value)
    if kind is float:
        head = _FLOAT_HEADS.get(key)
        if head is None:
            head = _float_head(key)
        return head + _DOUBLE(value)
    if kind is int and 0 <= value < _INT64:  # type: ignore[operator]
        data = varint(value)  # type: ignore[arg-type]
        key_field = _key_field(key)
        return varint(len(key_field) + 3 + len(data)) + key_field + _INT_TAGS[len(data)] + data
    memo = (key, kind, value)
    found = _PAIRS.get(memo)
    if found is not None:
        return found
    if len(_PAIRS) >= _PAIRS_KEPT:
        _PAIRS.clear()
    found = _PAIRS[memo] = _encode_key_value(key, value)
    return found


# value field 2 (tag 0x12), its length, AnyValue's int_value tag (0x18), by the varint's length
_INT_TAGS = [b"\x12" + bytes([1 + n]) + b"\x18" for n in range(11)]
_FLOAT_HEADS: dict[str, bytes] = {}  # key -> a float KeyValue's bytes before its 8 value bytes


def _float_head(key: str) -> bytes:
    key_field = _key_field(key)
    head = varint(len(key_field) + 11) + key_field + b"\x12\x09\x21"
    if len(_FLOAT_HEADS) < 4096:
        _FLOAT_HEADS[key] = head
    return head


def _text_once(cache: dict[str, bytes], limit: int, number: int, text: str) -> bytes:
    """``text`` as string field ``number`` (nothing when empty), encoded once and kept in
    ``cache`` while it holds fewer than ``limit`` entries."""
    found = cache.get(text)
    if found is None:
        found = _text(number, text) if text else b""
        if len(cache) < limit:
            cache[text] = found
    return found


def _key_field(key: str) -> bytes:
    return _text_once(_KEYS, 4096, 1, key)


def _encode_key_value(key: str, value: object) -> bytes:
    data = _any_value(value)
    encoded = _key_field(key) + b"\x12" + varint(len(data)) + data
    return varint(len(encoded)) + encoded


def _attributes(number: int, attributes: Attributes) -> bytes:
    tag = varint(number << 3 | 2)
    return b"".join([tag + _key_value(key, value) for key, value in attributes])


def _count(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value) if value else b""


_NAMES: dict[str, bytes] = {}  # span names, encoded once (bounded)


def _name(name: str) -> bytes:
    return _text_once(_NAMES, 256, 5, name)


def _id(tag: bytes, value: bytes) -> bytes:
    """An id field (``tag`` with its number and wire type) of 8 or 16 bytes, or any length."""
    if not value:
        return b""
    return tag + _SMALL[len(value)] + value if len(value) < 128 else \
        tag + varint(len(value)) + value


def encode_span(record: SpanRecord) -> bytes:
    """The serialised ``Span`` of ``record`` (see the module docstring)."""
    parts = [_id(b"\x0a", record.trace_id), _id(b"\x12", record.span_id),
             _id(b"\x22", record.parent_span_id), _name(record.name)]
    parts.append(b"\x30" + varint(_KINDS[record.kind]))
    if record.start_ns:
        parts.append(b"\x39" + _FIXED64(record.start_ns))
    if record.end_ns:
        parts.append(b"\x41" + _FIXED64(record.end_ns))
    parts.append(_attributes(9, record.attributes))
    parts.append(_count(10, record.dropped_attributes))
    for event in record.events:
        body = b"".join([b"\x09" + _FIXED64(event.time_ns) if event.time_ns else b"",
                         _text(2, event.name) if event.name else b"",
                         _attributes(3, event.attributes), _count(4, event.dropped_attributes)])
        parts.append(field(11, body))
    parts.append(_count(12, record.dropped_events))
    for link in record.links:
        flags = LOCAL if link.trace_id == record.trace_id else REMOTE
        body = b"".join([field(1, link.trace_id) if link.trace_id else b"",
                         field(2, link.span_id) if link.span_id else b"",
                         _attributes(4, link.attributes), _count(5, link.dropped_attributes),
                         b"\x35" + _FIXED32(flags)])
        parts.append(field(13, body))
    parts.append(_count(14, record.dropped_links))
    code = _STATUS_CODES.get(record.status)
    if code is not None:
        message = record.status_message if code == 2 else ""
        parts.append(field(15, (_text(2, message) if message else b"") + b"\x18" + varint(code)))
    parts.append(b"\x85\x01" + _FIXED32(REMOTE if record.remote_parent else LOCAL))
    return b"".join(parts)

