"""Normalising the times callers give us to UTC with microsecond precision.

Accepted inputs, as a user of a training loop has them:

- an aware ``datetime`` (any offset) or a naive one (taken as UTC);
- an ISO 8601 string (``Z`` or an offset; naive is UTC);
- a number: epoch seconds, or epoch milliseconds / microseconds / nanoseconds when it is too
  large to be seconds (told apart by magnitude, as OpenTelemetry and most loggers do).

The raw value is kept as a string next to the normalised one so nothing the caller said is lost.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from lineage.errors import ValidationError

# Epoch seconds for 5138-11-16 are 1e11: anything larger is in a finer unit.
_SECONDS_LIMIT = 1e11
_MILLIS_LIMIT = 1e14
_MICROS_LIMIT = 1e17
_STRING_MAX = 64  # the raw string is kept with the event: an ISO time is at most ~35
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_from_ns(ns: int) -> datetime:
    """UTC datetime, truncated to microseconds, from integer epoch nanoseconds; OverflowError
    past what a datetime holds (arithmetic, not the C library's ``gmtime``, which fails with an
    OSError on some platforms)."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


def normalise(value: Any, field: str = "occurred_at") -> tuple[datetime, str | None]:
    """Return ``(utc_datetime, raw)`` for a caller-given time; ``raw`` is None when the value
    was already an aware UTC datetime with microsecond precision (nothing to keep).

    Raises ValidationError naming ``field`` for anything that is not a time, a time before
    1970-01-01 UTC or past what a datetime holds (year 9999), and a string over 64 characters.
    """
    try:
        moment, raw = _normalise(value, field)
    except (OverflowError, ValueError) as error:
        if isinstance(error, ValidationError):
            raise
        raise ValidationError(field, f"is out of range ({error})", value) from None
    if moment < _EPOCH:
        raise ValidationError(field, "must not be before 1970-01-01T00:00:00Z", value)
    return moment, raw


def _normalise(value: Any, field: str) -> tuple[datetime, str | None]:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC), value.isoformat()
        normalised = value.astimezone(UTC)
        raw = None if value.utcoffset() == normalised.utcoffset() else value.isoformat()
        return normalised, raw
    if isinstance(value, bool):
        raise ValidationError(field, "must be a datetime, an ISO 8601 string or epoch number", value)
    if isinstance(value, int | float):
        return _from_number(value, field), repr(value)
    if isinstance(value, str):
        return _from_string(value, field), value
    raise ValidationError(
        field, f"must be a datetime, an ISO 8601 string or epoch number, not {type(value).__name__}"
    )


def _from_number(value: float, field: str) -> datetime:
    if value != value or value in (float("inf"), float("-inf")):
        raise ValidationError(field, "is not a finite number", value)
    if value < 0:
        raise ValidationError(field, "epoch time must not be negative", value)
    if isinstance(value, int):
        if value < _SECONDS_LIMIT:
            return utc_from_ns(value * 1_000_000_000)
        if value < _MILLIS_LIMIT:
            return utc_from_ns(value * 1_000_000)
        if value < _MICROS_LIMIT:
            return utc_from_ns(value * 1_000)
        return utc_from_ns(value)
    if value < _SECONDS_LIMIT:
        return utc_from_ns(round(value * 1_000_000) * 1000)
    return _from_number(int(value), field)


def _from_string(value: str, field: str) -> datetime:
    if len(value) > _STRING_MAX:
        raise ValidationError(field, f"must be at most {_STRING_MAX} characters", value)
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:
            return _from_number(float(text), field)
        except (ValueError, ValidationError):
            pass
        raise ValidationError(field, "is not an ISO 8601 time or epoch number", value) from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds, as stored and printed everywhere."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")
