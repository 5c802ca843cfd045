"""Indexing agrees with iteration for every interval type, on ranges of up to 1,000,000
intervals: ``series[k]`` is the k-th item iterated, ``index_of(series[k].start) == k``,
and ``len(series)`` is the number iterated. Huge series are iterated only in bounded
prefixes, suffixes and windows around random indexes; the count is then proven by its
last interval, which starts at or before ``end`` and ends after it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise, takewhile
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from backfill.domain.errors import ValidationError
from backfill.domain.intervals import MAX_INTERVALS, Interval, IntervalSeries

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Pacific/Apia", "Asia/Kolkata"]
FIXED = {  # approximate seconds per unit
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "custom": 1,
    "day": 86_400,
    "week": 7 * 86_400,
    "month": 30 * 86_400,
    "year": 365 * 86_400,
}
CRONS = {  # expression: approximate seconds between fire times
    "* * * * *": 60,
    "*/5 * * * *": 300,
    "0 * * * *": 3600,
    "30 2 * * *": 86_400,
    "0 9 * * 1-5": 120_960,
    "15 1,2,3 * * 0": 201_600,
    "0 0 L * *": 2_629_746,
    "0 12 * * 5#5": 31_556_952 // 4,
    "*/20 * 8-17 * * */15": 20 * 60 // 4 * 24 // 10,
}
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
WHOLE = 20_000  # series up to this size are iterated whole
PART = 200  # otherwise: prefix, suffix and windows of this size


@st.composite
def series_cases(draw: st.DrawFn) -> IntervalSeries:
    zone_name = draw(st.sampled_from(ZONES))
    kind = draw(st.sampled_from([*FIXED, "cron", "cron"]))
    # intervals wanted: log-uniform from 1 to 1,000,000, and the limit itself
    n = draw(st.one_of(st.floats(0, 6).map(lambda e: round(10**e)), st.just(MAX_INTERVALS)))
    day = draw(st.datetimes(datetime(1990, 1, 1), datetime(2035, 12, 31)))
    start = day.replace(tzinfo=ZoneInfo(zone_name)).astimezone(UTC)
    if kind == "cron":
        expr = draw(st.sampled_from(sorted(CRONS)))
        end = start + timedelta(seconds=min(n * CRONS[expr], (LATEST - start).total_seconds()))
        try:
            return IntervalSeries(start, end, "custom", None, timezone=zone_name, cron=expr)
        except ValidationError as exc:
            assume(exc.field != "end" and exc.field != "cron")  # more than 1,000,000 / none in range
            raise
    units = draw(st.integers(1, 5))
    end = start + timedelta(seconds=min(n * FIXED[kind] * units, (LATEST - start).total_seconds()))
    try:
        return IntervalSeries(start, end, kind, units, timezone=zone_name)
    except ValidationError as exc:
        assume(exc.field != "end")  # more than 1,000,000
        raise


def check_item(series: IntervalSeries, item: Interval, k: int) -> None:
    assert item.index == k
    assert series[k] == item
    assert series[k - len(series)] == item
    assert series.index_of(item.start) == k
    assert series.index_of(item.start + timedelta(microseconds=1)) is None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(series_cases(), st.lists(st.floats(0, 1), max_size=4))
def test_indexing_agrees_with_iteration(series: IntervalSeries, where: list[float]) -> None:
    count = len(series)
    assert 1 <= count <= MAX_INTERVALS
    event(f"{'cron' if series.cron else series.interval_type.value}, {len(str(count))} digits")
    if count <= WHOLE:
        items = list(series)
        assert len(items) == count
        for k in {0, count - 1, *(int(w * (count - 1)) for w in where)}:
            check_item(series, items[k], k)
        for a, b in pairwise(items):
            assert a.end == b.start
        return
    prefix = list(islice(series, PART))
    for k, item in enumerate(prefix):
        check_item(series, item, k)
    suffix = list(islice(series.iter_from(None, descending=True), PART))
    for j, item in enumerate(suffix):
        check_item(series, item, count - 1 - j)
    first, last = prefix[0], suffix[0]
    # the count: the last interval starts within the range and ends after it
    assert series.start <= first.start and last.start <= series.end < last.end == series.last_end
    for w in where:
        k = int(w * (count - 1))
        item = series[k]
        window = list(islice(series.iter_from(item.start - timedelta(microseconds=1)), PART))
        assert window[0] == item
        for j, later in enumerate(window):
            check_item(series, later, k + j)
        before = list(islice(series.iter_from(item.start, descending=True), 3))
        assert [b.index for b in before] == list(range(k - 1, max(k - 4, -1), -1))
        assert all(b.end == a.start for a, b in zip([item, *before], before, strict=False))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(series_cases())
def test_day_starts_are_where_the_local_date_of_the_starts_changes(series: IntervalSeries) -> None:
    zone = ZoneInfo(series.timezone)
    n = min(len(series), 3000)
    dates = [iv.start.astimezone(zone).date() for iv in islice(series, n)]
    expected = [k for k in range(1, n) if dates[k] != dates[k - 1]]
    found = list(takewhile(lambda k: k < n, series.day_starts()))
    assert found == expected
    event(f"{min(len(expected), 10)} day starts")


def test_day_starts_on_dst_days_and_weekday_crons() -> None:
    berlin = "Europe/Berlin"
    # hourly from local midnight Mar 30 to Apr 1 2024: 24, 23 (spring forward), 24 hours
    spring = IntervalSeries(
        datetime(2024, 3, 29, 23, tzinfo=UTC), datetime(2024, 4, 1, 21, tzinfo=UTC), "hour", 1, timezone=berlin
    )
    assert list(spring.day_starts()) == [24, 47]
    # Oct 26-28 2024: 24, 25 (fall back), 24 hours
    fall = IntervalSeries(
        datetime(2024, 10, 25, 22, tzinfo=UTC), datetime(2024, 10, 28, 22, tzinfo=UTC), "hour", 1, timezone=berlin
    )
    assert list(fall.day_starts()) == [24, 49]
    # weekdays at 09:00 over two weeks: one interval a day, the weekends skipped
    weekdays = IntervalSeries(
        datetime(2024, 1, 1, tzinfo=UTC),
        datetime(2024, 1, 14, tzinfo=UTC),
        "custom",
        None,
        timezone=berlin,
        cron="0 9 * * 1-5",
    )
    assert len(weekdays) == 10 and list(weekdays.day_starts()) == list(range(1, 10))
    assert (
        list(IntervalSeries(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC), "day", 1).day_starts())
        == []
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(series_cases(), st.lists(st.floats(0, 1), max_size=40), st.lists(st.integers(0, 12), max_size=40))
def test_boundaries_in_one_pass_are_the_boundaries(series: IntervalSeries, where: list[float], gaps: list[int]) -> None:
    # ascending indices: some far apart (a fresh start), some a few steps on (a walk), some repeated
    ks = sorted({round(w * len(series)) for w in where})
    ks = sorted(ks + [min(k + g, len(series)) for k, g in zip(ks, gaps, strict=False)])
    assert list(series.boundaries(ks)) == [series.boundary(k) for k in ks]


def test_boundaries_out_of_order_or_range_are_refused() -> None:
    series = IntervalSeries(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 9, tzinfo=UTC), "day", 1)
    with pytest.raises(IndexError):
        list(series.boundaries([3, 2]))
    with pytest.raises(IndexError):
        list(series.boundaries([10]))
    assert list(series.boundaries([9])) == [series.last_end]
