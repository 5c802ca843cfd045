"""``runs:rerun``: chosen intervals of a backfill come back as new attempts of the same
runs; counters follow; final backfills and ids / dates not in the backfill refuse."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from backfill.domain.errors import InvalidTransition, ValidationError
from backfill.services import backfills as svc
from backfill.services.actor import Actor
from backfill.store import backfills as store
from backfill.store import queue
from backfill.store.db import Database
from backfill.store.tables import interval_runs

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def run_all(db: Database, fail_days: set[int] = frozenset()) -> None:  # type: ignore[assignment]
    """Claim and finish every run; those whose day of month is in ``fail_days`` fail."""
    while True:
        with db.write() as conn:
            claimed = queue.claim(conn, "w", 50, lease_seconds=30, now=T0)
        if not claimed:
            return
        for r in claimed:
            ok = r.interval_start.day not in fail_days
            with db.write() as conn:
                result = queue.AttemptResult(ok=ok, error=None if ok else "boom", rows=5, duration=1.0)
                assert queue.record_attempt(conn, r.key, "w", result, T0)


def runs(db: Database, backfill_id: int) -> dict[int, dict[str, Any]]:
    with db.read() as conn:
        rows = conn.execute(select(interval_runs).where(interval_runs.c.backfill_id == backfill_id)).mappings()
        return {r["interval_start"].day: dict(r) for r in rows}


def counters(db: Database, backfill_id: int) -> tuple[object, ...]:
    """(status, completed, failed, rows), checking the counters against the runs."""
    with db.read() as conn:
        r = store.get(conn, backfill_id)
        counts = queue.recount(conn, backfill_id)
    assert (r["runs_completed"], r["runs_failed"], r["runs_cancelled"]) == (
        counts.completed,
        counts.failed,
        counts.cancelled,
    )
    return (r["status"], r["runs_completed"], r["runs_failed"], r["rows_total"])


@pytest.fixture
def failed_backfill(db: Database, team: Actor, pipeline_id: int) -> int:
    spec = svc.BackfillSpec(start="2024-01-01", end="2024-01-05", retries=0)
    bf = svc.create(db, team, pipeline_id, spec, start=True)
    run_all(db, fail_days={2, 4})
    assert counters(db, bf) == ("failed", 3, 2, 15)
    return bf


def test_rerun_failed_schedules_a_failed_backfill_again(db: Database, team: Actor, failed_backfill: int) -> None:
    bf = failed_backfill
    before = runs(db, bf)
    result = svc.rerun(db, team, bf, statuses=["FAILED"])
    assert (result.requeued, result.running) == (2, 0)
    assert counters(db, bf) == ("scheduled", 3, 0, 15)
    after = runs(db, bf)
    assert {d for d, r in after.items() if r["status"] == "queued"} == {2, 4}
    assert all(after[d]["id"] == before[d]["id"] for d in after)  # the same runs, new attempts
    run_all(db)
    after = runs(db, bf)
    assert after[2]["attempt"] == 2 and after[1]["attempt"] == 1
    assert counters(db, bf) == ("completed", 5, 0, 25)


def test_rerun_by_date_and_by_id_includes_completed_runs(db: Database, team: Actor, failed_backfill: int) -> None:
    bf = failed_backfill
    assert svc.rerun(db, team, bf, data_dates=["2024-01-01", "2024-01-02"]).requeued == 2
    # a completed run re-queued gives back its rows; the failed one leaves the failed counter
    assert counters(db, bf) == ("scheduled", 2, 1, 10)
    day3 = runs(db, bf)[3]["id"]
    assert svc.rerun(db, team, bf, run_ids=[day3]).requeued == 1
    assert counters(db, bf) == ("scheduled", 1, 1, 5)
    run_all(db)
    assert counters(db, bf) == ("failed", 4, 1, 20)  # day 4 was not chosen: still failed


def test_running_runs_are_left_alone(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = svc.create(db, team, pipeline_id, svc.BackfillSpec(start="2024-01-01", end="2024-01-03"), start=True)
    with db.write() as conn:
        (running,) = queue.claim(conn, "w", 1, lease_seconds=30, now=T0)
    result = svc.rerun(db, team, bf, run_ids=[running.run_id])
    assert (result.requeued, result.running) == (0, 1)
    assert runs(db, bf)[running.interval_start.day]["status"] == "running"


@pytest.mark.parametrize(
    ("kwargs", "field", "text"),
    [
        ({"run_ids": [999_999]}, "run_ids", "999999"),
        ({"data_dates": ["2024-02-01"]}, "data_dates", "2024-02-01"),
        ({"data_dates": ["2024-01-01T06:00:00"]}, "data_dates", "06:00"),
        ({"statuses": ["RUNNING"]}, "statuses", "COMPLETED, FAILED, CANCELLED"),
        ({"statuses": []}, "statuses", "non-empty"),
        ({}, "body", "exactly one"),
        ({"run_ids": [1], "statuses": ["FAILED"]}, "body", "exactly one"),
    ],
)
def test_bad_selections_name_the_field(
    db: Database, team: Actor, failed_backfill: int, kwargs: dict[str, object], field: str, text: str
) -> None:
    with pytest.raises(ValidationError) as exc:
        svc.rerun(db, team, failed_backfill, **kwargs)  # type: ignore[arg-type]
    assert exc.value.field == field and text in exc.value.message
    assert counters(db, failed_backfill)[0] == "failed"  # nothing changed


def test_final_backfills_refuse(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = svc.create(db, team, pipeline_id, svc.BackfillSpec(start="2024-01-01", end="2024-01-02"), start=True)
    run_all(db)
    with pytest.raises(InvalidTransition, match="final"):
        svc.rerun(db, team, bf, statuses=["COMPLETED"])
    other = svc.create(db, team, pipeline_id, svc.BackfillSpec(start="2025-01-01", end="2025-01-02"), start=True)
    svc.cancel(db, team, other)
    with pytest.raises(InvalidTransition, match="final"):
        svc.rerun(db, team, other, statuses=["CANCELLED"])
