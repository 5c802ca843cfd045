"""Cron conventions where evaluators disagree, and fire times around DST transitions.

Each case pins a choice written down in docs/pipelines.md ("Cron expressions"); the
differential test against cronsim (test_cron_differential.py) covers everything else.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from backfill.domain.errors import ValidationError
from backfill.domain.intervals import IntervalSeries


def days_fired(expr: str, year: int, month: int, months: int = 1) -> list[str]:
    start = datetime(year, month, 1, tzinfo=UTC)
    end_month = month - 1 + months
    end = datetime(year + end_month // 12, end_month % 12 + 1, 1, tzinfo=UTC) - timedelta(seconds=1)
    return [i.start.strftime("%m-%d %a") for i in IntervalSeries(start, end, "custom", cron=expr)]


def day_numbers(expr: str, year: int, month: int) -> list[int]:
    return [int(d[3:5]) for d in days_fired(expr, year, month)]


# ---- day-of-month and day-of-week ---------------------------------------------------


def test_step_in_day_of_month_counts_as_restricted_so_the_fields_are_ored() -> None:
    # croniter (Airflow) ORs; Debian cron and cronsim would AND (odd Mondays).
    # January 2024: days 1, 11, 21, 31 and the Mondays 1, 8, 15, 22, 29.
    assert day_numbers("0 0 */10 * 1", 2024, 1) == [1, 8, 11, 15, 21, 22, 29, 31]
    # day 1, and */3 = Sunday, Wednesday, Saturday
    assert day_numbers("0 0 1 * */3", 2024, 1) == [1, 3, 6, 7, 10, 13, 14, 17, 20, 21, 24, 27, 28, 31]


def test_a_field_naming_every_value_is_unrestricted_when_the_other_has_a_star() -> None:
    # croniter's rule: 0-6 names every weekday and */2 has a star, so AND: odd days.
    assert day_numbers("0 0 */2 * 0-6", 2024, 2) == list(range(1, 30, 2))
    # without a star in the other field, 1-31 is restricted: OR, so every day
    assert day_numbers("0 0 1-31 * 1", 2024, 2) == list(range(1, 30))
    assert day_numbers("0 0 ? * 1", 2024, 2) == [5, 12, 19, 26]


def test_nth_weekday_is_ored_with_a_restricted_day_of_month() -> None:
    # croniter intersects: it would fire only when the 1st is the second Friday (never).
    assert day_numbers("0 0 1 * 5#2", 2024, 3) == [1, 8]
    assert day_numbers("0 0 L * 4#1", 2004, 6) == [3, 30]


# ---- field syntax -------------------------------------------------------------------


def test_an_equal_range_is_one_value() -> None:
    # croniter 7.0.0 reads 5-5, MON-MON and JAN-JAN as the whole field.
    assert day_numbers("0 0 * * 5-5", 2024, 3) == [1, 8, 15, 22, 29]
    assert day_numbers("0 0 * * mon-mon/1", 2024, 3) == [4, 11, 18, 25]
    assert days_fired("0 0 1 jan-jan *", 2024, 1, 12) == ["01-01 Mon"]
    series = IntervalSeries(
        datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC), "custom", cron="0 3-3 * * *"
    )
    assert [i.start.hour for i in series] == [3]


def test_start_with_step_in_day_of_week_ends_on_saturday() -> None:
    # N/S is N-6/S (croniter); cronsim reads N-7/S and adds Sunday.
    assert [d[-3:] for d in days_fired("0 0 * * 1/2", 2024, 1)[:4]] == ["Mon", "Wed", "Fri", "Mon"]
    assert "Sun" not in {d[-3:] for d in days_fired("0 0 * * 1/1", 2024, 1)}
    # 7 is Sunday as a value and as the end of a range
    assert {d[-3:] for d in days_fired("0 0 * * 7", 2024, 1)} == {"Sun"}
    assert {d[-3:] for d in days_fired("0 0 * * fri-7", 2024, 1)} == {"Fri", "Sat", "Sun"}


def test_last_weekday_of_month_in_both_spellings() -> None:
    # 5L (Quartz, cronsim) and L5 (croniter): the last Friday; croniter rejects 5L.
    assert days_fired("0 0 * * 5L", 2024, 1, 3) == ["01-26 Fri", "02-23 Fri", "03-29 Fri"]
    assert days_fired("0 0 * * L5", 2024, 1, 3) == days_fired("0 0 * * 5L", 2024, 1, 3)
    assert days_fired("0 0 * * FRIL", 2024, 1, 3) == days_fired("0 0 * * 5L", 2024, 1, 3)


def test_last_day_and_last_weekday_of_month() -> None:
    assert days_fired("0 0 L * *", 2024, 2, 2) == ["02-29 Thu", "03-31 Sun"]
    # LW: the last Monday-Friday (croniter rejects it); March 2024 ends on a Sunday
    assert days_fired("0 0 LW * *", 2024, 2, 2) == ["02-29 Thu", "03-29 Fri"]


@pytest.mark.parametrize(
    ("expr", "year", "month", "expected"),
    [
        ("0 0 15W * *", 2024, 5, ["05-15 Wed"]),  # a weekday: itself
        ("0 0 15W * *", 2024, 9, ["09-16 Mon"]),  # Sunday: the Monday after
        ("0 0 15W * *", 2024, 6, ["06-14 Fri"]),  # Saturday: the Friday before
        ("0 0 1W * *", 2024, 6, ["06-03 Mon"]),  # Saturday the 1st: not back into May
        ("0 0 1W * *", 2024, 9, ["09-02 Mon"]),  # Sunday the 1st
        ("0 0 31W * *", 2025, 8, ["08-29 Fri"]),  # Sunday the last day: not into September
        ("0 0 31W * *", 2024, 11, ["11-29 Fri"]),  # November has no 31st: its 30th (Saturday)
        ("0 0 30W * *", 2024, 2, ["02-29 Thu"]),  # February 2024: its 29th
    ],
)
def test_nearest_weekday(expr: str, year: int, month: int, expected: list[str]) -> None:
    assert days_fired(expr, year, month) == expected


def test_names_are_case_insensitive_and_aliases_are_spelled_out() -> None:
    assert days_fired("0 0 1 Jan,JUL *", 2024, 1, 12) == ["01-01 Mon", "07-01 Mon"]
    weekly = IntervalSeries(
        datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 31, tzinfo=UTC), "custom", cron="@WEEKLY"
    )
    assert weekly.cron == "0 0 * * 0"
    assert {i.start.strftime("%a %H:%M") for i in weekly} == {"Sun 00:00"}


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 22-2 * * *", "hour field: range 22-2 runs backwards; write it as two ranges, e.g. 22-23,0-2"),
        ("61 * * * *", "minute field: 61 is out of range 0-59"),
        ("0 0 * * 8", "day-of-week field: 8 is out of range 0-7"),
        ("0 0 * * mon#6", "day-of-week field: MON#6: the week number after # must be 1-5"),
        ("0 0 32W * *", "day-of-month field: 32 is out of range 1-31"),
        ("0 0 * foo *", "month field: 'FOO' is not a number or a name"),
        ("0 mon * * *", "hour field: 'MON' is not a number"),
        ("*/0 * * * *", "minute field: step '0' must be a whole number of at least 1"),
        ("0 0 1,,2 * *", "day-of-month field: empty list item"),
        ("0 0 * * * 60", "second field: 60 is out of range 0-59"),
    ],
)
def test_bad_fields_are_named(expr: str, message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        IntervalSeries(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC), "custom", cron=expr)
    assert exc.value.field == "cron"
    assert str(exc.value) == f"invalid cron expression {expr!r}: {message}"


# ---- DST transitions ----------------------------------------------------------------
# docs/api.md: a wall time in a gap moves forward by the length of the gap; an ambiguous one
# takes its first occurrence; fire times that land on the same instant merge. cron(8)
# (and croniter, cronsim) instead run a skipped fixed time at the first minute after the
# gap, and run wildcard-hour jobs in both occurrences of a repeated hour.

DST_CASES = [
    # zone, expression, first local day, days, expected local fire times
    ("Europe/Berlin", "30 2 * * *", (2024, 3, 30), 3, ["03-30 02:30+0100", "03-31 03:30+0200", "04-01 02:30+0200"]),
    ("Europe/Berlin", "0 1-4 * * *", (2024, 3, 31), 1, ["03-31 01:00+0100", "03-31 03:00+0200", "03-31 04:00+0200"]),
    ("Europe/Berlin", "30 2 * * *", (2024, 10, 26), 3, ["10-26 02:30+0200", "10-27 02:30+0200", "10-28 02:30+0100"]),
    ("Europe/Berlin", "0 1-3 * * *", (2024, 10, 27), 1, ["10-27 01:00+0200", "10-27 02:00+0200", "10-27 03:00+0100"]),
    ("America/New_York", "30 2 * * *", (2024, 3, 9), 3, ["03-09 02:30-0500", "03-10 03:30-0400", "03-11 02:30-0400"]),
    ("America/New_York", "30 1 * * *", (2024, 11, 2), 3, ["11-02 01:30-0400", "11-03 01:30-0400", "11-04 01:30-0500"]),
    ("America/New_York", "*/30 1 * * *", (2024, 11, 3), 1, ["11-03 01:00-0400", "11-03 01:30-0400"]),
    (
        "Australia/Lord_Howe",
        "15 2 * * *",
        (2024, 10, 5),
        3,
        ["10-05 02:15+1030", "10-06 02:45+1100", "10-07 02:15+1100"],
    ),
    ("Australia/Lord_Howe", "0,30 2 * * *", (2024, 10, 6), 1, ["10-06 02:30+1100"]),
    (
        "Australia/Lord_Howe",
        "45 1 * * *",
        (2024, 4, 6),
        3,
        ["04-06 01:45+1100", "04-07 01:45+1100", "04-08 01:45+1030"],
    ),
    ("Pacific/Apia", "0 12 * * *", (2011, 12, 29), 3, ["12-29 12:00-1000", "12-31 12:00+1400"]),
    ("Pacific/Apia", "0 0 30 12 *", (2011, 12, 1), 400, ["12-31 00:00+1400", "12-30 00:00+1400"]),
]


@pytest.mark.parametrize(("zone_name", "expr", "day", "days", "expected"), DST_CASES)
def test_fire_times_around_dst_transitions(
    zone_name: str, expr: str, day: tuple[int, int, int], days: int, expected: list[str]
) -> None:
    zone = ZoneInfo(zone_name)
    start = datetime(*day, tzinfo=zone)
    end = start + timedelta(days=days) - timedelta(seconds=1)
    series = IntervalSeries(start, end, "custom", None, timezone=zone_name, cron=expr)
    assert [i.start.astimezone(zone).strftime("%m-%d %H:%M%z") for i in series] == expected
    assert len(series) == len(expected)
