"""Reads of backfill rows: the p95 duration walked from the top of its index, the version probe."""

from __future__ import annotations

import math
import random
from datetime import date, timedelta

import pytest
from tests.store.test_queue import T0, claim, make

from backfill.domain.errors import NotFound
from backfill.services.actor import Actor
from backfill.store import backfills as store
from backfill.store import queue
from backfill.store.db import Database


def nearest_rank_p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * 0.95) - 1)]


@pytest.mark.parametrize("n", [1, 2, 3, 19, 20, 21, 40])
def test_duration_p95_is_the_nearest_rank(db: Database, team: Actor, pipeline_id: int, n: int) -> None:
    rng = random.Random(n)
    end = (date(2024, 1, 1) + timedelta(days=n - 1)).isoformat()
    bf = make(db, team, pipeline_id, start="2024-01-01", end=end, max_active_runs=100)
    durations = [float(rng.choice([1, 2, 2, 3, 5, 8, 13, 21])) + rng.random() * (i % 2) for i in range(n)]
    runs = claim(db, n=n)
    assert len(runs) == n
    with db.write() as conn:
        for run, duration in zip(runs, durations, strict=True):
            queue.record_attempt(conn, run.key, "w1", queue.AttemptResult(ok=True, duration=duration), T0)
    with db.read() as conn:
        assert store.duration_p95(conn, bf, n) == pytest.approx(nearest_rank_p95(durations))
        assert store.duration_p95(conn, bf, 0) is None


def version(db: Database, backfill_id: int) -> int:
    with db.read() as conn:
        return int(store.get(conn, backfill_id)["version"])


def test_every_update_of_a_backfill_bumps_its_version(db: Database, team: Actor, pipeline_id: int) -> None:
    """Caches of derived values key on (id, version): no write may leave it unchanged,
    whatever the clock says (time stands still here)."""
    bf = make(db, team, pipeline_id, retries=0)
    seen = [version(db, bf)]

    def changed() -> None:
        seen.append(version(db, bf))
        assert seen[-1] > seen[-2]

    runs = claim(db, n=2)  # materializes and claims
    changed()
    with db.write() as conn:
        queue.record_attempt(conn, runs[0].key, "w1", queue.AttemptResult(ok=False, error="boom"), T0)
    changed()
    with db.write() as conn:
        queue.record_attempt(conn, runs[1].key, "w1", queue.AttemptResult(ok=True, duration=1.0), T0)
    changed()
    with db.write() as conn:
        store.update_backfill(conn, bf, name="renamed", updated_at=T0)
    changed()
    with db.write() as conn:
        queue.cancel_queued(conn, bf, T0)
    changed()
    with db.write() as conn:
        queue.settle(conn, bf, T0)
        queue.requeue_for_retry(conn, bf, T0)
    changed()


def test_version_probe_is_the_row_version_and_hides_other_teams(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = make(db, team, pipeline_id)
    assert store.version_of(db, bf, team_id=team.team_id) == version(db, bf)
    claim(db)
    assert store.version_of(db, bf, team_id=team.team_id) == version(db, bf)
    with pytest.raises(NotFound):
        store.version_of(db, bf, team_id=team.team_id + 1)
    with pytest.raises(NotFound):
        store.version_of(db, bf + 1, team_id=team.team_id)


def test_version_probe_errors_are_sqlalchemy_errors(db: Database, team: Actor, pipeline_id: int) -> None:
    """The probe bypasses SQLAlchemy's execution on SQLite; its errors must not (the
    HTTP layer maps SQLAlchemy's connection errors to 503)."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    bf = make(db, team, pipeline_id)
    with db.write() as conn:
        conn.execute(text("DROP TABLE notification_attempts"))
        conn.execute(text("DROP TABLE notifications"))
        conn.execute(text("DROP TABLE run_logs"))
        conn.execute(text("DROP TABLE interval_runs"))
        conn.execute(text("DROP TABLE backfills"))
    with pytest.raises(DBAPIError):
        store.version_of(db, bf, team_id=team.team_id)
