"""Interval arithmetic examples (docs/api.md "Interval arithmetic")."""

from __future__ import annotations

import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from itertools import islice
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from backfill.domain.errors import ValidationError
from backfill.domain.intervals import MAX_INTERVALS, Interval, IntervalSeries
from backfill.domain.model import IntervalType

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
HOUR = timedelta(hours=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def starts(series: IntervalSeries) -> list[datetime]:
    return [i.start for i in series]


def local_walls(series: IntervalSeries, zone: ZoneInfo) -> list[str]:
    return [i.start.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") for i in series]


# ---- calendar steps from the anchor -------------------------------------------------


def test_monthly_from_month_end_is_computed_from_the_anchor() -> None:
    series = IntervalSeries(utc(2024, 1, 31), utc(2024, 4, 30), "month")
    assert list(series) == [
        Interval(0, utc(2024, 1, 31), utc(2024, 2, 29)),
        Interval(1, utc(2024, 2, 29), utc(2024, 3, 31)),
        Interval(2, utc(2024, 3, 31), utc(2024, 4, 30)),
        Interval(3, utc(2024, 4, 30), utc(2024, 5, 31)),
    ]
    assert series.count == len(series) == 4
    assert series.first_start == utc(2024, 1, 31)
    assert series.last_end == utc(2024, 5, 31)


def test_monthly_month_end_keeps_the_anchor_day_for_years() -> None:
    series = IntervalSeries(utc(2023, 1, 31, 6), utc(2024, 12, 31, 6), IntervalType.MONTH)
    assert series.count == 24
    days = [i.start.day for i in series]
    month_ends_2023 = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    month_ends_2024 = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    assert days == [*month_ends_2023, *month_ends_2024]
    assert all(i.start.hour == 6 for i in series)


def test_monthly_last_interval_ends_at_the_next_boundary() -> None:
    series = IntervalSeries(utc(2024, 2, 1), utc(2024, 3, 1), "month")
    assert series.count == 2
    assert series[-1] == Interval(1, utc(2024, 3, 1), utc(2024, 4, 1))
    assert series.last_end == utc(2024, 4, 1)


def test_end_just_before_a_boundary_excludes_it() -> None:
    series = IntervalSeries(utc(2024, 2, 1), utc(2024, 2, 29, 23, 59, 59), "month")
    assert series.count == 1
    assert series.last_end == utc(2024, 3, 1)


def test_every_three_months_from_the_30th() -> None:
    series = IntervalSeries(utc(2023, 11, 30), utc(2024, 12, 31), "month", 3)
    assert starts(series) == [
        utc(2023, 11, 30),
        utc(2024, 2, 29),
        utc(2024, 5, 30),
        utc(2024, 8, 30),
        utc(2024, 11, 30),
    ]
    assert series.last_end == utc(2025, 2, 28)


def test_yearly_from_leap_day() -> None:
    series = IntervalSeries(utc(2024, 2, 29), utc(2028, 2, 29), "year")
    assert starts(series) == [utc(2024, 2, 29), utc(2025, 2, 28), utc(2026, 2, 28), utc(2027, 2, 28), utc(2028, 2, 29)]
    assert series.last_end == utc(2029, 2, 28)


def test_monthly_in_a_timezone_stays_on_local_midnight() -> None:
    start = datetime(2024, 1, 1, tzinfo=BERLIN)
    series = IntervalSeries(start, datetime(2024, 12, 1, tzinfo=BERLIN), "month", timezone="Europe/Berlin")
    assert series.count == 12
    assert all(i.start.astimezone(BERLIN).time().isoformat() == "00:00:00" for i in series)
    assert series[2].start == utc(2024, 2, 29, 23)  # March 1 00:00 CET
    assert series[3].start == utc(2024, 3, 31, 22)  # April 1 00:00 CEST


# ---- day and week across DST ---------------------------------------------------------


def test_daily_berlin_stays_on_local_midnight_across_both_switches() -> None:
    spring = IntervalSeries(
        datetime(2024, 3, 29, tzinfo=BERLIN), datetime(2024, 4, 2, tzinfo=BERLIN), "day", timezone="Europe/Berlin"
    )
    assert starts(spring) == [
        utc(2024, 3, 28, 23),
        utc(2024, 3, 29, 23),
        utc(2024, 3, 30, 23),
        utc(2024, 3, 31, 22),
        utc(2024, 4, 1, 22),
    ]
    assert [i.end - i.start for i in spring] == [24 * HOUR, 24 * HOUR, 23 * HOUR, 24 * HOUR, 24 * HOUR]
    assert spring.last_end == utc(2024, 4, 2, 22)

    autumn = IntervalSeries(
        datetime(2024, 10, 26, tzinfo=BERLIN), datetime(2024, 10, 28, tzinfo=BERLIN), "day", timezone="Europe/Berlin"
    )
    assert starts(autumn) == [utc(2024, 10, 25, 22), utc(2024, 10, 26, 22), utc(2024, 10, 27, 23)]
    assert [i.end - i.start for i in autumn] == [24 * HOUR, 25 * HOUR, 24 * HOUR]
    assert all(w.endswith(("00:00 CET", "00:00 CEST")) for w in local_walls(autumn, BERLIN))


def test_daily_new_york_across_dst() -> None:
    series = IntervalSeries(
        datetime(2024, 3, 9, tzinfo=NEW_YORK),
        datetime(2024, 11, 4, tzinfo=NEW_YORK),
        "day",
        timezone="America/New_York",
    )
    by_date = {i.start.astimezone(NEW_YORK).date().isoformat(): i for i in series}
    assert by_date["2024-03-10"].start == utc(2024, 3, 10, 5)
    assert by_date["2024-03-10"].end == utc(2024, 3, 11, 4)  # a 23-hour day
    assert by_date["2024-11-03"].start == utc(2024, 11, 3, 4)
    assert by_date["2024-11-03"].end == utc(2024, 11, 4, 5)  # a 25-hour day
    assert all(i.start.astimezone(NEW_YORK).hour == 0 for i in series)
    assert series.count == 241


def test_daily_lord_howe_half_hour_dst() -> None:
    zone = "Australia/Lord_Howe"
    autumn = IntervalSeries(
        datetime(2024, 4, 6, tzinfo=LORD_HOWE), datetime(2024, 4, 8, tzinfo=LORD_HOWE), "day", timezone=zone
    )
    assert starts(autumn) == [utc(2024, 4, 5, 13), utc(2024, 4, 6, 13), utc(2024, 4, 7, 13, 30)]
    assert autumn[1].end - autumn[1].start == timedelta(hours=24, minutes=30)
    spring = IntervalSeries(
        datetime(2024, 10, 5, tzinfo=LORD_HOWE), datetime(2024, 10, 7, tzinfo=LORD_HOWE), "day", timezone=zone
    )
    assert starts(spring) == [utc(2024, 10, 4, 13, 30), utc(2024, 10, 5, 13, 30), utc(2024, 10, 6, 13)]
    assert spring[1].end - spring[1].start == timedelta(hours=23, minutes=30)
    assert all(w[11:16] == "00:00" for w in local_walls(spring, LORD_HOWE) + local_walls(autumn, LORD_HOWE))


def test_daily_at_a_nonexistent_time_moves_forward_by_the_gap() -> None:
    start = datetime(2024, 3, 30, 2, 30, tzinfo=BERLIN)
    series = IntervalSeries(start, datetime(2024, 4, 1, 12, tzinfo=BERLIN), "day", timezone="Europe/Berlin")
    assert local_walls(series, BERLIN) == ["2024-03-30 02:30 CET", "2024-03-31 03:30 CEST", "2024-04-01 02:30 CEST"]


def test_daily_at_an_ambiguous_time_takes_the_first_occurrence() -> None:
    start = datetime(2024, 10, 26, 2, 30, tzinfo=BERLIN)
    series = IntervalSeries(start, datetime(2024, 10, 28, 12, tzinfo=BERLIN), "day", timezone="Europe/Berlin")
    assert local_walls(series, BERLIN) == ["2024-10-26 02:30 CEST", "2024-10-27 02:30 CEST", "2024-10-28 02:30 CET"]
    assert series[1].start == utc(2024, 10, 27, 0, 30)


def test_end_in_the_second_occurrence_of_a_repeated_hour() -> None:
    # The boundary of Oct 27 is 02:30 CEST (first occurrence, 00:30 UTC). An end at
    # 02:10 CET (second occurrence, 01:10 UTC) is later, so that boundary is included
    # although its wall time 02:30 is "after" 02:10.
    start = datetime(2024, 10, 26, 2, 30, tzinfo=BERLIN)
    end = utc(2024, 10, 27, 1, 10)
    assert end.astimezone(BERLIN).strftime("%H:%M %Z") == "02:10 CET"
    series = IntervalSeries(start, end, "day", timezone="Europe/Berlin")
    assert starts(series) == [utc(2024, 10, 26, 0, 30), utc(2024, 10, 27, 0, 30)]
    assert series.index_of(utc(2024, 10, 27, 0, 30)) == 1
    assert series.index_of(datetime(2024, 10, 27, 2, 30, tzinfo=BERLIN)) == 1  # fold=0: first occurrence
    assert series.index_of(datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=BERLIN)) is None
    after = datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=BERLIN)  # 01:30 UTC, after the boundary
    assert [i.index for i in series.iter_from(after, descending=True)] == [1, 0]
    assert [i.index for i in series.iter_from(utc(2024, 10, 27, 0, 45), descending=True)] == [1, 0]


def test_daily_in_santiago_where_midnight_does_not_exist() -> None:
    zone = ZoneInfo("America/Santiago")
    series = IntervalSeries(
        datetime(2024, 9, 7, tzinfo=zone), datetime(2024, 9, 9, tzinfo=zone), "day", timezone="America/Santiago"
    )
    assert [w[:16] for w in local_walls(series, zone)] == ["2024-09-07 00:00", "2024-09-08 01:00", "2024-09-09 00:00"]


def test_weekly_across_dst() -> None:
    start = datetime(2024, 3, 25, tzinfo=BERLIN)  # a Monday
    series = IntervalSeries(start, datetime(2024, 4, 30, tzinfo=BERLIN), "week", timezone="Europe/Berlin")
    assert series.count == 6
    assert series[0].end - series[0].start == 167 * HOUR
    assert all(i.start.astimezone(BERLIN).strftime("%a %H:%M") == "Mon 00:00" for i in series)
    every_two = IntervalSeries(start, datetime(2024, 4, 30, tzinfo=BERLIN), "week", 2, timezone="Europe/Berlin")
    assert starts(every_two) == [utc(2024, 3, 24, 23), utc(2024, 4, 7, 22), utc(2024, 4, 21, 22)]


# ---- absolute steps ---------------------------------------------------------------------


def test_hourly_across_dst_is_absolute_time() -> None:
    series = IntervalSeries(
        datetime(2024, 3, 31, 0, tzinfo=BERLIN),
        datetime(2024, 3, 31, 5, tzinfo=BERLIN),
        "hour",
        timezone="Europe/Berlin",
    )
    # 00:00 CET .. 05:00 CEST is 4 real hours: 5 intervals, each exactly 3600 s.
    assert series.count == 5
    assert all((i.end - i.start).total_seconds() == 3600 for i in series)
    assert local_walls(series, BERLIN)[1:3] == ["2024-03-31 01:00 CET", "2024-03-31 03:00 CEST"]

    autumn = IntervalSeries(
        datetime(2024, 10, 27, 0, tzinfo=BERLIN),
        datetime(2024, 10, 27, 4, tzinfo=BERLIN),
        "hour",
        timezone="Europe/Berlin",
    )
    assert autumn.count == 6  # the repeated hour counts twice
    assert all((i.end - i.start).total_seconds() == 3600 for i in autumn)


def test_minutes_and_seconds() -> None:
    series = IntervalSeries(utc(2024, 1, 1), utc(2024, 1, 1, 1), "minute", 15)
    assert starts(series) == [utc(2024, 1, 1, 0, m) for m in (0, 15, 30, 45)] + [utc(2024, 1, 1, 1)]
    assert series.last_end == utc(2024, 1, 1, 1, 15)
    seconds = IntervalSeries(utc(2024, 1, 1), utc(2024, 1, 1, 0, 0, 59), "second", 20)
    assert [i.start.second for i in seconds] == [0, 20, 40]


def test_custom_seconds() -> None:
    series = IntervalSeries(utc(2024, 1, 1, 0, 0, 0), utc(2024, 1, 1, 0, 5), "custom", 90)
    assert [i.start - utc(2024, 1, 1) for i in series] == [timedelta(seconds=s) for s in (0, 90, 180, 270)]
    assert series.last_end == utc(2024, 1, 1, 0, 6)
    assert series.describe() == "every 90 seconds in UTC"


def test_start_with_microseconds_is_kept() -> None:
    start = utc(2024, 1, 1, 0, 0, 0) + timedelta(microseconds=250)
    series = IntervalSeries(start, start + 2 * HOUR, "hour")
    assert series.count == 3
    assert series[2].start == start + 2 * HOUR


def test_start_equal_to_end_gives_one_interval() -> None:
    series = IntervalSeries(utc(2024, 5, 5), utc(2024, 5, 5), "day")
    assert list(series) == [Interval(0, utc(2024, 5, 5), utc(2024, 5, 6))]


def test_inputs_in_other_zones_are_converted_to_utc() -> None:
    series = IntervalSeries(datetime(2024, 1, 1, 1, tzinfo=BERLIN), datetime(2024, 1, 1, 3, tzinfo=BERLIN), "hour")
    assert series.first_start == utc(2024, 1, 1, 0)
    assert series.first_start.tzinfo is UTC
    assert series.last_end == utc(2024, 1, 1, 3)
    assert series.start == utc(2024, 1, 1, 0) and series.end == utc(2024, 1, 1, 2)


# ---- cron -----------------------------------------------------------------------------


def test_cron_weekdays_in_berlin() -> None:
    series = IntervalSeries(
        datetime(2024, 3, 29, tzinfo=BERLIN),  # a Friday; DST starts on Sunday the 31st
        datetime(2024, 4, 3, 23, 59, tzinfo=BERLIN),
        "custom",
        None,
        timezone="Europe/Berlin",
        cron="0 6 * * 1-5",
    )
    assert list(series) == [
        Interval(0, utc(2024, 3, 29, 5), utc(2024, 4, 1, 4)),  # Friday's interval ends on Monday
        Interval(1, utc(2024, 4, 1, 4), utc(2024, 4, 2, 4)),
        Interval(2, utc(2024, 4, 2, 4), utc(2024, 4, 3, 4)),
        Interval(3, utc(2024, 4, 3, 4), utc(2024, 4, 4, 4)),
    ]
    assert all(w.endswith(("06:00 CET", "06:00 CEST")) for w in local_walls(series, BERLIN))
    assert series.describe() == "cron '0 6 * * 1-5' in Europe/Berlin"
    assert series.cron == "0 6 * * 1-5"
    assert series.interval_units is None


def test_cron_range_is_inclusive_and_first_fire_may_follow_start() -> None:
    series = IntervalSeries(utc(2024, 1, 1, 0, 0, 1), utc(2024, 1, 1, 3), "custom", cron="0 * * * *")
    assert starts(series) == [utc(2024, 1, 1, 1), utc(2024, 1, 1, 2), utc(2024, 1, 1, 3)]
    assert series.first_start == utc(2024, 1, 1, 1)
    assert series.last_end == utc(2024, 1, 1, 4)


def test_cron_fixed_time_in_gap_moves_forward_by_the_gap() -> None:
    series = IntervalSeries(
        utc(2024, 3, 29), utc(2024, 4, 2), "custom", None, timezone="Europe/Berlin", cron="30 2 * * *"
    )
    assert local_walls(series, BERLIN) == [
        "2024-03-29 02:30 CET",
        "2024-03-30 02:30 CET",
        "2024-03-31 03:30 CEST",
        "2024-04-01 02:30 CEST",
    ]


def test_cron_fixed_time_in_overlap_fires_once_at_the_first_occurrence() -> None:
    series = IntervalSeries(
        utc(2024, 10, 25), utc(2024, 10, 29), "custom", None, timezone="Europe/Berlin", cron="30 2 * * *"
    )
    assert local_walls(series, BERLIN) == [
        "2024-10-25 02:30 CEST",
        "2024-10-26 02:30 CEST",
        "2024-10-27 02:30 CEST",
        "2024-10-28 02:30 CET",
    ]
    assert series[2].end - series[2].start == 25 * HOUR


def test_hourly_cron_across_dst_uses_the_wall_clock() -> None:
    autumn = IntervalSeries(
        datetime(2024, 10, 27, 0, tzinfo=BERLIN),
        datetime(2024, 10, 27, 4, tzinfo=BERLIN),
        "custom",
        None,
        timezone="Europe/Berlin",
        cron="0 * * * *",
    )
    assert local_walls(autumn, BERLIN) == [
        "2024-10-27 00:00 CEST",
        "2024-10-27 01:00 CEST",
        "2024-10-27 02:00 CEST",
        "2024-10-27 03:00 CET",
        "2024-10-27 04:00 CET",
    ]
    assert autumn[2].end - autumn[2].start == 2 * HOUR  # the repeated hour is not run twice
    spring = IntervalSeries(
        datetime(2024, 3, 31, 0, tzinfo=BERLIN),
        datetime(2024, 3, 31, 4, tzinfo=BERLIN),
        "custom",
        None,
        timezone="Europe/Berlin",
        cron="*/30 * * * *",
    )
    assert [w[11:16] for w in local_walls(spring, BERLIN)] == [
        "00:00",
        "00:30",
        "01:00",
        "01:30",
        "03:00",
        "03:30",
        "04:00",
    ]
    assert all(i.end > i.start for i in spring)


def test_cron_gap_crossing_midnight_moves_fire_times_to_the_next_day() -> None:
    # Singapore moved from +07:30 to +08:00 at 1981-12-31 23:30: 23:30-23:59 did not exist.
    zone = ZoneInfo("Asia/Singapore")
    series = IntervalSeries(
        utc(1981, 12, 31), utc(1982, 1, 1, 16), "custom", None, timezone="Asia/Singapore", cron="*/10 23 * * *"
    )
    assert [w[:16] for w in local_walls(series, zone)] == [
        "1981-12-31 23:00",
        "1981-12-31 23:10",
        "1981-12-31 23:20",
        # 23:30, 23:40, 23:50 of Dec 31 moved forward by the 30-minute gap
        "1982-01-01 00:00",
        "1982-01-01 00:10",
        "1982-01-01 00:20",
        "1982-01-01 23:00",
        "1982-01-01 23:10",
        "1982-01-01 23:20",
        "1982-01-01 23:30",
        "1982-01-01 23:40",
        "1982-01-01 23:50",
    ]
    assert series.count == 12
    assert series.index_of(utc(1981, 12, 31, 16, 10)) == 4


def test_cron_on_a_skipped_day() -> None:
    # Samoa skipped 2011-12-30 entirely; its noon falls onto Dec 31 noon (merged).
    zone = ZoneInfo("Pacific/Apia")
    series = IntervalSeries(
        datetime(2011, 12, 29, tzinfo=zone),
        datetime(2012, 1, 1, tzinfo=zone),
        "custom",
        None,
        timezone="Pacific/Apia",
        cron="0 12 * * *",
    )
    assert [w[:16] for w in local_walls(series, zone)] == ["2011-12-29 12:00", "2011-12-31 12:00"]
    assert series[0].end - series[0].start == 24 * HOUR


def test_cron_with_seconds_and_aliases() -> None:
    series = IntervalSeries(utc(2024, 1, 1), utc(2024, 1, 1, 0, 1), "custom", cron="* * * * * */20")
    assert [i.start.second for i in series] == [0, 20, 40, 0]
    daily = IntervalSeries(utc(2024, 1, 1), utc(2024, 1, 3), "custom", cron="@daily")
    assert daily.count == 3
    assert daily.cron == "0 0 * * *"


def test_cron_special_days() -> None:
    last_day = IntervalSeries(utc(2024, 1, 1), utc(2024, 12, 31), "custom", cron="0 0 L * *")
    assert [i.start.day for i in last_day] == [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    second_friday = IntervalSeries(utc(2024, 1, 1), utc(2024, 3, 31), "custom", cron="0 9 * * 5#2")
    assert starts(second_friday) == [utc(2024, 1, 12, 9), utc(2024, 2, 9, 9), utc(2024, 3, 8, 9)]
    # Day-of-month and day-of-week both restricted: either matches (cron's OR rule).
    either = IntervalSeries(utc(2024, 1, 1), utc(2024, 1, 10), "custom", cron="0 0 1,10 * 3")
    assert [i.start.day for i in either] == [1, 3, 10]


def test_cron_matches_croniter_in_utc() -> None:
    expr = "*/7 3-5,22 1-15 */2 mon-fri"
    start = utc(2024, 1, 1)
    series = IntervalSeries(start, utc(2024, 6, 30), "custom", cron=expr)
    it = croniter(expr, start - timedelta(seconds=1))
    expected = [it.get_next(datetime) for _ in range(series.count + 1)]
    got = [i.start for i in series]
    assert got == expected[:-1]
    assert series.last_end == expected[-1]


def test_cron_count_of_a_long_range_is_fast_and_exact() -> None:
    t0 = time.perf_counter()
    series = IntervalSeries(
        utc(2000, 1, 1), utc(2019, 12, 31, 23), "custom", timezone="Europe/Berlin", cron="0 * * * *"
    )
    assert time.perf_counter() - t0 < 1.0
    # 7305 days of 24 hours, minus 20 spring-forward hours, minus the first and plus the last hour's offset.
    local_days = 7305
    assert series.count == local_days * 24 - 20 - 1 + 1


# ---- iteration, indexing --------------------------------------------------------------


@pytest.fixture
def hourly() -> IntervalSeries:
    return IntervalSeries(utc(2024, 1, 1), utc(2024, 1, 1, 5), "hour")


def test_iter_from_ascending_from_a_non_boundary(hourly: IntervalSeries) -> None:
    got = [i.index for i in hourly.iter_from(utc(2024, 1, 1, 2, 30))]
    assert got == [3, 4, 5]
    assert [i.index for i in hourly.iter_from(utc(2024, 1, 1, 2))] == [3, 4, 5]  # strictly after
    assert [i.index for i in hourly.iter_from(None)] == [0, 1, 2, 3, 4, 5]
    assert [i.index for i in hourly.iter_from(utc(2023, 1, 1))] == [0, 1, 2, 3, 4, 5]
    assert list(hourly.iter_from(utc(2024, 1, 1, 5))) == []


def test_iter_from_descending_from_a_non_boundary(hourly: IntervalSeries) -> None:
    got = list(hourly.iter_from(utc(2024, 1, 1, 2, 30), descending=True))
    assert [i.index for i in got] == [2, 1, 0]
    assert got[0] == Interval(2, utc(2024, 1, 1, 2), utc(2024, 1, 1, 3))
    assert [i.index for i in hourly.iter_from(utc(2024, 1, 1, 2), descending=True)] == [1, 0]  # strictly before
    assert [i.index for i in hourly.iter_from(None, descending=True)] == [5, 4, 3, 2, 1, 0]
    assert list(hourly.iter_from(utc(2024, 1, 1), descending=True)) == []
    assert len(list(hourly.iter_from(utc(2030, 1, 1), descending=True))) == 6


def test_iter_from_is_lazy_and_works_for_cron() -> None:
    series = IntervalSeries(utc(2024, 1, 1), utc(2024, 12, 31), "custom", timezone="Europe/Berlin", cron="0 6 * * 1-5")
    after = datetime(2024, 3, 30, 12, tzinfo=BERLIN)  # Saturday, not a boundary
    up = list(islice(series.iter_from(after), 2))
    assert [i.start for i in up] == [utc(2024, 4, 1, 4), utc(2024, 4, 2, 4)]
    down = list(islice(series.iter_from(after, descending=True), 2))
    assert [i.start for i in down] == [utc(2024, 3, 29, 5), utc(2024, 3, 28, 5)]
    assert down[0].end == utc(2024, 4, 1, 4)
    assert up[0].index == down[0].index + 1
    assert series[up[0].index] == up[0]


def test_index_of(hourly: IntervalSeries) -> None:
    assert hourly.index_of(utc(2024, 1, 1, 3)) == 3
    assert hourly.index_of(datetime(2024, 1, 1, 4, tzinfo=BERLIN)) == 3
    assert hourly.index_of(utc(2024, 1, 1, 3, 30)) is None
    assert hourly.index_of(utc(2024, 1, 1, 6)) is None  # the end of the last interval is not a start
    assert hourly.index_of(utc(2023, 12, 31, 23)) is None
    with pytest.raises(ValueError, match="aware"):
        hourly.index_of(datetime(2024, 1, 1, 3))


def test_getitem(hourly: IntervalSeries) -> None:
    assert hourly[0] == Interval(0, utc(2024, 1, 1), utc(2024, 1, 1, 1))
    assert hourly[-1] == Interval(5, utc(2024, 1, 1, 5), utc(2024, 1, 1, 6))
    assert hourly[-6] == hourly[0]
    with pytest.raises(IndexError):
        hourly[6]
    with pytest.raises(IndexError):
        hourly[-7]
    with pytest.raises(TypeError):
        hourly["1"]  # type: ignore[index]


def test_iter_from_rejects_naive(hourly: IntervalSeries) -> None:
    with pytest.raises(ValueError, match="aware"):
        hourly.iter_from(datetime(2024, 1, 1))


def test_describe() -> None:
    start, end = utc(2024, 1, 1), utc(2024, 2, 1)
    assert IntervalSeries(start, end, "month", timezone="Europe/Berlin").describe() == "every 1 month in Europe/Berlin"
    assert IntervalSeries(start, end, "hour", 6).describe() == "every 6 hours in UTC"
    assert IntervalSeries(start, end, "DAY").interval_type is IntervalType.DAY


# ---- size limits ------------------------------------------------------------------------


def test_ten_years_hourly_counts_without_iterating() -> None:
    start, end = utc(2010, 1, 1), utc(2019, 12, 31, 23)
    tracemalloc.start()
    t0 = time.perf_counter()
    series = IntervalSeries(start, end, "hour", timezone="Europe/Berlin")
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert series.count == 87_648  # 3652 days
    assert elapsed < 0.05
    assert peak < 50_000
    assert series[-1] == Interval(87_647, end, end + HOUR)


def test_iterating_keeps_memory_flat() -> None:
    series = IntervalSeries(utc(2010, 1, 1), utc(2019, 12, 31), "day", timezone="Europe/Berlin")
    tracemalloc.start()
    n = sum(1 for _ in series)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert n == series.count == 3652
    assert peak < 100_000


def test_exactly_the_maximum_is_allowed_and_one_more_is_rejected_fast() -> None:
    start = utc(2024, 1, 1)
    ok = IntervalSeries(start, start + timedelta(seconds=MAX_INTERVALS - 1), "second")
    assert ok.count == MAX_INTERVALS
    t0 = time.perf_counter()
    with pytest.raises(ValidationError) as exc:
        IntervalSeries(start, start + timedelta(seconds=MAX_INTERVALS), "second")
    assert time.perf_counter() - t0 < 0.1
    assert exc.value.field == "end"
    assert "1,000,001" in exc.value.message and "1,000,000" in exc.value.message


@pytest.mark.parametrize(
    ("itype", "units", "cron", "years"),
    [
        ("hour", 1, None, 200),
        ("minute", 1, None, 5),
        ("day", 1, None, 7000),
        ("custom", 30, None, 1000),
        ("custom", None, "* * * * *", 100),
        ("custom", None, "* * * * * *", 1),
        ("custom", None, "0 0 * * *", 5000),
    ],
)
def test_too_many_intervals_rejected_quickly(itype: str, units: int | None, cron: str | None, years: int) -> None:
    t0 = time.perf_counter()
    with pytest.raises(ValidationError) as exc:
        IntervalSeries(utc(2000, 1, 1), utc(2000 + years, 1, 1), itype, units, timezone="Europe/Berlin", cron=cron)
    assert time.perf_counter() - t0 < 2.0
    assert exc.value.field == "end"
    assert "1,000,000" in exc.value.message


def test_cron_with_1000001_fire_times_is_rejected() -> None:
    start = utc(2024, 1, 1)
    # every minute: 1,000,000 fire times in [start, start + 999,999 min]
    ok = IntervalSeries(start, start + timedelta(minutes=MAX_INTERVALS - 1), "custom", cron="* * * * *")
    assert ok.count == MAX_INTERVALS
    with pytest.raises(ValidationError) as exc:
        IntervalSeries(start, start + timedelta(minutes=MAX_INTERVALS), "custom", cron="* * * * *")
    assert exc.value.field == "end"
    assert "1,000,001" in exc.value.message


# ---- validation -------------------------------------------------------------------------

S, E = utc(2024, 1, 1), utc(2024, 2, 1)


@pytest.mark.parametrize(
    ("kwargs", "field", "phrase"),
    [
        ({"interval_type": "fortnight"}, "interval_type", "unknown interval_type"),
        ({"interval_type": None}, "interval_type", "unknown interval_type"),
        ({"interval_type": "day", "interval_units": 0}, "interval_units", "at least 1"),
        ({"interval_type": "day", "interval_units": -3}, "interval_units", "at least 1"),
        ({"interval_type": "day", "interval_units": None}, "interval_units", "whole number"),
        ({"interval_type": "day", "interval_units": True}, "interval_units", "whole number"),
        ({"interval_type": "day", "interval_units": 1.5}, "interval_units", "whole number"),
        ({"interval_type": "day", "interval_units": "2"}, "interval_units", "whole number"),
        ({"interval_type": "custom", "interval_units": None}, "interval_units", "cron"),
        ({"interval_type": "custom", "interval_units": 0}, "interval_units", "at least 1"),
        ({"interval_type": "hour", "interval_units": 10**20}, "interval_units", "too large"),
        ({"interval_type": "year", "interval_units": 10**6}, "interval_units", "too large"),
        ({"interval_type": "day", "cron": "0 * * * *"}, "cron", "custom"),
        ({"interval_type": "custom", "cron": "61 * * * *"}, "cron", "invalid cron"),
        ({"interval_type": "custom", "cron": "a b c"}, "cron", "5 fields"),
        ({"interval_type": "custom", "cron": "* * * *"}, "cron", "5 fields"),
        ({"interval_type": "custom", "cron": "* * * * * * 2024"}, "cron", "5 fields"),
        ({"interval_type": "custom", "cron": ""}, "cron", "invalid cron"),
        ({"interval_type": "custom", "cron": "H * * * *"}, "cron", "not supported"),
        ({"interval_type": "custom", "cron": "R * * * *"}, "cron", "not supported"),
        ({"interval_type": "custom", "cron": "0 0 * * mon#9"}, "cron", "invalid cron"),
        ({"interval_type": "custom", "cron": "0 0 30 2 *"}, "cron", "no fire time between"),
        ({"interval_type": "day", "timezone": "Mars/Olympus"}, "timezone", "unknown timezone"),
        ({"interval_type": "day", "timezone": ""}, "timezone", "IANA"),
        ({"interval_type": "day", "start": datetime(2024, 1, 1)}, "start", "timezone"),
        ({"interval_type": "day", "end": datetime(2024, 2, 1)}, "end", "timezone"),
        ({"interval_type": "day", "start": "2024-01-01"}, "start", "date-time"),
        ({"interval_type": "day", "start": E, "end": S}, "end", "end must not be before start"),
        ({"interval_type": "year", "end": datetime(9999, 6, 1, tzinfo=UTC)}, "end", "9999"),
    ],
)
def test_validation_errors(kwargs: dict[str, object], field: str, phrase: str) -> None:
    args: dict[str, object] = {"start": S, "end": E, "interval_units": 1, **kwargs}
    with pytest.raises(ValidationError) as exc:
        IntervalSeries(**args)  # type: ignore[arg-type]
    assert exc.value.field == field
    assert phrase in exc.value.message


def test_cron_with_custom_ignores_units() -> None:
    series = IntervalSeries(S, utc(2024, 1, 1, 2), "custom", 0, cron="0 * * * *")
    assert series.count == 3


def test_cron_without_fire_time_in_range() -> None:
    with pytest.raises(ValidationError) as exc:
        IntervalSeries(utc(2024, 1, 1, 7), utc(2024, 1, 1, 8), "custom", cron="0 6 * * *")
    assert exc.value.field == "cron"
    assert "no fire time between 2024-01-01T07:00:00Z and 2024-01-01T08:00:00Z" in exc.value.message
