"""Progress and ETA (domain.progress): cancelled intervals are neither done nor left,
and the ETA follows the recent completion rate, not the mean duration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backfill.domain.model import BackfillStatus
from backfill.domain.progress import MIN_FINISHED_FOR_ETA, backfill_progress, completion_rate

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def ends(n: int, every: float) -> list[datetime]:
    return [NOW - timedelta(seconds=every * i) for i in range(1, n + 1)]


def test_cancelled_intervals_are_not_progress() -> None:
    p = backfill_progress(
        total=31,
        completed=3,
        failed=0,
        cancelled=19,
        status=BackfillStatus.RUNNING,
        paused=False,
        recent_ends=[],
        now=NOW,
    )
    assert (p.to_run, p.finished, p.remaining) == (12, 3, 9)
    assert p.fraction == 3 / 12


def test_eta_from_the_recent_rate_not_the_mean_duration() -> None:
    # 1.6 runs/s lately (the figures): 2106 remaining take about 22 minutes
    recent = ends(50, 1 / 1.6)
    p = backfill_progress(
        total=2200,
        completed=94,
        failed=0,
        cancelled=0,
        status=BackfillStatus.RUNNING,
        paused=False,
        recent_ends=recent,
        now=NOW,
    )
    assert p.remaining == 2106
    assert p.runs_per_second is not None and abs(p.runs_per_second - 1.6) < 1e-9
    assert p.eta_seconds is not None and abs(p.eta_seconds - 2106 / 1.6) < 1e-6


def test_a_stall_makes_the_eta_grow() -> None:
    recent = ends(10, 1.0)
    fresh = completion_rate(recent, NOW)
    stalled = completion_rate(recent, NOW + timedelta(seconds=90))
    assert fresh is not None and stalled is not None
    assert abs(fresh - 1.0) < 1e-9 and abs(stalled - 0.1) < 1e-9


def test_no_eta_while_paused_not_running_or_too_few_finished() -> None:
    common = {"total": 100, "completed": 10, "failed": 0, "cancelled": 0, "now": NOW}
    recent = ends(10, 1.0)
    running = backfill_progress(status=BackfillStatus.RUNNING, paused=False, recent_ends=recent, **common)  # type: ignore[arg-type]
    assert running.eta_seconds is not None
    paused = backfill_progress(status=BackfillStatus.RUNNING, paused=True, recent_ends=recent, **common)  # type: ignore[arg-type]
    assert paused.eta_seconds is None
    failed = backfill_progress(status=BackfillStatus.FAILED, paused=False, recent_ends=recent, **common)  # type: ignore[arg-type]
    assert failed.eta_seconds is None and failed.remaining == 0
    few = backfill_progress(
        status=BackfillStatus.RUNNING,
        paused=False,
        recent_ends=recent[: MIN_FINISHED_FOR_ETA - 1],
        **common,  # type: ignore[arg-type]
    )
    assert few.eta_seconds is None


def test_nothing_to_run_is_complete() -> None:
    p = backfill_progress(
        total=5,
        completed=0,
        failed=0,
        cancelled=5,
        status=BackfillStatus.CANCELLED,
        paused=False,
        recent_ends=[],
        now=NOW,
    )
    assert (p.to_run, p.fraction, p.remaining, p.eta_seconds) == (0, 1.0, 0, None)
