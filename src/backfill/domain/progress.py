"""Progress and estimated time to completion of a backfill: the one definition that the
API metrics (both dialects), the CLI and the web page show.

- **progress** = finished intervals (completed + failed) / intervals that will run
  (the total minus the cancelled ones: a cancelled interval is not work done, and not
  work left either);
- **ETA** = remaining intervals / the recent completion rate, i.e. how many runs ended
  over the last ``RATE_WINDOW`` finishes, measured up to now (so a stall makes it grow).
  It is unknown (``None``) while the backfill is paused or not running, and before
  ``MIN_FINISHED_FOR_ETA`` runs have finished.

The mean duration is not used: with ``max_active_runs`` slots, queueing, retries and
workers shared among backfills, remaining × mean / slots is off by large factors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from backfill.domain.model import BackfillStatus

#: How many of the most recent finished runs the completion rate is measured over.
RATE_WINDOW = 50
#: Finished runs needed before an ETA is given.
MIN_FINISHED_FOR_ETA = 3


@dataclass(frozen=True)
class Progress:
    to_run: int
    """Intervals that will run: the total minus the cancelled ones."""
    finished: int
    """Completed + failed intervals."""
    remaining: int
    """Intervals still to finish (queued, running, not yet materialized); 0 once final."""
    fraction: float
    """finished / to_run, 0..1 (1.0 when nothing is to run)."""
    runs_per_second: float | None
    """The recent completion rate, when known."""
    eta_seconds: float | None
    """Estimated seconds until every remaining interval has finished, when known."""


def completion_rate(recent_ends: Sequence[datetime], now: datetime) -> float | None:
    """Runs per second over the recent finishes (``ended_at`` of the latest finished runs,
    any order), measured from the oldest of them up to ``now``."""
    if len(recent_ends) < MIN_FINISHED_FOR_ETA:
        return None
    elapsed = (now - min(recent_ends)).total_seconds()
    if elapsed <= 0:
        return None
    return len(recent_ends) / elapsed


def backfill_progress(
    *,
    total: int,
    completed: int,
    failed: int,
    cancelled: int,
    status: BackfillStatus,
    paused: bool,
    recent_ends: Sequence[datetime],
    now: datetime,
) -> Progress:
    """Progress and ETA of a backfill from its counters and its latest finish times."""
    to_run = max(0, total - cancelled)
    finished = completed + failed
    running = status in (BackfillStatus.SCHEDULED, BackfillStatus.RUNNING)
    remaining = max(0, to_run - finished) if running or status is BackfillStatus.CREATED else 0
    fraction = min(1.0, finished / to_run) if to_run else 1.0
    rate = completion_rate(recent_ends, now) if running else None
    eta = None
    if rate is not None and remaining and not paused:
        eta = remaining / rate
    return Progress(
        to_run=to_run,
        finished=finished,
        remaining=remaining,
        fraction=fraction,
        runs_per_second=rate,
        eta_seconds=eta,
    )
