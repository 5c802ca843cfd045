"""Parsing and formatting of instants (docs/api.md: dates, offsets, the two dialects)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from backfill.domain.errors import ValidationError
from backfill.domain.timeparse import (
    format_iso_z,
    format_pipeline,
    is_date_only,
    load_zone,
    parse_instant,
    resolve_wall_time,
)

BERLIN = ZoneInfo("Europe/Berlin")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "tz", "naive", "expected"),
    [
        # A plain date is 00:00 in the timezone, in both dialects.
        ("2024-01-31", "UTC", "local", utc(2024, 1, 31)),
        ("2024-01-31", "Europe/Berlin", "local", utc(2024, 1, 30, 23)),
        ("2024-07-31", "Europe/Berlin", "utc", utc(2024, 7, 30, 22)),
        (" 2024-07-31 ", "America/New_York", "local", utc(2024, 7, 31, 4)),
        # A time without offset: UTC in the pipeline dialect, wall clock in the team dialect.
        ("2024-02-01 09:00:00", "Europe/Berlin", "utc", utc(2024, 2, 1, 9)),
        ("2024-02-01 09:00:00", "Europe/Berlin", "local", utc(2024, 2, 1, 8)),
        ("2024-02-01T09:00:00", "Europe/Berlin", "local", utc(2024, 2, 1, 8)),
        ("2024-02-01T09:00", "UTC", "local", utc(2024, 2, 1, 9)),
        ("2024-02-01t09:00:00", "UTC", "local", utc(2024, 2, 1, 9)),
        # An explicit offset wins over the timezone.
        ("2024-02-01T09:00:00Z", "Europe/Berlin", "local", utc(2024, 2, 1, 9)),
        ("2024-02-01T09:00:00z", "Asia/Tokyo", "utc", utc(2024, 2, 1, 9)),
        ("2024-02-01T09:00:00+01:00", "Asia/Tokyo", "local", utc(2024, 2, 1, 8)),
        ("2024-02-01T09:00:00-0530", "UTC", "local", utc(2024, 2, 1, 14, 30)),
        ("2024-02-01T09:00:00+02", "UTC", "utc", utc(2024, 2, 1, 7)),
        ("2024-02-01 09:00:00 +01:00", "UTC", "utc", utc(2024, 2, 1, 8)),
        # Fractional seconds (up to nanoseconds, truncated to microseconds).
        ("2024-02-01T09:00:00.5Z", "UTC", "local", utc(2024, 2, 1, 9, 0, 0, 500000)),
        ("2024-02-01T09:00:00,123456789+00:00", "UTC", "local", utc(2024, 2, 1, 9, 0, 0, 123456)),
    ],
)
def test_parse_instant_accepts_formats(value: str, tz: str, naive: str, expected: datetime) -> None:
    got = parse_instant(value, field="start", timezone=tz, naive=naive)  # type: ignore[arg-type]
    assert got == expected
    assert got.tzinfo is UTC


def test_nonexistent_local_time_moves_forward_by_the_gap() -> None:
    # 02:30 does not exist on 2024-03-31 in Berlin: it becomes 03:30 CEST (01:30 UTC).
    got = parse_instant("2024-03-31 02:30:00", field="start", timezone="Europe/Berlin")
    assert got == utc(2024, 3, 31, 1, 30)
    assert got.astimezone(BERLIN).strftime("%H:%M %Z") == "03:30 CEST"


def test_ambiguous_local_time_takes_first_occurrence() -> None:
    # 02:30 happens twice on 2024-10-27 in Berlin; the first one is CEST (00:30 UTC).
    got = parse_instant("2024-10-27T02:30:00", field="start", timezone="Europe/Berlin")
    assert got == utc(2024, 10, 27, 0, 30)


def test_date_at_nonexistent_midnight() -> None:
    # Santiago skipped 2024-09-08 00:00-01:00: the date means 01:00 -03.
    got = parse_instant("2024-09-08", field="start", timezone="America/Santiago")
    assert got == utc(2024, 9, 8, 4)


def test_datetime_and_date_objects() -> None:
    aware = datetime(2024, 5, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    assert parse_instant(aware, field="start") == utc(2024, 5, 1, 10)
    naive = datetime(2024, 5, 1, 12)
    assert parse_instant(naive, field="start", timezone="Europe/Berlin", naive="utc") == utc(2024, 5, 1, 12)
    assert parse_instant(naive, field="start", timezone="Europe/Berlin", naive="local") == utc(2024, 5, 1, 10)
    assert parse_instant(date(2024, 5, 1), field="start", timezone="Europe/Berlin") == utc(2024, 4, 30, 22)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "yesterday",
        "2024-13-01",
        "2024-02-30",
        "2024-02-30 10:00:00",
        "2024-02-01 25:00:00",
        "2024-02-01T09:00:00+25:00",
        "2024/02/01",
        "01.02.2024",
        "2024-02-01T09:00:00 Europe/Berlin",
        "20240201T090000Z",
        "2024-W05-4",
        "0001-01-01T00:00:00+01:00",
        "0001-01-01",
    ],
)
def test_parse_instant_rejects_bad_input(value: str) -> None:
    tz = "Asia/Tokyo" if value == "0001-01-01" else "UTC"  # before year 1 in UTC
    with pytest.raises(ValidationError) as exc:
        parse_instant(value, field="start_time", timezone=tz)
    assert exc.value.field == "start_time"
    assert repr(value) in exc.value.message
    assert "YYYY-MM-DD" in exc.value.message and "ISO 8601" in exc.value.message


def test_parse_instant_rejects_other_types() -> None:
    with pytest.raises(ValidationError) as exc:
        parse_instant(20240101, field="end", timezone="UTC")  # type: ignore[arg-type]
    assert exc.value.field == "end"


def test_parse_instant_rejects_unknown_timezone() -> None:
    with pytest.raises(ValidationError) as exc:
        parse_instant("2024-01-01", field="start", timezone="Mars/Olympus")
    assert exc.value.field == "timezone"
    assert "Mars/Olympus" in exc.value.message


def test_parse_instant_rejects_bad_naive_mode() -> None:
    with pytest.raises(ValueError, match="naive"):
        parse_instant("2024-01-01", field="start", naive="server")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "   ", "Nowhere/City", "../etc/passwd", "Europe/", None, 3])
def test_load_zone_rejects(name: object) -> None:
    with pytest.raises(ValidationError) as exc:
        load_zone(name)
    assert exc.value.field == "timezone"


def test_resolve_wall_time_uses_fold_zero_even_for_fold_one_input() -> None:
    wall = datetime(2024, 10, 27, 2, 30, fold=1)
    assert resolve_wall_time(wall, BERLIN) == utc(2024, 10, 27, 0, 30)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-31", True),
        (" 2024-01-31 ", True),
        ("2024-02-30", False),
        ("2024-01-31 00:00:00", False),
        ("2024-01-31T00:00:00Z", False),
        ("31.01.2024", False),
        ("", False),
    ],
)
def test_is_date_only(value: str, expected: bool) -> None:
    assert is_date_only(value) is expected


def test_formatting() -> None:
    dt = datetime(2024, 2, 1, 10, 0, 5, 999999, tzinfo=BERLIN)
    assert format_pipeline(dt) == "2024-02-01 09:00:05"
    assert format_iso_z(dt) == "2024-02-01T09:00:05Z"
    # Naive values are taken to be UTC.
    assert format_iso_z(datetime(2024, 2, 1, 9)) == "2024-02-01T09:00:00Z"
    assert format_pipeline(datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC)) == "0999-01-02 03:04:05"


def test_pipeline_format_round_trips() -> None:
    dt = utc(2024, 3, 31, 1, 30)
    text = format_pipeline(dt)
    assert parse_instant(text, field="start", timezone="Europe/Berlin", naive="utc") == dt
    assert parse_instant(format_iso_z(dt), field="start", timezone="Asia/Tokyo") == dt
