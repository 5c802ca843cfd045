"""Interval arithmetic: the series of intervals a backfill runs over (docs/api.md).

* :mod:`.series` -- :class:`IntervalSeries` and :class:`Interval`: validation, counting,
  indexing and lazy iteration of a series.
* :mod:`.steps` -- the fixed interval types (second ... year, custom seconds).
* :mod:`.cron` -- cron series: fire times in a timezone, counted by arithmetic.
"""

from backfill.domain.intervals.series import MAX_INTERVALS, Interval, IntervalSeries

__all__ = ["MAX_INTERVALS", "Interval", "IntervalSeries"]
