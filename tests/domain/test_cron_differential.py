"""Differential test: our cron series against cronsim, an independent evaluator.

Random expressions over every field form (values, ranges, steps, lists, names, ``L``,
``LW``, ``NL``/``LN``, ``#``, aliases, a seconds field) on random windows; the FULL list
of fire times and ``len()`` of the series must equal cronsim's. Windows are in zones
without DST (anywhere) and in DST zones away from the transitions, where cronsim follows
cron(8) and our rule differ (that is pinned in test_cron_conventions.py).
``BACKFILL_CRON_DIFF_EXAMPLES`` raises the number of examples for a deeper run.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.domain.cron_reference import CronCase, cron_cases, cronsim_fires

from backfill.domain.errors import ValidationError
from backfill.domain.intervals import IntervalSeries

EXAMPLES = int(os.environ.get("BACKFILL_CRON_DIFF_EXAMPLES", "1000"))
CAP = 2_000  # fire times compared per example (the window is cut after the 2,000th)

# (zone, first day, last day) of periods without a UTC-offset change.
NO_DST = ["UTC", "Asia/Tokyo", "Asia/Kolkata"]


@st.composite
def windows(draw: st.DrawFn) -> tuple[str, datetime, datetime]:
    kind = draw(st.sampled_from(["no_dst", "no_dst", "summer", "winter"]))
    seconds = st.integers(0, 86_399).map(lambda s: timedelta(seconds=s))
    if kind == "no_dst":
        zone = draw(st.sampled_from(NO_DST))
        first = draw(st.dates(date(1990, 1, 1), date(2040, 12, 31)))
        last = first + timedelta(days=900)
    else:
        # Europe/Berlin and America/New_York (rules since 2007): summer time from the
        # second Sunday of March at the earliest to the last Sunday of October at the
        # earliest; winter time from the first Sunday of November at the latest.
        zone = draw(st.sampled_from(["Europe/Berlin", "America/New_York"]))
        year = draw(st.integers(2008, 2037))
        if kind == "summer":
            first, last = date(year, 4, 1), date(year, 10, 23)
        else:
            first, last = date(year, 11, 9), date(year + 1, 3, 6)
        first += timedelta(days=draw(st.integers(0, (last - first).days - 1)))
    tz = ZoneInfo(zone)
    start = datetime.combine(first, datetime.min.time(), tzinfo=tz) + draw(seconds)
    length = timedelta(days=draw(st.sampled_from([0, 1, 7, 40, 400, 900]))) + draw(seconds)
    limit = datetime.combine(last, datetime.min.time(), tzinfo=tz)
    end = min(start + length, limit)
    return zone, start.astimezone(UTC), max(end, start).astimezone(UTC)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cron_cases(), windows())
def test_cron_series_equals_cronsim(case: CronCase, window: tuple[str, datetime, datetime]) -> None:
    zone_name, start, end = window
    zone = ZoneInfo(zone_name)
    theirs = cronsim_fires(case.cronsim, zone, start, end, CAP + 1)
    if theirs is not None and len(theirs) > CAP:
        end = theirs[CAP - 1]
        theirs = theirs[:CAP]
    if not theirs:
        with pytest.raises(ValidationError) as exc:
            IntervalSeries(start, end, "custom", None, timezone=zone_name, cron=case.ours)
        assert exc.value.field == "cron", (case, exc.value)
        return
    series = IntervalSeries(start, end, "custom", None, timezone=zone_name, cron=case.ours)
    ours = [i.start for i in series]
    assert len(series) == len(theirs), case
    assert ours == theirs, case
    # The last interval ends at the next fire time (cronsim's, unless a UTC-offset change
    # lies before it, where cron(8)'s rule and ours may differ).
    after = cronsim_fires(case.cronsim, zone, end + timedelta(microseconds=1), end + timedelta(days=3660), 1)
    if after and one_offset(zone, end, after[0]):
        assert series.last_end == after[0], case


def one_offset(zone: ZoneInfo, a: datetime, b: datetime) -> bool:
    """Whether the zone keeps one UTC offset from a to b (its changes are days apart)."""
    offset = a.astimezone(zone).utcoffset()
    days = (b - a) // timedelta(days=1)
    return all((a + timedelta(days=d)).astimezone(zone).utcoffset() == offset for d in range(1, days + 1)) and (
        b.astimezone(zone).utcoffset() == offset
    )
