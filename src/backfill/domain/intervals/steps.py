"""Step strategies of the fixed interval types, and the epoch-second arithmetic shared
with the cron series.

Each strategy yields ``boundary(k)`` for k >= 0, with boundary 0 the series ``start``:

* :class:`AbsoluteSteps` -- second/minute/hour and custom seconds: ``start + k * step``
  in absolute time.
* :class:`CalendarSteps` -- day/week (``days`` per step) and month/year (``months`` per
  step) in the wall clock of the series timezone, the k-th boundary computed from the
  anchor (never from the previous boundary), the day clamped to the month's last day,
  and the wall time resolved with ``fold=0`` (a time in a gap moves forward by the gap,
  an ambiguous time takes its first occurrence).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from backfill.domain.timeparse import resolve_wall_time

ONE_US = timedelta(microseconds=1)
ONE_S = timedelta(seconds=1)
DAY_S = 86_400
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_ORD = date(1970, 1, 1).toordinal()


def floor_s(t: datetime) -> int:
    """Epoch seconds of ``t``, rounded down."""
    return (t - EPOCH) // ONE_S


def ceil_s(t: datetime) -> int:
    """Epoch seconds of ``t``, rounded up."""
    return -((EPOCH - t) // ONE_S)


def from_s(s: int) -> datetime:
    return EPOCH + timedelta(seconds=s)


class Steps(Protocol):
    def boundary(self, k: int) -> datetime:
        """The k-th boundary (k >= 0). May raise OverflowError past year 9999."""

    def estimate_rank(self, t: datetime) -> int:
        """A cheap estimate of rank(t), exact within a few units."""

    def rank(self, t: datetime) -> int:
        """Number of boundaries <= t, for t within the validated range."""

    def walk_up(self, k: int, hint: datetime | None) -> Iterator[datetime]:
        """boundary(k), boundary(k + 1), ... ``hint``: an instant with rank(hint) == k."""

    def walk_down(self, k: int, hint: datetime | None) -> Iterator[datetime]:
        """boundary(k), boundary(k - 1), ..., boundary(0).

        ``hint``: an instant such that boundary(k) is the first boundary >= hint."""


class FixedSteps:
    """Shared walking for series whose k-th boundary is O(1) to compute."""

    def boundary(self, k: int) -> datetime:  # pragma: no cover - overridden
        raise NotImplementedError

    def walk_up(self, k: int, hint: datetime | None) -> Iterator[datetime]:  # noqa: ARG002 (O(1) boundaries need no hint)
        while True:
            yield self.boundary(k)
            k += 1

    def walk_down(self, k: int, hint: datetime | None) -> Iterator[datetime]:  # noqa: ARG002
        while k >= 0:
            yield self.boundary(k)
            k -= 1


class AbsoluteSteps(FixedSteps):
    def __init__(self, start: datetime, step: timedelta) -> None:
        self._start = start
        self._step = step

    def boundary(self, k: int) -> datetime:
        return self._start + self._step * k

    def estimate_rank(self, t: datetime) -> int:
        return self.rank(t)

    def rank(self, t: datetime) -> int:
        if t < self._start:
            return 0
        return (t - self._start) // self._step + 1


def _add_months(wall: datetime, months: int) -> datetime:
    total = wall.month - 1 + months
    year = wall.year + total // 12
    month = total % 12 + 1
    if not 1 <= year <= 9999:
        raise OverflowError("date out of range")
    day = min(wall.day, calendar.monthrange(year, month)[1])
    return wall.replace(year=year, month=month, day=day)


class CalendarSteps(FixedSteps):
    """day/week (``days`` per step) or month/year (``months`` per step) in wall-clock time."""

    def __init__(self, start: datetime, zone: ZoneInfo, *, days: int = 0, months: int = 0) -> None:
        self._start = start
        self._zone = zone
        self._anchor = start.astimezone(zone).replace(tzinfo=None, fold=0)
        self._days = days
        self._months = months

    def wall(self, k: int) -> datetime:
        if self._days:
            return self._anchor + timedelta(days=self._days * k)
        return _add_months(self._anchor, self._months * k)

    def boundary(self, k: int) -> datetime:
        if k == 0:
            return self._start
        return resolve_wall_time(self.wall(k), self._zone)

    def _le(self, k: int, t: datetime) -> bool:
        try:
            return self.boundary(k) <= t
        except (OverflowError, ValueError):
            return False

    def estimate_rank(self, t: datetime) -> int:
        if t < self._start:
            return 0
        t_wall = t.astimezone(self._zone).replace(tzinfo=None)
        if self._days:
            k = (t_wall - self._anchor) // timedelta(days=self._days)
        else:
            diff = (t_wall.year - self._anchor.year) * 12 + t_wall.month - self._anchor.month
            k = diff // self._months
        return max(k, 0) + 1

    def rank(self, t: datetime) -> int:
        if t < self._start:
            return 0
        k = self.estimate_rank(t) - 1
        # The estimate is off by at most one or two steps (offset changes, clamped days,
        # ambiguous wall times); correct it by checking the boundaries themselves.
        while self._le(k + 1, t):
            k += 1
        while k > 0 and not self._le(k, t):
            k -= 1
        return k + 1
