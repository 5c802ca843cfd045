"""The metrics of a backfill read through the service: progress excludes cancelled
intervals, the ETA follows the recent completion rate (a frozen clock, time-machine)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import time_machine

from backfill.services import backfills as svc
from backfill.services.actor import Actor
from backfill.store import queue
from backfill.store.db import Database

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def finish(db: Database, n: int, at: datetime, every: float) -> None:
    """Claim ``n`` runs and complete them one every ``every`` seconds from ``at``."""
    with db.write() as conn:
        runs = queue.claim(conn, "w", n, lease_seconds=3600, now=at)
    assert len(runs) == n
    for i, run in enumerate(runs):
        with db.write() as conn:
            ended = at + timedelta(seconds=every * i)
            result = queue.AttemptResult(ok=True, duration=0.01)
            assert queue.record_attempt(conn, run.key, "w", result, ended)


def test_eta_is_remaining_over_the_recent_completion_rate(db: Database, team: Actor, pipeline_id: int) -> None:
    spec = svc.BackfillSpec(start="2024-01-01", end="2024-04-09", max_active_runs=20)  # 100 days
    bf = svc.create(db, team, pipeline_id, spec, start=True)
    finish(db, 20, T0, every=2.0)  # 20 runs ending from T0 on, one every 2 s: 0.5 runs/s at T0 + 40 s
    with time_machine.travel(T0 + timedelta(seconds=40), tick=False):
        m = svc.get(db, team, bf).metrics
    assert (m["finished_runs"], m["runs_to_run"], m["remaining_runs"]) == (20, 100, 80)
    assert m["progress"] == 0.2
    assert m["runs_per_second"] == 0.5
    # 80 / 0.5 — the mean duration (0.01 s) would say 80 × 0.01 / 20 slots = 0.04 s
    assert m["estimated_seconds_remaining"] == 160.0
    with time_machine.travel(T0 + timedelta(seconds=80), tick=False):  # nothing finished for 40 s
        m = svc.get(db, team, bf).metrics
    assert m["estimated_seconds_remaining"] == 320.0
    svc.set_paused(db, team, bf, True)
    with time_machine.travel(T0 + timedelta(seconds=80), tick=False):
        assert svc.get(db, team, bf).metrics["estimated_seconds_remaining"] is None


def test_no_eta_before_enough_runs_finished(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = svc.create(db, team, pipeline_id, svc.BackfillSpec(start="2024-01-01", end="2024-01-31"), start=True)
    finish(db, 2, T0, every=1.0)
    with time_machine.travel(T0 + timedelta(seconds=10), tick=False):
        m = svc.get(db, team, bf).metrics
    assert m["finished_runs"] == 2 and m["estimated_seconds_remaining"] is None


def test_cancelled_intervals_are_not_counted_as_done(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = svc.create(db, team, pipeline_id, svc.BackfillSpec(start="2024-01-01", end="2024-01-31"), start=True)
    finish(db, 3, T0, every=1.0)
    svc.cancel(db, team, bf)
    detail = svc.get(db, team, bf)
    m = detail.metrics
    assert detail.row["runs_cancelled"] == 28
    assert (m["finished_runs"], m["runs_to_run"], m["remaining_runs"]) == (3, 3, 0)
    assert m["estimated_seconds_remaining"] is None
