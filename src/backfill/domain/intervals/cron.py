"""Cron series (docs/api.md).

A cron series is the set of fire times ``t`` with ``start <= t <= end``; each interval
ends at the next fire time. The expression is parsed, and its days are matched, by
:mod:`.cron_expr` (our own code: croniter 7.0.0 gets day matching wrong for some
expressions, see there). Fire times are generated here, not by croniter or cronsim,
for two measured reasons:

* croniter 7.0.0 (and cron(8)) do not follow our rule (docs/pipelines.md) around DST: for ``30 2 * * *``
  in Europe/Berlin croniter fires at 03:00 (not 03:30) on the spring-forward day and
  fires *twice* (02:30 CEST and 02:30 CET) on the fall-back day.
* ``croniter.get_next`` costs 40-80 µs per call with aware datetimes, so iterating up to
  1,000,001 fire times to count them would take 40-80 s.

Fire times are the matching wall-clock times of every matching day, resolved with the
same ``fold=0`` rule as the calendar types (so an hourly cron has one 2-hour interval
across a fall-back overlap, and the fire times a gap shifts onto existing ones merge).

Counting strategy: the times of day of an expression form the product
hours x minutes x seconds, so a day whose wall clock maps to UTC with one offset
("regular" day) has exactly ``K = |H|*|M|*|S|`` fire times, and positions within a day
are computed by index arithmetic. Which days match depends only on the calendar of the
year (leap or not, weekday of Jan 1), so matching days are tabulated once for each of
the 14 year types and counted per year with prefix sums. Days near a UTC-offset change ("irregular" days: the offset
of local midnight changes between the day before and the day after) are found by
sampling local midnights every 3 days and are counted by listing their fire times.
The count is accumulated year by year and rejected as soon as it provably exceeds the
limit (``MAX_INTERVALS``). Sparse expressions check only matching days for offset changes.

Measured (Europe/Berlin, shared 2-core machine): counting 10 years of ``0 * * * *``
(87,639) 5 ms; 694 days of ``* * * * *`` (999,241) 3 ms; rejecting 10 years of
``* * * * *`` 3 ms; 100 years of ``0 6 * * 1-5`` 6 ms; 2,700 years of ``0 0 * * *``
(985,500) and rejecting 3,000 years of it ~230 ms (the worst case: dense days over
millennia); 7,000 years of ``0 0 1 1 *`` 140 ms. Iteration ~2-10 µs per interval;
cron ``__getitem__``/``index_of`` O(log days), ~0.2 ms. Fixed steps count in O(1).

Known limitations: DST periods shorter than 3 days are not detected by the sampling
(tzdata has none from 1900 to 2100; the shortest is 4 days, Africa/Freetown 1939).
A whole day skipped by a zone (Pacific/Apia 2011-12-30) has no wall clock: its fire
times resolve onto the next day and merge with that day's.
"""

from __future__ import annotations

import bisect
import calendar
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from backfill.domain.intervals.cron_expr import CronExpression
from backfill.domain.intervals.steps import DAY_S, EPOCH_ORD, ONE_S, ceil_s, floor_s, from_s

# Cron series keep two spare days at either end of the datetime range for look-ups of
# neighbouring days.
MIN_ORD = date(1, 1, 1).toordinal() + 2
MAX_ORD = date(9999, 12, 31).toordinal() - 2

# One representative year for each year type (leap year?, weekday of January 1):
# every year of a type has the same calendar.
_REP_YEAR: dict[tuple[bool, int], int] = {}
for _y in range(2001, 2100):
    _REP_YEAR.setdefault((calendar.isleap(_y), date(_y, 1, 1).weekday()), _y)


def _year_type(year: int) -> tuple[bool, int]:
    return calendar.isleap(year), date(year, 1, 1).weekday()


class _TimesOfDay:
    """The sorted product hours x minutes x seconds, as seconds since midnight."""

    def __init__(self, hours: list[int], minutes: list[int], seconds: list[int]) -> None:
        self.hours = hours
        self.minutes = minutes
        self.seconds = seconds
        self._hour_set = frozenset(hours)
        self._minute_set = frozenset(minutes)
        self._per_minute = len(seconds)
        self._per_hour = len(minutes) * len(seconds)
        self.size = len(hours) * self._per_hour

    def get(self, i: int) -> int:
        h, rest = divmod(i, self._per_hour)
        m, s = divmod(rest, self._per_minute)
        return self.hours[h] * 3600 + self.minutes[m] * 60 + self.seconds[s]

    def count_le(self, x: int) -> int:
        """How many times of day are <= x (x in seconds, any value)."""
        if x < 0:
            return 0
        if x >= DAY_S:
            return self.size
        h, rest = divmod(x, 3600)
        m, s = divmod(rest, 60)
        n = bisect.bisect_left(self.hours, h) * self._per_hour
        if h in self._hour_set:
            n += bisect.bisect_left(self.minutes, m) * self._per_minute
            if m in self._minute_set:
                n += bisect.bisect_right(self.seconds, s)
        return n


class _DayFires:
    """Fire times (epoch seconds, ascending) of one local day."""

    __slots__ = ("_base", "_items", "_tod", "size")

    def __init__(self, base: int, tod: _TimesOfDay | None, items: list[int] | None) -> None:
        self._base = base
        self._tod = tod
        self._items = items
        self.size = tod.size if tod is not None else len(items or ())

    def get(self, i: int) -> int:
        if self._tod is not None:
            return self._base + self._tod.get(i)
        assert self._items is not None
        return self._items[i]

    def count_le(self, x: int) -> int:
        if self._tod is not None:
            return self._tod.count_le(x - self._base)
        assert self._items is not None
        return bisect.bisect_right(self._items, x)

    def count_lt(self, x: int) -> int:
        return self.count_le(x - 1)


_NO_FIRES = _DayFires(0, None, [])


class CronSchedule:
    """Fire times of a cron expression in a timezone, with fold=0 wall-clock resolution."""

    def __init__(self, expr: object, zone: ZoneInfo) -> None:
        expression = CronExpression(expr)
        self.text = expression.text
        self.zone = zone
        self.tod = _TimesOfDay(expression.hours, expression.minutes, expression.seconds)
        self.per_day = self.tod.size
        self._day_matcher = expression.matching_days
        self._types: dict[tuple[bool, int], tuple[list[int], bytearray]] = {}
        self._years: dict[int, tuple[list[int], bytearray, int]] = {}
        self._midnights: dict[int, int] = {}
        self._lists: dict[int, list[int]] = {}
        # Irregular days of the validated range (see IntervalSeries): ordinal -> count.
        self._scan_lo = 1
        self._scan_hi = 0
        self._irregular: dict[int, int] = {}
        self._irr_days: list[int] = []
        self._irr_prefix: list[int] = [0]
        self._irr_match_prefix: list[int] = [0]
        # Cumulative matching days per year of the prepared range: _year_cum[i] is the
        # number of matching days in the years _cum_year .. _cum_year + i - 1.
        self._cum_year = 0
        self._year_cum: list[int] = []
        self._lo = 0
        self._d0 = self._d1 = 0

    # ---- calendar days -------------------------------------------------------------

    def _year(self, year: int) -> tuple[list[int], bytearray, int]:
        """(matching days of the year as 0-based day numbers, mask of them, Jan 1 ordinal)."""
        data = self._years.get(year)
        if data is None:
            key = _year_type(year)
            days_mask = self._types.get(key)
            if days_mask is None:
                days = self._day_matcher(_REP_YEAR[key])
                mask = bytearray(366)
                for d in days:
                    mask[d] = 1
                days_mask = self._types[key] = (days, mask)
            if len(self._years) > 256:
                self._years.clear()
            data = self._years[year] = (*days_mask, date(year, 1, 1).toordinal())
        return data

    def _locate_day(self, o: int) -> tuple[list[int], bytearray, int, int]:
        year = date.fromordinal(o).year
        days, mask, jan1 = self._year(year)
        return days, mask, jan1, o - jan1

    def matches(self, o: int) -> bool:
        _days, mask, _jan1, doy = self._locate_day(o)
        return bool(mask[doy])

    def _before(self, o: int) -> int:
        """Matching days from January 1 of o's year up to, not including, day o."""
        days, _mask, _jan1, doy = self._locate_day(o)
        return bisect.bisect_left(days, doy)

    def _whole_years(self, y1: int, y2: int) -> int:
        """Matching days in the years y1 .. y2 - 1."""
        cum = self._year_cum
        if cum and self._cum_year <= y1 and y2 <= self._cum_year + len(cum) - 1:
            return cum[y2 - self._cum_year] - cum[y1 - self._cum_year]
        return sum(len(self._year(y)[0]) for y in range(y1, y2))

    def count_matching(self, a: int, b: int) -> int:
        """Matching days in [a, b] (ordinals)."""
        if a > b:
            return 0
        ya, yb = date.fromordinal(a).year, date.fromordinal(b).year
        through_b = self._before(b) + self.matches(b)
        if ya == yb:
            return through_b - self._before(a)
        return self._whole_years(ya, yb) - self._before(a) + through_b

    def next_matching(self, o: int) -> int | None:
        """First matching day >= o, or None before the end of the supported range."""
        if o > MAX_ORD:
            return None
        days, _mask, jan1, doy = self._locate_day(o)
        year = date.fromordinal(o).year
        while True:
            i = bisect.bisect_left(days, doy)
            if i < len(days):
                found = jan1 + days[i]
                return found if found <= MAX_ORD else None
            year += 1
            if year > 9999:
                return None
            days, _mask, jan1 = self._year(year)
            doy = 0

    def prev_matching(self, o: int) -> int | None:
        """Last matching day <= o, or None."""
        if o < MIN_ORD:
            return None
        days, _mask, jan1, doy = self._locate_day(o)
        year = date.fromordinal(o).year
        while True:
            i = bisect.bisect_right(days, doy)
            if i > 0:
                found = jan1 + days[i - 1]
                return found if found >= MIN_ORD else None
            year -= 1
            if year < 1:
                return None
            days, _mask, jan1 = self._year(year)
            doy = 366

    # ---- the timezone --------------------------------------------------------------

    def _offset0(self, wall: datetime) -> int:
        """UTC offset in seconds of the naive wall time (fold=0)."""
        offset = self.zone.utcoffset(wall)
        assert offset is not None
        return offset // ONE_S

    def _midnight_raw(self, o: int) -> int:
        return (o - EPOCH_ORD) * DAY_S - self._offset0(datetime.fromordinal(o))

    def midnight(self, o: int) -> int:
        """Epoch seconds of 00:00 wall time on day o, resolved with fold=0."""
        s = self._midnights.get(o)
        if s is None:
            if len(self._midnights) > 64:
                self._midnights.clear()
            s = self._midnights[o] = self._midnight_raw(o)
        return s

    def local_day(self, s: int) -> int:
        return from_s(s).astimezone(self.zone).toordinal()

    def _in_gap(self, wall: datetime) -> bool:
        """True if the naive wall time does not exist (it lies in a spring-forward gap)."""
        later = self.zone.utcoffset(wall.replace(fold=1))
        assert later is not None
        return later // ONE_S > self._offset0(wall)

    def _spills(self, x: int) -> bool:
        """True if the last wall-clock second of day x lies in a gap, so that the gap
        shifts wall times of day x onto day x + 1."""
        return self._in_gap(datetime.fromordinal(x) + timedelta(seconds=DAY_S - 1))

    def _irregular_direct(self, o: int) -> bool:
        m = self.midnight(o)
        if self.midnight(o + 1) - m != DAY_S:
            return True
        return m - self.midnight(o - 1) != DAY_S and self._spills(o - 1)

    def is_irregular(self, o: int) -> bool:
        """True if day o's wall clock does not map to UTC with one offset (or the
        previous day's shifted wall times may land on it)."""
        if self._scan_lo <= o <= self._scan_hi:
            return o in self._irregular
        return self._irregular_direct(o)

    # ---- fire times of one local day ----------------------------------------------

    def _walls_landing(self, w: int, o: int) -> list[int]:
        """Fire times of the wall-clock times of day w whose local date is day o."""
        base = (w - EPOCH_ORD) * DAY_S
        midnight = datetime.fromordinal(w)
        tod = self.tod
        out: list[int] = []

        def probe(sec: int) -> tuple[int, int, bool]:
            # (fold=0 offset, local date of the resolved instant, inside a gap?)
            wall = midnight + timedelta(seconds=sec)
            off0 = self._offset0(wall)
            if self._in_gap(wall):
                # The instant lies after the transition: its wall clock is shifted.
                later = self.zone.utcoffset(wall.replace(fold=1))
                assert later is not None
                shifted = base + sec - off0 + later // ONE_S
                return off0, shifted // DAY_S + EPOCH_ORD, True
            return off0, w, False

        first_m, last_m = tod.minutes[0], tod.minutes[-1]
        first_s, last_s = tod.seconds[0], tod.seconds[-1]
        for h in tod.hours:
            hb = h * 3600
            key = probe(hb + first_m * 60 + first_s)
            if key == probe(hb + last_m * 60 + last_s):
                if key[1] == o:
                    out.extend(base + hb + m * 60 + s - key[0] for m in tod.minutes for s in tod.seconds)
                continue
            for m in tod.minutes:
                mb = hb + m * 60
                key = probe(mb + first_s)
                if key == probe(mb + last_s):
                    if key[1] == o:
                        out.extend(base + mb + s - key[0] for s in tod.seconds)
                    continue
                for s in tod.seconds:
                    key = probe(mb + s)
                    if key[1] == o:
                        out.append(base + mb + s - key[0])
        return out

    def _irregular_list(self, o: int) -> list[int]:
        items = self._lists.get(o)
        if items is None:
            found: list[int] = []
            if self.matches(o - 1) and self._spills(o - 1):
                found.extend(self._walls_landing(o - 1, o))
            if self.matches(o):
                found.extend(self._walls_landing(o, o))
            items = sorted(set(found))
            if len(self._lists) > 4:  # a list can hold 86,400 fire times
                self._lists.clear()
            self._lists[o] = items
        return items

    def day(self, o: int) -> _DayFires:
        if self.is_irregular(o):
            if not (self.matches(o) or self.matches(o - 1)):
                return _NO_FIRES
            return _DayFires(0, None, self._irregular_list(o))
        if self.matches(o):
            return _DayFires(self.midnight(o), self.tod, None)
        return _NO_FIRES

    def _next_day(self, o: int) -> int | None:
        """The next day after o that may have fire times."""
        if o + 1 > MAX_ORD:
            return None
        if self.matches(o) and self.is_irregular(o + 1):
            return o + 1
        return self.next_matching(o + 1)

    def _prev_day(self, o: int) -> int | None:
        """The previous day before o that may have fire times."""
        p = self.prev_matching(o - 1)
        if p is None:
            return None
        if p + 1 <= o - 1 and self.is_irregular(p + 1):
            return p + 1
        return p

    def fires_after(self, s: int) -> Iterator[int]:
        """Fire times > s, ascending (lazy, O(1) amortised per item)."""
        o: int | None = self.local_day(s)
        assert o is not None
        fires = self.day(o)
        i = fires.count_le(s)
        while True:
            while i < fires.size:
                yield fires.get(i)
                i += 1
            o = self._next_day(o)
            if o is None:
                return
            fires = self.day(o)
            i = 0

    def fires_before(self, s: int) -> Iterator[int]:
        """Fire times < s, descending (lazy, O(1) amortised per item)."""
        o: int | None = self.local_day(s)
        assert o is not None
        fires = self.day(o)
        i = fires.count_lt(s) - 1
        while True:
            while i >= 0:
                yield fires.get(i)
                i -= 1
            o = self._prev_day(o)
            if o is None:
                return
            fires = self.day(o)
            i = fires.size - 1

    # ---- counting over a validated range -------------------------------------------

    def _mark_irregular(self, a: int, b: int) -> list[int]:
        """Irregular days in [a, b] that may have fire times (sorted)."""
        found: set[int] = set()
        matching = self.count_matching(a - 1, b)
        if matching * 4 < (b - a + 2) // 3:
            # Sparse: check only matching days and the days after them.
            o = self.next_matching(a - 1)
            while o is not None and o <= b:
                for x in (o, o + 1):
                    if a <= x <= b and self._irregular_direct(x):
                        found.add(x)
                o = self.next_matching(o + 1)
        else:
            # Sample the offset of local midnight every 3 days; look at each day where
            # it changed between two samples. (Day x is "bad" when the offsets of its
            # midnight and the next differ, i.e. its length is not 24 hours.)
            utcoffset, day_start = self.zone.utcoffset, datetime.fromordinal
            samples = [*range(a - 1, b + 1, 3), b + 1]
            offsets = [utcoffset(day_start(x)) for x in samples]
            bad: list[int] = []
            for i in range(len(samples) - 1):
                if offsets[i] != offsets[i + 1]:
                    prev = offsets[i]
                    for x in range(samples[i], samples[i + 1]):
                        nxt = utcoffset(day_start(x + 1))
                        if nxt != prev:
                            bad.append(x)
                        prev = nxt
            for x in bad:
                for d in (x, x + 1) if self._spills(x) else (x,):
                    if a <= d <= b and (self.matches(d) or self.matches(d - 1)):
                        found.add(d)
        return sorted(found)

    def prepare_range(self, lo: int, hi: int, limit: int) -> tuple[int, int, int] | None:
        """Count the fire times in [lo, hi] (epoch seconds).

        Returns (count, first local day, last local day), or None as soon as the count
        provably exceeds ``limit``. Records the irregular days of the range.
        """
        d0, d1 = self.local_day(lo), self.local_day(hi)
        self._scan_lo, self._scan_hi = d0, d1
        self._irregular = {}
        self._d0, self._d1, self._lo = d0, d1, lo
        y0, y1 = date.fromordinal(d0).year, date.fromordinal(d1).year
        cum = [0]
        for y in range(y0, y1 + 1):
            cum.append(cum[-1] + len(self._year(y)[0]))
        self._cum_year, self._year_cum = y0, cum
        k = self.per_day
        total = 0
        first_day_full = 0
        a = d0
        while a <= d1:
            b = min(d1, date(date.fromordinal(a).year, 12, 31).toordinal())
            irregular = self._mark_irregular(a, b)
            for x in irregular:
                self._irregular[x] = -1
            matching = self.count_matching(a, b)
            for x in irregular:
                if self.matches(x):
                    matching -= 1
                n = len(self._irregular_list(x))
                self._irregular[x] = n
                total += n
            total += matching * k
            if a == d0:
                first_day_full = self.day(d0).size
            if b < d1 and total - first_day_full > limit:
                return None
            a = b + 1
        # Keep only what later queries need (series objects may be cached by callers).
        self._lists.clear()
        self._midnights.clear()
        self._years.clear()
        self._irr_days = sorted(self._irregular)
        self._irr_prefix, self._irr_match_prefix = [0], [0]
        for x in self._irr_days:
            self._irr_prefix.append(self._irr_prefix[-1] + self._irregular[x])
            self._irr_match_prefix.append(self._irr_match_prefix[-1] + self.matches(x))
        before_lo = self.day(d0).count_lt(lo)
        after_hi = self.day(d1).size - self.day(d1).count_le(hi)
        return total - before_lo - after_hi, d0, d1

    def _full_days(self, a: int, b: int) -> int:
        """Fire times on the whole days [a, b] within the prepared range."""
        if a > b:
            return 0
        i = bisect.bisect_left(self._irr_days, a)
        j = bisect.bisect_right(self._irr_days, b)
        irregular_fires = self._irr_prefix[j] - self._irr_prefix[i]
        irregular_matching = self._irr_match_prefix[j] - self._irr_match_prefix[i]
        return (self.count_matching(a, b) - irregular_matching) * self.per_day + irregular_fires

    def through_day(self, o: int) -> int:
        """Fire times >= lo on days d0..o (o within the prepared range)."""
        first = self.day(self._d0)
        n = first.size - first.count_lt(self._lo)
        return n + self._full_days(self._d0 + 1, o)

    def rank(self, s: int) -> int:
        """Fire times in [lo, s], for lo <= s within the prepared range."""
        o = self.local_day(s)
        fires = self.day(o)
        if o == self._d0:
            return fires.count_le(s) - fires.count_lt(self._lo)
        return self.through_day(o - 1) + fires.count_le(s)

    def locate(self, k: int) -> int:
        """The k-th fire time >= lo (0-based), for k below the prepared count."""
        lo_d, hi_d = self._d0, self._d1
        while lo_d < hi_d:
            mid = (lo_d + hi_d) // 2
            if self.through_day(mid) > k:
                hi_d = mid
            else:
                lo_d = mid + 1
        o = lo_d
        fires = self.day(o)
        if o == self._d0:
            return fires.get(fires.count_lt(self._lo) + k)
        return fires.get(k - self.through_day(o - 1))


class CronSteps:
    def __init__(self, schedule: CronSchedule, count: int, first: int, after_last: int) -> None:
        self._schedule = schedule
        self._count = count
        self._first = first
        self._after_last = after_last

    def _boundary_s(self, k: int) -> int:
        if k == 0:
            return self._first
        if k == self._count:
            return self._after_last
        if k < self._count:
            return self._schedule.locate(k)
        for i, s in enumerate(self._schedule.fires_after(self._after_last), start=self._count + 1):
            if i == k:
                return s
        raise OverflowError("no further fire time")

    def boundary(self, k: int) -> datetime:
        return from_s(self._boundary_s(k))

    def estimate_rank(self, t: datetime) -> int:
        return self.rank(t)

    def rank(self, t: datetime) -> int:
        s = floor_s(t)
        if s < self._first:
            return 0
        return self._schedule.rank(s)

    def walk_up(self, k: int, hint: datetime | None) -> Iterator[datetime]:
        if hint is not None and 0 < k < self._count:
            gen = self._schedule.fires_after(floor_s(hint))
        else:
            s = self._boundary_s(k)
            yield from_s(s)
            gen = self._schedule.fires_after(s)
        for s in gen:
            yield from_s(s)

    def walk_down(self, k: int, hint: datetime | None) -> Iterator[datetime]:
        if hint is not None and 0 < k < self._count:
            s = next(self._schedule.fires_after(ceil_s(hint) - 1))
        else:
            s = self._boundary_s(k)
        yield from_s(s)
        for i, earlier in enumerate(self._schedule.fires_before(s)):
            if i >= k:
                return
            yield from_s(earlier)
