"""The engine's correctness rules at the store level, one test per rule a mutation run
found unguarded: fencing on attempt and owner (success and failure paths), no claim
from a cancelled or paused backfill, fair share across claim calls, cancel of queued
runs. Each test fails against the mutant ``make mutants`` names next to it."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from tests.store.test_queue import T0, claim, make, record, row

from backfill.domain.model import BackfillStatus, RunStatus
from backfill.services import backfills as svc
from backfill.services.actor import Actor
from backfill.store import backfills as store
from backfill.store import queue
from backfill.store.db import Database
from backfill.store.tables import interval_runs


def run_row(db: Database, run_id: int) -> dict[str, object]:
    with db.read() as conn:
        return dict(conn.execute(select(interval_runs).where(interval_runs.c.id == run_id)).mappings().one())


def runs_by_status(db: Database, backfill_id: int) -> dict[str, int]:
    with db.read() as conn:
        q = (
            select(interval_runs.c.status, func.count())
            .where(interval_runs.c.backfill_id == backfill_id)
            .group_by(interval_runs.c.status)
        )
        return {str(s): int(n) for s, n in conn.execute(q).all()}


Reclaimed = tuple[int, queue.ClaimedRun, queue.ClaimedRun]


def reclaimed_by_same_owner(db: Database, team: Actor, pipeline_id: int) -> Reclaimed:
    """One interval whose attempt 1 (worker w1) lost its lease and whose attempt 2 went
    to the same worker w1 again: only the attempt tells the two apart."""
    bf = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-01", retries=3, retry_delay_seconds=0)
    (old,) = claim(db, owner="w1", lease=10)
    with db.write() as conn:
        assert queue.expire_leases(conn, T0 + timedelta(seconds=11)) == [old.key]
    (new,) = claim(db, owner="w1", now=T0 + timedelta(seconds=12))
    assert (new.run_id, new.attempt) == (old.run_id, old.attempt + 1)
    return bf, old, new


# mutant: fence-success-attempt
def test_stale_attempt_success_of_the_same_owner_is_refused(db: Database, team: Actor, pipeline_id: int) -> None:
    bf, old, new = reclaimed_by_same_owner(db, team, pipeline_id)
    assert not record(db, old, owner="w1", now=T0 + timedelta(seconds=13))
    assert run_row(db, new.run_id)["status"] == RunStatus.RUNNING.value
    assert row(db, bf)["runs_completed"] == 0
    assert record(db, new, owner="w1", now=T0 + timedelta(seconds=14))
    assert row(db, bf)["status"] == BackfillStatus.COMPLETED.value


# mutant: fence-failure-attempt
def test_stale_attempt_failure_of_the_same_owner_is_refused(db: Database, team: Actor, pipeline_id: int) -> None:
    bf, old, new = reclaimed_by_same_owner(db, team, pipeline_id)
    assert not record(db, old, ok=False, owner="w1", error="late", now=T0 + timedelta(seconds=13))
    current = run_row(db, new.run_id)
    assert (current["status"], current["attempt"]) == (RunStatus.RUNNING.value, 2)
    assert current["error"] != "late"
    assert row(db, bf)["runs_running"] == 1


# mutant: fence-failure-owner
def test_failure_reported_by_a_worker_that_never_held_the_run_is_refused(
    db: Database, team: Actor, pipeline_id: int
) -> None:
    bf = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-01", retries=0)
    (run,) = claim(db, owner="w1")
    assert not record(db, run, ok=False, owner="w2", error="not mine")
    assert run_row(db, run.run_id)["status"] == RunStatus.RUNNING.value
    assert row(db, bf)["status"] == BackfillStatus.RUNNING.value
    assert record(db, run, owner="w1")
    assert row(db, bf)["status"] == BackfillStatus.COMPLETED.value


# mutant: fence-success-owner
def test_success_reported_by_a_worker_that_never_held_the_run_is_refused(
    db: Database, team: Actor, pipeline_id: int
) -> None:
    bf = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-01")
    (run,) = claim(db, owner="w1")
    assert not record(db, run, owner="w2")
    assert row(db, bf)["runs_completed"] == 0


# mutant: claim-cancelled
def test_no_run_of_a_cancelled_backfill_is_claimed(db: Database, team: Actor, pipeline_id: int) -> None:
    """Even with queued runs and intervals left to materialize (a cancel racing a claim
    leaves exactly this state on PostgreSQL if the status filter were missing)."""
    bf = make(db, team, pipeline_id, start="2024-01-01", end="2024-12-31", max_active_runs=2)
    first = claim(db, n=2)
    for run in first:
        assert record(db, run)
    with db.read() as conn:
        assert queue.recount(conn, bf).queued > 0  # materialized ahead, still queued
    with db.write() as conn:
        store.update_backfill(conn, bf, status=BackfillStatus.CANCELLED.value)
    assert claim(db, n=5) == []
    assert row(db, bf)["runs_running"] == 0


# mutant: claim-paused
def test_no_run_of_a_paused_backfill_is_claimed_with_runs_queued(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = make(db, team, pipeline_id, start="2024-01-01", end="2024-12-31", max_active_runs=2)
    for run in claim(db, n=2):
        assert record(db, run)
    svc.set_paused(db, team, bf, True)
    assert claim(db, n=5) == []
    svc.set_paused(db, team, bf, False)
    assert len(claim(db, n=5)) == 2


# mutant: fair-share-across-calls
def test_fair_share_holds_across_claim_calls(db: Database, team: Actor, pipeline_id: int) -> None:
    """One slot at a time (a worker whose runs finish one by one), same clock reading
    every time: the backfills take turns, least recently claimed first — the lowest id
    does not win every call."""
    a = make(db, team, pipeline_id, start="2020-01-01", end="2020-12-31", max_active_runs=50)
    b = make(db, team, pipeline_id, start="2021-01-01", end="2021-12-31", max_active_runs=50)
    served = [claim(db, owner=f"w{i % 3}", n=1)[0].backfill_id for i in range(6)]
    assert served == [a, b, a, b, a, b]
    c = make(db, team, pipeline_id, start="2022-01-01", end="2022-12-31", max_active_runs=50)
    later = T0 + timedelta(seconds=1)
    served = [r.backfill_id for _ in range(3) for r in claim(db, n=1, now=later)]
    assert served == [c, a, b]  # a new backfill is served first, then the rotation goes on


# mutant: cancel-queued
def test_cancel_cancels_every_queued_run(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = make(db, team, pipeline_id, start="2024-01-01", end="2024-12-31", max_active_runs=2)
    running = claim(db, n=2)
    before = row(db, bf)
    queued = int(before["runs_created"]) - 2  # type: ignore[call-overload]
    assert queued > 0
    svc.cancel(db, team, bf)
    assert runs_by_status(db, bf) == {RunStatus.RUNNING.value: 2, RunStatus.CANCELLED.value: queued}
    assert row(db, bf)["runs_cancelled"] == queued
    for run in running:
        assert record(db, run)
    assert runs_by_status(db, bf) == {RunStatus.COMPLETED.value: 2, RunStatus.CANCELLED.value: queued}
