"""Property tests of interval arithmetic against slow, obviously-correct references.

References resolve every wall-clock time with plain zoneinfo (``fold=0``) and decide
cron days with cronsim (tests/domain/cron_reference.py), so they share no code with the
implementation. Cron windows are biased towards DST transitions, where our rule (docs/pipelines.md)
(not cron(8)'s) decides the fire times.
"""

from __future__ import annotations

import calendar
import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.domain.cron_reference import CronCase, cron_cases, reference_fires, times_per_day

from backfill.domain.errors import ValidationError
from backfill.domain.intervals import IntervalSeries

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # 30-minute DST
    "America/Santiago",  # DST switches at midnight
    "Pacific/Chatham",  # +12:45 / +13:45
    "America/Sao_Paulo",  # midnight DST until 2019
    "Africa/Casablanca",  # DST suspended during Ramadan
    "Asia/Kolkata",
]

APPROX_SECONDS = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "custom": 1,
    "day": 86_400,
    "week": 7 * 86_400,
    "month": 30 * 86_400,
    "year": 365 * 86_400,
}
MAX_UNITS = {
    "second": 100_000,
    "minute": 2_000,
    "hour": 200,
    "custom": 200_000,
    "day": 12,
    "week": 5,
    "month": 14,
    "year": 3,
}
PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def resolve(wall: datetime, zone: ZoneInfo) -> datetime:
    """Reference resolution: zoneinfo fold=0."""
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def exists(wall: datetime, zone: ZoneInfo) -> bool:
    back = resolve(wall, zone).astimezone(zone).replace(tzinfo=None)
    return back == wall


@st.composite
def fixed_series(draw: st.DrawFn) -> tuple[IntervalSeries, str, str, int, datetime, datetime]:
    zone_name = draw(st.sampled_from(ZONES))
    zone = ZoneInfo(zone_name)
    itype = draw(st.sampled_from(sorted(APPROX_SECONDS)))
    units = draw(st.integers(1, MAX_UNITS[itype]))
    day = draw(st.dates(date(2000, 1, 1), date(2040, 12, 31)))
    kind = draw(st.sampled_from(["midnight", "wall", "instant"]))
    if kind == "midnight":
        start = resolve(datetime.combine(day, time()), zone)
    elif kind == "wall":
        wall_time = draw(st.times())
        start = resolve(datetime.combine(day, wall_time), zone)
    else:
        start = datetime.combine(day, draw(st.times()), tzinfo=UTC)
    step = APPROX_SECONDS[itype] * units
    n = draw(st.integers(0, 150))
    jitter = draw(st.floats(-0.49, 0.49))
    end = start + timedelta(seconds=max(0.0, (n + jitter) * step))
    end = min(end, datetime(2045, 1, 1, tzinfo=UTC))
    series = IntervalSeries(start, end, itype, units, timezone=zone_name)
    return series, zone_name, itype, units, start, end


@PROPS
@given(fixed_series(), st.data())
def test_fixed_series_properties(
    case: tuple[IntervalSeries, str, str, int, datetime, datetime], data: st.DataObject
) -> None:
    series, zone_name, itype, units, start, end = case
    zone = ZoneInfo(zone_name)
    items = list(series)

    # count is exact; the series starts at start; boundaries tile [first_start, last_end)
    assert len(items) == series.count == len(series) >= 1
    assert [i.index for i in items] == list(range(len(items)))
    assert items[0].start == series.first_start == start
    assert items[-1].end == series.last_end
    for a, b in itertools.pairwise(items):
        assert a.end == b.start
    assert all(i.start < i.end for i in items)
    assert all(start <= i.start <= end for i in items)
    assert series.last_end > end

    anchor = start.astimezone(zone).replace(tzinfo=None, fold=0)
    for k, item in enumerate(items):
        if itype in ("second", "minute", "hour", "custom"):
            assert item.start == start + k * timedelta(seconds=APPROX_SECONDS[itype] * units)
            continue
        if k == 0:
            continue
        if itype in ("day", "week"):
            expected_day = anchor.date() + timedelta(days=k * units * (7 if itype == "week" else 1))
        else:
            months = k * units * (12 if itype == "year" else 1)
            y, m = divmod(anchor.month - 1 + months, 12)
            year, month = anchor.year + y, m + 1
            expected_day = date(year, month, min(anchor.day, calendar.monthrange(year, month)[1]))
        wall = datetime.combine(expected_day, anchor.time())
        # exact value: the anchor's wall time on the expected day, resolved with fold=0
        assert item.start == resolve(wall, zone)
        local = item.start.astimezone(zone)
        assert local.date() == expected_day
        if local.time() != anchor.time():
            assert not exists(wall, zone), (item, wall)

    # descending iteration is the reverse of ascending iteration
    assert list(series.iter_from(None, descending=True)) == items[::-1]

    for k in data.draw(st.lists(st.integers(0, len(items) - 1), max_size=4)):
        assert series[k] == items[k]
        assert series[k - len(items)] == items[k]
        assert series.index_of(items[k].start) == k
        assert series.index_of(items[k].start + timedelta(microseconds=1)) is None

    span = series.last_end - start
    offset = data.draw(st.floats(-0.1, 1.1))
    t = start + span * offset
    assert list(series.iter_from(t)) == [i for i in items if i.start > t]
    assert list(series.iter_from(t, descending=True)) == [i for i in reversed(items) if i.start < t]


# ---- cron -----------------------------------------------------------------------------


@st.composite
def cron_windows(draw: st.DrawFn) -> tuple[CronCase, str, datetime, datetime]:
    expr = draw(cron_cases())
    zone = draw(st.sampled_from(ZONES))
    # Bias towards months with DST switches.
    year = draw(st.integers(2000, 2040))
    month = draw(st.sampled_from([1, 3, 4, 9, 10, 11, 12]))
    local = datetime(year, month, draw(st.integers(1, 28)), draw(st.integers(0, 23)), draw(st.integers(0, 59)))
    start = resolve(local, ZoneInfo(zone)) + timedelta(seconds=draw(st.sampled_from([0, 0, 1, 0.5])))
    # At most about 5,000 fire times: the reference lists every time of every day.
    days = min(45, 5_000 // times_per_day(expr))
    end = start + timedelta(days=draw(st.integers(0, days)), seconds=draw(st.integers(0, 86_399)))
    return expr, zone, start, end


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cron_windows(), st.data())
def test_cron_series_matches_reference(case: tuple[CronCase, str, datetime, datetime], data: st.DataObject) -> None:
    expr, zone_name, start, end = case
    zone = ZoneInfo(zone_name)
    expected = reference_fires(expr, zone, start, end)
    if not expected:
        with pytest.raises(ValidationError) as exc:
            IntervalSeries(start, end, "custom", None, timezone=zone_name, cron=expr.ours)
        assert exc.value.field == "cron"
        return
    series = IntervalSeries(start, end, "custom", None, timezone=zone_name, cron=expr.ours)
    items = list(series)
    assert [i.start for i in items] == expected
    assert series.count == len(items)
    for a, b in itertools.pairwise(items):
        assert a.end == b.start
    assert series.last_end > end
    assert series.last_end == items[-1].end
    # the next fire time after the range, found by the reference in a wider window
    later = reference_fires(expr, zone, end + timedelta(microseconds=1), series.last_end)
    assert later == [series.last_end]
    assert list(series.iter_from(None, descending=True)) == items[::-1]

    for k in data.draw(st.lists(st.integers(0, len(items) - 1), max_size=3)):
        assert series[k] == items[k]
        assert series.index_of(items[k].start) == k
        t = items[k].start + timedelta(seconds=data.draw(st.sampled_from([-1, 0, 0.5, 1])))
        assert list(series.iter_from(t)) == [i for i in items if i.start > t]
        assert list(series.iter_from(t, descending=True)) == [i for i in reversed(items) if i.start < t]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["0 9 * * 1-5", "30 2 * * *", "0 0 L * *", "15 1,2,3 * * 0", "0 */6 1,15 * *", "45 23 * * 6"]),
    st.sampled_from(ZONES),
    st.integers(2000, 2038),
    st.integers(62, 800),
)
def test_cron_count_over_years_equals_iteration(expr: str, zone_name: str, year: int, days: int) -> None:
    start = datetime(year, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=days)
    series = IntervalSeries(start, end, "custom", None, timezone=zone_name, cron=expr)
    items = list(series)
    assert series.count == len(items)
    assert [i.start for i in items] == reference_fires(CronCase(expr, f"0 {expr}"), ZoneInfo(zone_name), start, end)
    mid = items[len(items) // 2]
    assert series[mid.index] == mid
    assert series.index_of(mid.start) == mid.index
