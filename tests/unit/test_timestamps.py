from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from lineage.errors import ValidationError
from lineage.timestamps import iso, normalise

EXPECTED = datetime(2026, 11, 20, 12, 0, 0, 123456, tzinfo=UTC)
EPOCH = EXPECTED.timestamp()


@pytest.mark.parametrize(
    ("given", "raw"),
    [
        (EXPECTED, None),
        (EXPECTED.replace(tzinfo=None), "2026-11-20T12:00:00.123456"),
        (EXPECTED.astimezone(timezone(timedelta(hours=2))), "2026-11-20T14:00:00.123456+02:00"),
        ("2026-11-20T12:00:00.123456Z", "2026-11-20T12:00:00.123456Z"),
        ("2026-11-20T07:00:00.123456-05:00", "2026-11-20T07:00:00.123456-05:00"),
        ("2026-11-20T12:00:00.123456", "2026-11-20T12:00:00.123456"),
        (1_795_176_000_123_456_000, "1795176000123456000"),  # epoch nanoseconds
        (1_795_176_000_123_456, "1795176000123456"),  # epoch microseconds
        ("1795176000.123456", "1795176000.123456"),  # epoch seconds as text
    ],
)
def test_normalises_to_utc_microseconds_and_keeps_the_raw_value(given: object, raw: str | None) -> None:
    moment, kept = normalise(given)
    assert moment == EXPECTED
    assert moment.tzinfo is UTC or moment.utcoffset() == timedelta(0)
    assert kept == raw


def test_epoch_seconds_and_milliseconds() -> None:
    assert normalise(1_795_176_000)[0] == EXPECTED.replace(microsecond=0)
    assert normalise(1_795_176_000_123)[0] == EXPECTED.replace(microsecond=123000)
    assert normalise(1_795_176_000.5)[0] == EXPECTED.replace(microsecond=500000)


def test_nanoseconds_are_truncated_to_microseconds() -> None:
    assert normalise(1_795_176_000_123_456_789)[0] == EXPECTED


@pytest.mark.parametrize("bad", ["yesterday", "", "2026-13-45", True, float("nan"), -5, [2026], object()])
def test_unparsable_times_name_the_field(bad: object) -> None:
    with pytest.raises(ValidationError) as error:
        normalise(bad, "occurred_at")
    assert error.value.field == "occurred_at"


@pytest.mark.parametrize("huge", [6.77680361916768e+25, 67768036191676803141599232, 10**40,
                                  253_402_300_800_000_000_000])
def test_epoch_numbers_past_year_9999_are_out_of_range(huge: float) -> None:
    with pytest.raises(ValidationError, match="out of range") as error:
        normalise(huge, "occurred_at")
    assert error.value.field == "occurred_at"


def test_the_last_microsecond_a_datetime_holds_is_accepted() -> None:
    last = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert normalise(253_402_300_799_999_999_999)[0] == last
    assert normalise(0)[0] == datetime(1970, 1, 1, tzinfo=UTC)


def test_iso_is_utc_with_microseconds() -> None:
    assert iso(EXPECTED.replace(microsecond=0)) == "2026-11-20T12:00:00.000000+00:00"
