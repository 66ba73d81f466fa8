"""The CLI's JSON: strict, indented by two, written as it is made.

``jsonable`` says what a value becomes (UUIDs and paths as strings, datetimes ISO 8601, NaN and
infinities as the strings "NaN", "Infinity", "-Infinity"); ``iterencode`` writes that as
``json.dumps(jsonable(value), indent=2, allow_nan=False, ensure_ascii=False)`` would, byte for
byte, but in pieces: the two outer levels of containers go out item by item, so a list there
can be a one-pass iterator (a long run's spans read from the database as they are written)
and the whole document is never in memory. Deeper values are encoded whole, by string joins
around the C string encoder (the standard library's indented encoder is pure Python, and
several times slower).
"""

from __future__ import annotations

import json.encoder
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import fields, is_dataclass
from datetime import datetime
from pathlib import PurePath
from typing import Any
from uuid import UUID

STREAMED_LEVELS = 2  # containers this shallow are written item by item
_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}
_string: Any = json.encoder.encode_basestring  # the C one when there is one (ensure_ascii=False)
_SCALARS = frozenset({str, int, float, bool, type(None)})
_INDENTS = tuple("\n" + "  " * level for level in range(16))
KEYS_KEPT = 4096  # encoded keys remembered (a trace repeats a few dozen names)
_KEYS: dict[str, str] = {}  # key -> '"key": '
_FLAT_ENCODERS: dict[int, Callable[[Any], str]] = {}  # level -> encoder of flat containers


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: UUIDs as strings, datetimes ISO 8601, NaN and infinities
    as the strings "NaN", "Infinity", "-Infinity" (so the output is strict JSON)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return _NON_FINITE.get(value, value)
    if isinstance(value, UUID | PurePath):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Iterable) and not isinstance(value, bytes):
        return [jsonable(item) for item in value]
    if hasattr(value, "__float__"):  # NumPy scalars
        return jsonable(float(value))
    return str(value)


def dumps(value: Any) -> str:
    """The whole document as one string (``iterencode`` joined)."""
    return "".join(iterencode(value))


def iterencode(value: Any, level: int = 0) -> Iterator[str]:
    """``value`` (at nesting ``level``) as indented strict JSON, in pieces (module doc)."""
    if level >= STREAMED_LEVELS:
        yield encode(value, level)
        return
    if isinstance(value, Mapping) and _plain_keys(value):
        items: Iterable[tuple[str, Any]] = value.items()
        opening, closing = "{", "}"
    elif _is_list(value):
        items = (("", item) for item in value)
        opening, closing = "[", "]"
    else:
        yield encode(value, level)
        return
    inner = _indent(level + 1)
    first = True
    for key, item in items:
        yield (opening if first else ",") + inner + (_string(key) + ": " if closing == "}" else "")
        yield from iterencode(item, level + 1)
        first = False
    yield opening + closing if first else _indent(level) + closing


def encode(value: Any, level: int = 0) -> str:
    """``value`` (at nesting ``level``) as indented strict JSON, in one string."""
    kind = type(value)
    if kind is str:
        return str(_string(value))
    if kind is dict:
        return _dict(value, level)
    if kind is list:
        flat = _flat(value, level)
        if flat is not None:
            return flat
    if isinstance(value, str):
        return str(_string(value))
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if math.isnan(value) or value in _NON_FINITE:
            return str(_string(jsonable(value)))
        return float.__repr__(value)
    if isinstance(value, Mapping) and _plain_keys(value):
        return _join("{", [_string(key) + ": " + _item(item, level + 1)
                           for key, item in value.items()], level, "}")
    if isinstance(value, list | tuple):
        return _join("[", [_item(item, level + 1) for item in value], level, "]")
    return encode(jsonable(value), level)  # anything else: as ``jsonable`` makes it


def _dict(value: dict[Any, Any], level: int) -> str:
    """A dict, its commonest values (a span's fields) encoded inline."""
    parts: list[str] = []
    append = parts.append
    for key, item in value.items():
        prefix = _KEYS.get(key)
        if prefix is None:
            if type(key) is not str:
                return encode(jsonable(value), level)
            prefix = _string(key) + ": "
            if len(_KEYS) < KEYS_KEPT:
                _KEYS[key] = prefix
        kind = type(item)
        if kind is str:
            append(prefix + _string(item))
        elif kind is int:
            append(prefix + int.__repr__(item))
        elif kind is float and item - item == 0.0:  # finite
            append(prefix + float.__repr__(item))
        elif item is None:
            append(prefix + "null")
        elif kind is dict:
            append(prefix + (_flat(item, level + 1) or _dict(item, level + 1)))
        else:
            append(prefix + encode(item, level + 1))
    return _join("{", parts, level, "}")


def _item(value: Any, level: int) -> str:
    """``encode``, with the commonest scalars inline (most of a span's fields)."""
    kind = type(value)
    if kind is str:
        return str(_string(value))
    if kind is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    return encode(value, level)


def _join(opening: str, items: list[str], level: int, closing: str) -> str:
    if not items:
        return opening + closing
    inner = _indent(level + 1)
    return opening + inner + ("," + inner).join(items) + _indent(level) + closing


def _flat(value: dict[Any, Any] | list[Any], level: int) -> str | None:
    """A dict or list of plain scalars (str keys; str, int, float, bool, None values), by the
    C encoder with the indented layout's separators; None for anything else (and for NaN or
    an infinity, which ``jsonable`` turns into strings)."""
    if not value:
        return None
    items = value.values() if type(value) is dict else value
    if not all(type(item) in _SCALARS for item in items):
        return None
    if type(value) is dict and not _plain_keys(value):
        return None
    encoder = _FLAT_ENCODERS.get(level) or _flat_encoder(level)
    try:
        text = encoder(value)
    except ValueError:  # NaN or an infinity
        return None
    return text[0] + _indent(level + 1) + text[1:-1] + _indent(level) + text[-1]


def _flat_encoder(level: int) -> Callable[[Any], str]:
    """The C encoder (made once: the standard library makes one per call) with the item
    separator of level ``level``; the library's pure-Python one where there is no C one."""
    separator = "," + _indent(level + 1)
    make = getattr(json.encoder, "c_make_encoder", None)  # not in the typeshed stubs
    if make is None:
        encoder: Callable[[Any], str] = json.encoder.JSONEncoder(
            ensure_ascii=False, allow_nan=False, separators=(separator, ": ")).encode
    else:
        chunks = make(None, None, _string, None, ": ", separator, False, False, False)
        encoder = lambda value: "".join(chunks(value, 0))  # noqa: E731
    _FLAT_ENCODERS[level] = encoder
    return encoder


def _indent(level: int) -> str:
    return _INDENTS[level] if level < len(_INDENTS) else "\n" + "  " * level


def _plain_keys(mapping: Mapping[Any, Any]) -> bool:
    return all(type(key) is str for key in mapping)


def _is_list(value: Any) -> bool:
    """A list or tuple, or a one-pass iterable at a streamed level (not a mapping, a string,
    bytes or a dataclass: ``jsonable`` has its own rules for those)."""
    if isinstance(value, list | tuple):
        return True
    return (isinstance(value, Iterable) and not isinstance(value, str | bytes | Mapping)
            and not is_dataclass(value))
