"""The series of intervals a backfill runs over (docs/api.md): validation, counting, access.

An :class:`IntervalSeries` is defined by ``start``/``end`` (both inclusive: an interval
exists for every boundary ``t`` with ``start <= t <= end``), an interval type and
units, a timezone and, for ``custom``, either a step in seconds or a cron expression.
Every interval ends at the next boundary of the same series, the last one included.

Rules
-----
* The k-th boundary is computed from the anchor ``start``, never by adding a step to
  the previous boundary: monthly from Jan 31 gives Feb 29, Mar 31, Apr 30, ...; the day
  is clamped to the month's last day.
* ``second``/``minute``/``hour`` and ``custom`` with ``interval_units`` (seconds) step in
  absolute time.
* ``day``/``week``/``month``/``year`` and ``cron`` step in the wall clock of the series
  timezone. Wall-clock times are resolved like zoneinfo's ``fold=0``: a time inside a
  spring-forward gap moves forward by the length of the gap (02:30 on 2024-03-31 in
  Europe/Berlin becomes 03:30 CEST), a time inside a fall-back overlap takes its first
  occurrence. Boundary 0 is always ``start`` itself, whatever its wall time.
* Everything is lazy: no method builds a list of the whole range; counting is
  arithmetic, so validating a request is fast whatever its size.

For calendar types, a whole day skipped by a zone (Pacific/Apia 2011-12-30) resolves
onto the next day and gives one zero-length interval.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import NoReturn
from zoneinfo import ZoneInfo

from backfill.domain.errors import ValidationError
from backfill.domain.intervals.cron import MAX_ORD, MIN_ORD, CronSchedule, CronSteps
from backfill.domain.intervals.steps import ONE_US, AbsoluteSteps, CalendarSteps, Steps, ceil_s, floor_s
from backfill.domain.model import IntervalType
from backfill.domain.timeparse import format_iso_z, load_zone, resolve_wall_time

MAX_INTERVALS = 1_000_000
# IntervalSeries.boundaries walks at most this many steps to the next boundary asked for.
_WALK_AHEAD = 8

_ABSOLUTE_SECONDS = {
    IntervalType.SECOND: 1,
    IntervalType.MINUTE: 60,
    IntervalType.HOUR: 3600,
    IntervalType.CUSTOM: 1,
}
_UNIT_NAMES = {
    IntervalType.SECOND: "second",
    IntervalType.MINUTE: "minute",
    IntervalType.HOUR: "hour",
    IntervalType.DAY: "day",
    IntervalType.WEEK: "week",
    IntervalType.MONTH: "month",
    IntervalType.YEAR: "year",
    IntervalType.CUSTOM: "second",
}


@dataclass(frozen=True, slots=True)
class Interval:
    """One interval of a series: ``[start, end)``, both aware UTC datetimes."""

    index: int
    start: datetime
    end: datetime


# --------------------------------------------------------------------------------------
# Validation helpers


def _parse_type(value: object) -> IntervalType:
    allowed = ", ".join(t.value for t in IntervalType)
    if isinstance(value, IntervalType):
        return value
    if isinstance(value, str):
        try:
            return IntervalType(value.strip().lower())
        except ValueError:
            pass
    raise ValidationError(
        f"unknown interval_type {value!r}; use one of: {allowed}",
        field="interval_type",
    )


def _check_units(value: object, itype: IntervalType) -> int:
    if itype is IntervalType.CUSTOM and value is None:
        raise ValidationError(
            "interval_type custom needs either interval_units (a step in seconds) or a cron expression",
            field="interval_units",
        )
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(
            f"interval_units must be a whole number of at least 1, got {value!r}",
            field="interval_units",
        )
    if value < 1:
        raise ValidationError(
            f"interval_units must be at least 1, got {value}",
            field="interval_units",
        )
    return value


def _check_instant(value: object, field: str) -> datetime:
    if not isinstance(value, datetime):
        raise ValidationError(
            f"{field} must be a date-time with a timezone, got {value!r}",
            field=field,
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(
            f"{field} must carry a timezone or UTC offset (got the naive date-time {value.isoformat()})",
            field=field,
        )
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValidationError(f"{field} is outside the supported date range", field=field) from None


class IntervalSeries:
    """The intervals of ``[start, end]`` (both inclusive) split by an interval type.

    All validation happens here; errors are :class:`ValidationError` with ``field`` one
    of ``start``, ``end``, ``interval_type``, ``interval_units``, ``cron``, ``timezone``.
    """

    def __init__(
        self,
        start: datetime,
        end: datetime,
        interval_type: IntervalType | str,
        interval_units: int | None = 1,
        *,
        timezone: str = "UTC",
        cron: str | None = None,
    ) -> None:
        itype = _parse_type(interval_type)
        if cron is not None and itype is not IntervalType.CUSTOM:
            raise ValidationError(
                f"a cron expression needs interval_type custom (got {itype.value})",
                field="cron",
            )
        units = None if cron is not None else _check_units(interval_units, itype)
        zone = load_zone(timezone)
        start_utc = _check_instant(start, "start")
        end_utc = _check_instant(end, "end")
        if start_utc > end_utc:
            raise ValidationError(
                f"end must not be before start ({format_iso_z(end_utc)} is before {format_iso_z(start_utc)})",
                field="end",
            )
        self._type = itype
        self._units = units
        self._zone = zone
        self._zone_name = zone.key
        self._cron: str | None = None
        self._start = start_utc
        self._end = end_utc

        steps: Steps
        try:
            if cron is not None:
                schedule = CronSchedule(cron, zone)
                self._cron = schedule.text
                steps, count = self._prepare_cron(schedule, start_utc, end_utc)
            else:
                assert units is not None
                steps, count = self._prepare_fixed(itype, units, zone, start_utc, end_utc)
            last_end = steps.boundary(count)
        except (OverflowError, ValueError):
            raise ValidationError(
                "the last interval would end after the year 9999; choose an earlier end", field="end"
            ) from None
        self._steps = steps
        self._count = count
        self._last_end = last_end
        self._first_start = steps.boundary(0)
        self._last_start = steps.boundary(count - 1) if count > 1 else self._first_start

    def _prepare_fixed(
        self, itype: IntervalType, units: int, zone: ZoneInfo, start: datetime, end: datetime
    ) -> tuple[Steps, int]:
        steps: Steps
        if itype in _ABSOLUTE_SECONDS:
            try:
                step = timedelta(seconds=units * _ABSOLUTE_SECONDS[itype])
            except OverflowError:
                raise ValidationError(f"interval_units {units} is too large", field="interval_units") from None
            steps = AbsoluteSteps(start, step)
        elif itype in (IntervalType.DAY, IntervalType.WEEK):
            steps = CalendarSteps(start, zone, days=units * (7 if itype is IntervalType.WEEK else 1))
        else:
            steps = CalendarSteps(start, zone, months=units * (12 if itype is IntervalType.YEAR else 1))
        try:
            steps.boundary(1)
        except (OverflowError, ValueError):
            if units == 1:
                raise
            raise ValidationError(
                f"interval_units {units} is too large: one step from start goes past the year 9999",
                field="interval_units",
            ) from None
        estimate = steps.estimate_rank(end)
        if estimate > MAX_INTERVALS + 2:
            self._too_many(f"about {estimate:,}")
        count = steps.rank(end)
        if count > MAX_INTERVALS:
            self._too_many(f"{count:,}")
        return steps, count

    def _too_many(self, how_many: str) -> NoReturn:
        raise ValidationError(
            f"{format_iso_z(self._start)} to {format_iso_z(self._end)} {self.describe()} would create "
            f"{how_many} intervals; at most {MAX_INTERVALS:,} are allowed. "
            "Choose a shorter range or a longer interval.",
            field="end",
        )

    def _prepare_cron(self, schedule: CronSchedule, start: datetime, end: datetime) -> tuple[Steps, int]:
        lo, hi = ceil_s(start), floor_s(end)
        no_fire = ValidationError(
            f"the cron expression {schedule.text!r} has no fire time between "
            f"{format_iso_z(start)} and {format_iso_z(end)} in {schedule.zone.key}",
            field="cron",
        )
        if hi < lo:
            raise no_fire
        lo_day, hi_day = schedule.local_day(lo), schedule.local_day(hi)
        if lo_day < MIN_ORD + 1:
            raise ValidationError("start is too close to the year 1 for a cron series", field="start")
        if hi_day > MAX_ORD - 1:
            raise ValidationError("end is too close to the year 9999 for a cron series", field="end")
        prepared = schedule.prepare_range(lo, hi, MAX_INTERVALS)
        if prepared is None:
            self._too_many(f"more than {MAX_INTERVALS:,}")
        count = prepared[0]
        if count > MAX_INTERVALS:
            self._too_many(f"{count:,}")
        if count == 0:
            raise no_fire
        first = next(schedule.fires_after(lo - 1))
        after_last = next(schedule.fires_after(hi), None)
        if after_last is None:
            raise ValidationError(
                f"the cron expression {schedule.text!r} has no fire time after {format_iso_z(end)} "
                "to end the last interval",
                field="end",
            )
        return CronSteps(schedule, count, first, after_last), count

    # ---- properties -----------------------------------------------------------------

    @property
    def count(self) -> int:
        return self._count

    def __len__(self) -> int:
        return self._count

    @property
    def first_start(self) -> datetime:
        return self._first_start

    @property
    def last_end(self) -> datetime:
        return self._last_end

    @property
    def start(self) -> datetime:
        """The requested start, in UTC."""
        return self._start

    @property
    def end(self) -> datetime:
        """The requested end, in UTC."""
        return self._end

    @property
    def interval_type(self) -> IntervalType:
        return self._type

    @property
    def interval_units(self) -> int | None:
        """The units; None for a cron series."""
        return self._units

    @property
    def timezone(self) -> str:
        return self._zone_name

    @property
    def cron(self) -> str | None:
        """The normalised cron expression, or None."""
        return self._cron

    def describe(self) -> str:
        if self._cron is not None:
            return f"cron '{self._cron}' in {self._zone_name}"
        unit = _UNIT_NAMES[self._type]
        plural = "" if self._units == 1 else "s"
        return f"every {self._units} {unit}{plural} in {self._zone_name}"

    def __repr__(self) -> str:
        return (
            f"IntervalSeries({format_iso_z(self._start)} .. {format_iso_z(self._end)}, "
            f"{self.describe()}, count={self._count})"
        )

    # ---- access ---------------------------------------------------------------------

    def __getitem__(self, index: int) -> Interval:
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"IntervalSeries indices must be integers, not {type(index).__name__}")
        k = index + self._count if index < 0 else index
        if not 0 <= k < self._count:
            raise IndexError(f"interval index {index} out of range for {self._count} intervals")
        if k == self._count - 1:
            return Interval(k, self._last_start, self._last_end)
        walk = self._steps.walk_up(k, None)
        return Interval(k, next(walk), next(walk))

    def __iter__(self) -> Iterator[Interval]:
        return self._ascending(0, None)

    def _n_le(self, t: datetime) -> int:
        """Number of interval starts <= t."""
        if t < self._first_start:
            return 0
        if t >= self._last_start:
            return self._count
        return self._steps.rank(t)

    def _n_lt(self, t: datetime) -> int:
        """Number of interval starts < t."""
        if t <= self._first_start:
            return 0
        return self._n_le(t - ONE_US)

    def iter_from(self, after: datetime | None, *, descending: bool = False) -> Iterator[Interval]:
        """Intervals whose start is strictly after ``after`` (ascending) or strictly before
        it (descending); all of them when ``after`` is None. Lazy."""
        if after is not None and (not isinstance(after, datetime) or after.tzinfo is None or after.utcoffset() is None):
            raise ValueError(f"after must be a timezone-aware datetime, got {after!r}")
        if after is not None:
            # Compare in UTC: aware datetimes of other zones with fold=1 never compare equal.
            after = after.astimezone(UTC)
        if descending:
            top = self._count - 1 if after is None else self._n_lt(after) - 1
            return self._descending(top, after)
        return self._ascending(0 if after is None else self._n_le(after), after)

    def _ascending(self, k0: int, hint: datetime | None) -> Iterator[Interval]:
        if k0 >= self._count:
            return
        walk = self._steps.walk_up(k0, hint)
        start = next(walk)
        for k in range(k0, self._count):
            end = next(walk)
            yield Interval(k, start, end)
            start = end

    def _descending(self, top: int, hint: datetime | None) -> Iterator[Interval]:
        if top < 0:
            return
        walk = self._steps.walk_down(top + 1, hint)
        end = next(walk)
        for k in range(top, -1, -1):
            start = next(walk)
            yield Interval(k, start, end)
            end = start

    def index_of(self, t: datetime) -> int | None:
        """The index of the interval starting exactly at ``t`` (aware), else None."""
        if not isinstance(t, datetime) or t.tzinfo is None or t.utcoffset() is None:
            raise ValueError(f"t must be a timezone-aware datetime, got {t!r}")
        t = t.astimezone(UTC)
        k = self._n_le(t) - 1
        if k < 0:
            return None
        return k if self._steps.boundary(k) == t else None

    def day_starts(self) -> Iterator[int]:
        """The index of every interval that starts on a later local day (series timezone)
        than the interval before it, ascending: where the local date of the starts changes.
        Lazy, one step per local day that holds a start (a day without one is skipped; a
        day is 23 or 25 hours on a DST change; it begins at its first existing instant)."""
        day = self._first_start.astimezone(self._zone).date()
        while day < date.max:
            midnight = resolve_wall_time(datetime.combine(day + timedelta(days=1), time()), self._zone)
            before = midnight - ONE_US
            k = self._n_le(before)  # the first start >= midnight
            if k >= self._count:
                return
            yield k
            day = next(self._steps.walk_up(k, before)).astimezone(self._zone).date()

    def boundaries(self, indices: Iterable[int]) -> Iterator[datetime]:
        """``boundary(k)`` for each k of ``indices`` (ascending, ``0 <= k <= count``), walking
        on from the previous one when it is a few steps back (a cron boundary found from
        scratch costs ten steps of a walk)."""
        walk: Iterator[datetime] | None = None
        at = -1
        current = self._first_start
        for k in indices:
            if not at <= k <= self._count:
                raise IndexError(f"boundary {k!r} out of order or out of range for {self._count} intervals")
            if walk is None or k - at > _WALK_AHEAD:
                walk = self._steps.walk_up(k, None)
                at = k - 1
            while at < k:
                current = next(walk)
                at += 1
            yield self._last_end if k == self._count else current

    def boundary(self, k: int) -> datetime:
        """The k-th boundary, ``0 <= k <= count``: the start of interval k, which is the
        end of interval k - 1 (``boundary(count)`` is ``last_end``). O(1) for fixed steps."""
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= self._count:
            raise IndexError(f"boundary {k!r} out of range for {self._count} intervals")
        if k == self._count:
            return self._last_end
        return self._steps.boundary(k)
