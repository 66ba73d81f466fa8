"""Input rules, checked in the caller's thread before anything is queued or stored.

Each check returns the value in its stored form or raises ValidationError naming the field.
They are on the hot path of ``log_step``: keep them to a few isinstance calls.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Mapping
from typing import Any

from lineage.errors import ValidationError

ARTIFACT_TYPES = ("checkpoint", "model", "dataset", "log")
CHECKPOINT_FORMATS = ("safetensors", "pytorch", "gguf", "onnx")
CHECKSUM_ALGORITHMS = {"sha256": 64, "sha512": 128, "sha1": 40, "md5": 32}
RUN_STATUSES_FINAL = ("completed", "failed", "cancelled", "superseded")
METADATA_LIMIT_BYTES = 64 * 1024

_HEX = re.compile(r"^[0-9a-f]+$")
# Every integer we store must fit a signed 64-bit column (SQLite INTEGER, PostgreSQL bigint)
# and an OTLP int attribute: a larger one would be accepted here and break every read model.
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


def step(value: Any, field: str = "step") -> int:
    if type(value) is int and 0 <= value <= INT64_MAX:
        return value
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ValidationError(field, f"must be a non-negative integer, not {type(value).__name__}")
    number = operator.index(value)  # numpy and torch integers are accepted as plain ints
    if number < 0:
        raise ValidationError(field, f"must be a non-negative integer, got {number}", value)
    if number > INT64_MAX:
        raise ValidationError(field, f"must be at most {INT64_MAX} (2**63 - 1, what a 64-bit "
                                     f"column holds), got {number}", value)
    return number


def optional_step(value: Any, field: str) -> int | None:
    return None if value is None else step(value, field)


def metrics(value: Any, field: str = "metrics") -> dict[str, float]:
    """A flat mapping of names to numbers. NaN and +-inf are real training signals: kept."""
    if not isinstance(value, dict):
        if not isinstance(value, Mapping):
            raise ValidationError(field, f"must be a mapping of name to number, not {type(value).__name__}")
        value = dict(value)
    converted: dict[str, float] | None = None
    for key, number in value.items():
        if type(key) is not str:
            raise ValidationError(f"{field}[{key!r}]", "metric names must be strings", key)
        if type(number) is float or (type(number) is int and INT64_MIN <= number <= INT64_MAX):
            continue
        if type(number) is int:
            raise ValidationError(f"{field}[{key!r}]", f"must fit in a 64-bit integer (what every "
                                  f"store holds), got {number}; pass a float for a larger value",
                                  number)
        as_float = _as_float(number)
        if as_float is None:
            raise ValidationError(
                f"{field}[{key!r}]", f"must be a number, not {type(number).__name__}", number
            )
        # numpy scalars and 0-d tensors expose __float__; store them as plain floats.
        converted = converted or dict(value)
        converted[key] = as_float
    return converted or value


def _as_float(number: Any) -> float | None:
    if isinstance(number, bool | str | bytes) or not hasattr(number, "__float__"):
        return None
    try:
        return float(number)
    except (TypeError, ValueError):
        return None


def json_object(value: Any, field: str, limit: int = METADATA_LIMIT_BYTES) -> dict[str, Any]:
    """A JSON-serialisable mapping no larger than ``limit`` bytes once encoded."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(field, f"must be a mapping, not {type(value).__name__}")
    try:
        encoded = json.dumps(value, allow_nan=True, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise ValidationError(field, f"must be JSON-serialisable ({error})") from None
    if len(encoded.encode()) > limit:
        raise ValidationError(field, f"is {len(encoded.encode())} bytes encoded; the limit is {limit}")
    decoded: dict[str, Any] = json.loads(encoded)
    return decoded


def choice(value: Any, field: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValidationError(field, f"must be one of {', '.join(allowed)}; got {value!r}", value)
    return str(value)


def checksum(value: Any, field: str = "checksum") -> tuple[str, str]:
    """``"sha256:<hex>"`` (or a bare 64-hex digest, taken as sha256) -> (algorithm, digest)."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string like 'sha256:<hex>', not {type(value).__name__}")
    algorithm, sep, digest = value.partition(":")
    if not sep:
        algorithm, digest = "sha256", value
    algorithm = algorithm.lower()
    digest = digest.lower()
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise ValidationError(
            field, f"unknown algorithm {algorithm!r}; use one of {', '.join(CHECKSUM_ALGORITHMS)}"
        )
    if len(digest) != CHECKSUM_ALGORITHMS[algorithm] or not _HEX.match(digest):
        raise ValidationError(
            field, f"a {algorithm} digest is {CHECKSUM_ALGORITHMS[algorithm]} hex characters", value
        )
    return algorithm, digest


def text(value: Any, field: str, *, max_length: int = 1024, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, not {type(value).__name__}")
    if not value.strip() and not allow_empty:
        raise ValidationError(field, "must not be empty")
    if len(value) > max_length:
        raise ValidationError(field, f"must be at most {max_length} characters")
    return value


def optional_text(value: Any, field: str, *, max_length: int = 1024) -> str | None:
    return None if value is None else text(value, field, max_length=max_length)


def tags(value: Any, field: str = "tags") -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, list | tuple | set):
        value = {str(tag): "" for tag in value}
    if not isinstance(value, Mapping):
        raise ValidationError(field, "must be a mapping of name to string or a list of names")
    out: dict[str, str] = {}
    for key, tag in value.items():
        text(key, f"{field} key")
        out[key] = "" if tag is None else str(tag)
    return out

