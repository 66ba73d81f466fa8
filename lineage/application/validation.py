"""Input rules, checked in the caller's thread before anything is queued or stored.

Each check returns the value in its stored form or raises ValidationError naming the field and
the rule. They are on the hot path of ``log_step``: keep them to a few isinstance calls (metric
names are checked once per distinct name, then found in a set).

The limits below are the ones the README's "Limits" table documents; change both together.
"""

from __future__ import annotations

import ipaddress
import json
import math
import operator
import re
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from lineage.errors import ValidationError

NAME_MAX = 256  # run, metric, artifact and job names, tag keys, error types
ALIAS_MAX = 128  # alias names and scopes, recovery strategies
SHORT_MAX = 64  # formats, signals, splits
TAG_VALUE_MAX = 4096
_TAG_INT_LIMIT = 10 ** TAG_VALUE_MAX  # a tag's int at or past this has too many digits
TEXT_MAX = 8192  # messages and reasons: free text, may span lines
URI_MAX = 4096  # artifact paths and uris
METRICS_MAX = 1024  # names in one metrics (or durations, resources) mapping
TAGS_MAX = 256  # tags on one run
IDS_MAX = 1024  # parents of an artifact, inputs of a run, datasets of a job spec

# A name is one line of printable text; free text may also hold tabs and line breaks. Neither
# may hold NUL (PostgreSQL text cannot), other control characters, or unpaired surrogates
# (they cannot be encoded as UTF-8, so the writer could never store them).
_NOT_IN_NAMES = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_NOT_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# Metric names that passed ``name``: the hot path looks them up instead of checking again.
# Bounded, as metric names are few but not trusted.
_GOOD_METRIC_NAMES: set[str] = set()
KNOWN_METRIC_NAMES = _GOOD_METRIC_NAMES  # read-only outside this module (log_step's fast path)
_GOOD_NAMES_MAX = 10_000
FLOAT_MAX = 1.7976931348623157e308

ARTIFACT_TYPES = ("checkpoint", "model", "dataset", "log")
CHECKPOINT_FORMATS = ("safetensors", "pytorch", "gguf", "onnx")
CHECKSUM_ALGORITHMS = {"sha256": 64, "sha512": 128, "sha1": 40, "md5": 32}
RUN_STATUSES_FINAL = ("completed", "failed", "cancelled", "superseded")
METADATA_LIMIT_BYTES = 64 * 1024
MAX_BUCKETS = 10_000  # a downsampled metric history: far more points than a plot has pixels

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
        raise ValidationError(field, f"must be a non-negative integer, got {shown(number)}", value)
    if number > INT64_MAX:
        raise ValidationError(field, f"must be at most {INT64_MAX} (2**63 - 1, what a 64-bit "
                                     f"column holds), got {shown(number)}", value)
    return number


def optional_step(value: Any, field: str) -> int | None:
    return None if value is None else step(value, field)


def metrics(value: Any, field: str = "metrics") -> dict[str, float]:
    """A flat mapping of names to numbers. NaN and +-inf are real training signals: kept.

    At most METRICS_MAX names, each a ``name`` (checked once per distinct name per process).
    """
    if not isinstance(value, dict):
        if not isinstance(value, Mapping):
            raise ValidationError(field, f"must be a mapping of name to number, not {type(value).__name__}")
        value = dict(value)
    if len(value) > METRICS_MAX:
        raise ValidationError(field, f"holds {len(value)} names; the limit is {METRICS_MAX}")
    converted: dict[str, float] | None = None
    for key, number in value.items():
        if type(key) is not str or key not in _GOOD_METRIC_NAMES:
            _metric_name(key, field)
        if type(number) is float or (type(number) is int and INT64_MIN <= number <= INT64_MAX):
            continue
        if type(number) is int:
            raise ValidationError(f"{field}[{key!r}]", f"must fit in a 64-bit integer (what every "
                                  f"store holds), got {shown(number)}; pass a float for a larger value",
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


def _metric_name(key: Any, field: str) -> None:
    if type(key) is not str:
        raise ValidationError(f"{field}[{shown(key)}]", "metric names must be strings", key)
    name(key, f"{field}[{shown(key)}]")
    if len(_GOOD_METRIC_NAMES) < _GOOD_NAMES_MAX:
        _GOOD_METRIC_NAMES.add(key)


def durations(value: Any, field: str = "durations") -> dict[str, float]:
    """``metrics``, with every value a finite number of seconds >= 0."""
    checked = metrics(value, field)
    for key, seconds in checked.items():
        if not 0 <= seconds <= FLOAT_MAX:  # also false for NaN
            raise ValidationError(f"{field}[{key!r}]", f"must be a finite number of seconds "
                                                        f">= 0, got {seconds!r}", seconds)
    return checked


def _as_float(number: Any) -> float | None:
    if isinstance(number, bool | str | bytes) or not hasattr(number, "__float__"):
        return None
    try:
        return float(number)
    except (TypeError, ValueError):
        return None


def json_object(value: Any, field: str, limit: int = METADATA_LIMIT_BYTES) -> dict[str, Any]:
    """A JSON-serialisable mapping no larger than ``limit`` bytes once encoded (UTF-8, so no
    unpaired surrogates; nesting deeper than the encoder allows is refused too)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(field, f"must be a mapping, not {type(value).__name__}")
    try:
        encoded = json.dumps(value, allow_nan=True, separators=(",", ":"), ensure_ascii=False)
        size = len(encoded.encode())
    except (TypeError, ValueError, RecursionError) as error:
        reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)[:200]
        raise ValidationError(field, f"must be JSON-serialisable as UTF-8 ({reason})") from None
    if size > limit:
        raise ValidationError(field, f"is {size} bytes encoded; the limit is {limit}")
    decoded: dict[str, Any] = json.loads(encoded)
    return decoded


def choice(value: Any, field: str, allowed: tuple[str, ...]) -> str:
    if type(value) is not str or value not in allowed:
        raise ValidationError(field, f"must be one of {', '.join(allowed)}; got {shown(value)}",
                              value)
    return value


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


def text(value: Any, field: str, *, max_length: int = NAME_MAX, allow_empty: bool = False,
         multiline: bool = False) -> str:
    """A string of at most ``max_length`` characters, not empty or only whitespace (unless
    ``allow_empty``), with no control characters (``multiline``: tabs and line breaks are
    allowed) and no unpaired surrogates."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, not {type(value).__name__}")
    if len(value) > max_length:
        raise ValidationError(field, f"must be at most {max_length} characters, got {len(value)}")
    if not value.strip() and not allow_empty:
        raise ValidationError(field, "must not be empty or only whitespace", value)
    bad = (_NOT_IN_TEXT if multiline else _NOT_IN_NAMES).search(value)
    if bad is not None:
        kind = "an unpaired surrogate" if bad.group() >= "\ud800" else "a control character"
        raise ValidationError(field, f"must not contain {kind} (found {bad.group()!r} at "
                                     f"index {bad.start()})", value)
    return value


def clean_text(value: str, max_length: int = TEXT_MAX) -> str:
    """Free text we write ourselves from an exception's message: cut to ``max_length`` and
    with what ``text(multiline=True)`` refuses replaced by U+FFFD, so recording a failure never
    fails on the message of the error it records."""
    return _NOT_IN_TEXT.sub("\ufffd", value[:max_length])


def name(value: Any, field: str, *, max_length: int = NAME_MAX) -> str:
    """A name: one line of printable text, 1..``max_length`` characters, not only whitespace."""
    return text(value, field, max_length=max_length)


def optional_text(value: Any, field: str, *, max_length: int = NAME_MAX,
                  multiline: bool = False) -> str | None:
    return None if value is None else text(value, field, max_length=max_length,
                                           multiline=multiline)


def tags(value: Any, field: str = "tags") -> dict[str, str]:
    """Up to TAGS_MAX tags: a mapping of name to value (a string of up to TAG_VALUE_MAX
    characters, a number or a bool, stored as a string; None is ""), or a list of names."""
    if value is None:
        return {}
    if isinstance(value, list | tuple | set | frozenset):
        value = {text(tag, f"{field} key"): "" for tag in value}
    if not isinstance(value, Mapping):
        raise ValidationError(field, "must be a mapping of name to string or a list of names")
    if len(value) > TAGS_MAX:
        raise ValidationError(field, f"holds {len(value)} tags; the limit is {TAGS_MAX}")
    out: dict[str, str] = {}
    for key, tag in value.items():
        text(key, f"{field} key")
        where = f"{field}[{shown(key)}]"
        if tag is None:
            tag = ""
        elif isinstance(tag, int) and not isinstance(tag, bool) and abs(tag) >= _TAG_INT_LIMIT:
            # str() of an int past 4,300 digits raises; past TAG_VALUE_MAX it cannot be kept
            raise ValidationError(where, f"must be at most {TAG_VALUE_MAX} characters, got a "
                                         f"number of more than {TAG_VALUE_MAX} digits")
        elif isinstance(tag, bool | int | float) and not isinstance(tag, str):
            tag = str(tag)
        out[key] = text(tag, where, max_length=TAG_VALUE_MAX, allow_empty=True)
    return out


def bool_flag(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(field, f"must be true or false, not {type(value).__name__}", value)
    return value


def optional_bool(value: Any, field: str) -> bool | None:
    return None if value is None else bool_flag(value, field)


def positive_int(value: Any, field: str) -> int:
    """An integer 1..2**63-1 (numpy integers are accepted as plain ints)."""
    if (isinstance(value, bool) or not hasattr(value, "__index__")
            or not 0 < operator.index(value) <= INT64_MAX):
        raise ValidationError(field, f"must be a positive integer (at most 2**63 - 1), got "
                                     f"{shown(value)}", value)
    return operator.index(value)


def buckets(value: Any, field: str = "buckets") -> int:
    """How many buckets a downsampled history may have: an integer 1..``MAX_BUCKETS``."""
    if (isinstance(value, bool) or not hasattr(value, "__index__")
            or not 0 < operator.index(value) <= MAX_BUCKETS):
        raise ValidationError(field, f"must be an integer from 1 to {MAX_BUCKETS}, got "
                                     f"{shown(value)}", value)
    return operator.index(value)


def number(value: Any, field: str, *, minimum: float = 0.0, above: bool = False,
           maximum: float = FLOAT_MAX) -> float | int:
    """A finite real number >= ``minimum`` (> with ``above``) and <= ``maximum``; not a bool
    or a string."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        as_float = _as_float(value)
        if as_float is None:
            raise ValidationError(field, f"must be a number, not {type(value).__name__}", value)
        value = as_float
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise ValidationError(field, f"must fit in 64 bits, got {shown(value)}", value)
    low_ok = value > minimum if above else value >= minimum
    if not (math.isfinite(value) and low_ok and value <= maximum):
        bound = f"> {minimum:g}" if above else f">= {minimum:g}"
        top = "" if maximum == FLOAT_MAX else f" and <= {maximum:g}"
        raise ValidationError(field, f"must be a finite number {bound}{top}, got {value!r}", value)
    return value


def id_list(values: Any, field: str) -> list[Any]:
    """A list of up to IDS_MAX things naming artifacts (parents, inputs)."""
    if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
        raise ValidationError(field, f"must be a list, not {type(values).__name__}", values)
    items = []
    for item in values:
        items.append(item)
        if len(items) > IDS_MAX:
            raise ValidationError(field, f"holds more than {IDS_MAX} entries")
    return items


# What a remote uri must name after its scheme: object stores and tinker:// a bucket (container,
# session or model id) and a path in it; hf:// a repository; http(s):// a host.
REMOTE_URI_FORMS = {
    "s3": "s3://<bucket>/<key>", "gs": "gs://<bucket>/<key>", "az": "az://<container>/<path>",
    "abfs": "abfs://<container>@<account>/<path>", "tinker": "tinker://<id>/<path>",
    "hf": "hf://<repo>[/<path>]", "https": "https://<host>[/<path>]",
    "http": "http://<host>[/<path>]",
}
_NEEDS_PATH = ("s3", "gs", "az", "abfs", "tinker")


def remote_uri(value: str, field: str = "uri") -> str:
    """A uri of one of REMOTE_URI_FORMS's schemes, naming what that scheme needs; at most
    URI_MAX characters, no whitespace-only, control characters or unpaired surrogates."""
    text(value, field, max_length=URI_MAX)
    try:
        parts = urlsplit(value)
    except ValueError as error:
        raise ValidationError(field, f"is not a valid uri ({error})", value) from None
    scheme = parts.scheme.lower()
    form = REMOTE_URI_FORMS.get(scheme)
    if form is None:
        raise ValidationError(field, f"unsupported uri scheme {scheme!r}", value)
    if not parts.netloc.strip() or (scheme in _NEEDS_PATH and not parts.path.strip("/ ")):
        raise ValidationError(field, f"a {scheme}:// uri must look like {form}", value)
    if scheme in ("http", "https") and _is_metadata_host(parts.hostname or ""):
        raise ValidationError(field, f"names {parts.hostname}, a cloud metadata or link-local "
                              "address, which is never where an artifact lives", value)
    return value


# Instance-metadata services (AWS/Azure/GCP/OpenStack at 169.254.169.254, ECS at 169.254.170.2,
# AWS over IPv6, Alibaba) and the link-local ranges they live in: a uri naming one is refused, so
# nothing that later follows artifact uris (a viewer, a catalog) can be pointed at credentials.
_METADATA_NAMES = frozenset({"metadata", "metadata.google.internal", "metadata.goog",
                             "instance-data", "instance-data.ec2.internal"})
_METADATA_ADDRESSES = frozenset({"100.100.100.200", "fd00:ec2::254"})


def _is_metadata_host(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host in _METADATA_NAMES or host in _METADATA_ADDRESSES:
        return True
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host)
    except ValueError:
        try:  # the legacy IPv4 spellings clients still accept: 2852039166, 0xa9fea9fe, 0251.0376...
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_link_local


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages and field names (a rejected
    10 MB name must not make a 10 MB message)."""
    out = repr(value) if not isinstance(value, int) or abs(value) < 10**60 else "<huge int>"
    return out if len(out) <= limit else out[: limit - 3] + "..."
