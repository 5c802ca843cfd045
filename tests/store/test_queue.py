"""The queue SQL: lazy materialization, claims with leases, fencing, expiry, cancel, retry.

Runs on SQLite and, with BACKFILL_TEST_DATABASE_URL, on PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from backfill.domain.errors import Conflict
from backfill.domain.model import BackfillStatus, RunStatus
from backfill.services import backfills as svc
from backfill.services.actor import Actor
from backfill.store import backfills as store
from backfill.store import queue
from backfill.store import runs as runs_store
from backfill.store.db import Database
from backfill.store.tables import interval_runs

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def make(db: Database, actor: Actor, pipeline_id: int, **kw: object) -> int:
    spec = svc.BackfillSpec(start=str(kw.pop("start", "2024-01-01")), end=str(kw.pop("end", "2024-01-10")), **kw)  # type: ignore[arg-type]
    return svc.create(db, actor, pipeline_id, spec, start=True)


def claim(
    db: Database, owner: str = "w1", n: int = 10, now: datetime = T0, lease: float = 30
) -> list[queue.ClaimedRun]:
    with db.write() as conn:
        return queue.claim(conn, owner, n, lease_seconds=lease, now=now)


def record(
    db: Database,
    run: queue.ClaimedRun,
    ok: bool = True,
    owner: str = "w1",
    now: datetime = T0,
    error: str | None = None,
) -> bool:
    with db.write() as conn:
        return queue.record_attempt(conn, run.key, owner, queue.AttemptResult(ok=ok, error=error, rows=2), now)


def row(db: Database, backfill_id: int) -> dict[str, Any]:
    with db.read() as conn:
        r = dict(store.get(conn, backfill_id))
        counts = queue.recount(conn, backfill_id)
    # counters are exact at every read: always equal to a recount of the runs, plus, once
    # cancelled, the intervals never materialized (they will not run because of the cancel)
    if r["status"] == "cancelled" and r["runs_created"] != r["runs_total"]:
        unmaterialized = int(r["runs_total"]) - int(r["runs_created"])
        counts = replace(counts, cancelled=counts.cancelled + unmaterialized)
    assert (
        r["runs_created"],
        r["runs_completed"],
        r["runs_failed"],
        r["runs_cancelled"],
        r["runs_running"],
    ) == (
        counts.created,
        counts.completed,
        counts.failed,
        counts.cancelled,
        counts.running,
    )
    return r


def test_claim_respects_max_active_runs_and_completes(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = make(db, team, pipeline_id, max_active_runs=2)
    assert row(db, bf)["status"] == "scheduled"
    assert row(db, bf)["runs_total"] == 10
    first = claim(db, n=5)
    assert len(first) == 2
    assert row(db, bf)["status"] == "running"
    assert claim(db, n=5) == []
    done = 0
    while True:
        runs = first or claim(db, n=5)
        first = []
        if not runs:
            break
        for r in runs:
            assert record(db, r)
            done += 1
    assert done == 10
    final = row(db, bf)
    assert final["status"] == "completed"
    assert final["runs_completed"] == 10
    assert final["rows_total"] == 20
    assert final["completed_at"] is not None


def test_newest_first_and_oldest_first(db: Database, team: Actor, pipeline_id: int) -> None:
    a = make(db, team, pipeline_id, max_active_runs=1)
    (r,) = claim(db)
    assert r.backfill_id == a and r.interval_start == datetime(2024, 1, 10, tzinfo=UTC)
    svc.cancel(db, team, a)
    b = make(
        db,
        team,
        pipeline_id,
        start="2025-01-01",
        end="2025-01-05",
        max_active_runs=1,
        run_order="oldest_first",
    )
    (r,) = claim(db)
    assert r.backfill_id == b and r.interval_start == datetime(2025, 1, 1, tzinfo=UTC)
    assert r.interval_end == datetime(2025, 1, 2, tzinfo=UTC)


def test_materialization_is_lazy(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = make(db, team, pipeline_id, start="2015-01-01T00:00:00", end="2024-12-31T23:00:00", interval_type="hour")
    r = row(db, bf)
    assert r["runs_total"] == 87_672
    assert r["runs_created"] == 0
    claim(db, n=4)
    created = row(db, bf)["runs_created"]
    assert 4 <= created <= 64


def test_fair_share_between_backfills(db: Database, team: Actor, pipeline_id: int) -> None:
    big = make(db, team, pipeline_id, start="2020-01-01", end="2020-12-31", max_active_runs=50)
    small = make(db, team, pipeline_id, start="2021-01-01", end="2021-01-05", max_active_runs=50)
    runs = claim(db, n=6)
    assert sorted(r.backfill_id for r in runs) == sorted([big, small] * 3)


def test_fenced_write_after_lease_lost(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-01", retries=2)
    (old,) = claim(db, owner="w1", lease=10)
    with db.write() as conn:
        expired = queue.expire_leases(conn, T0 + timedelta(seconds=11))
    assert expired == [old.key]
    # backoff: not claimable before its delay, then attempt 2 goes to another worker
    assert claim(db, owner="w2", now=T0 + timedelta(seconds=11)) == []
    (new,) = claim(db, owner="w2", now=T0 + timedelta(hours=2))
    assert new.run_id == old.run_id and new.attempt == old.attempt + 1
    # the lost worker comes back with its result: refused, nothing written
    assert not record(db, old, owner="w1", now=T0 + timedelta(hours=2))
    assert not record(db, new, owner="w1", now=T0 + timedelta(hours=2))
    with db.write() as conn:
        assert queue.heartbeat(conn, "w1", [old.key], lease_seconds=30, now=T0) == set()
        assert queue.heartbeat(conn, "w2", [new.key], lease_seconds=30, now=T0) == {new.key}
    assert row(db, bf)["runs_running"] == 1
    assert record(db, new, owner="w2", now=T0 + timedelta(hours=2))
    assert row(db, bf)["status"] == "completed"


def test_expiry_without_retries_fails_clearly(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-01", retries=0)
    claim(db, owner="w1", lease=5)
    with db.write() as conn:
        queue.expire_leases(conn, T0 + timedelta(seconds=6))
    r = row(db, bf)
    assert r["status"] == "failed"
    with db.read() as conn:
        (entry,) = store.error_report(conn, bf)
    assert "w1 stopped renewing its lease" in entry["error"]


def test_cancel_cancels_queued_keeps_running(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = make(db, team, pipeline_id, max_active_runs=2)
    running = claim(db, n=2)
    svc.cancel(db, team, bf)
    r = row(db, bf)
    assert r["status"] == "cancelled"
    assert r["runs_running"] == 2
    assert r["removed_at"] is not None and r["removed_user_id"] == team.user_id and r["completed_at"] is not None
    assert claim(db, n=5) == []  # nothing starts after the cancel
    for run in running:
        assert record(db, run)  # running ones finish and are recorded
    r = row(db, bf)
    assert (r["status"], r["runs_completed"], r["runs_running"]) == ("cancelled", 2, 0)
    assert r["runs_completed"] + r["runs_failed"] + r["runs_cancelled"] == r["runs_total"] == 10


@pytest.mark.parametrize("total", [31, 1_000_000])
def test_cancel_counts_every_interval_that_will_not_run(
    db: Database, team: Actor, pipeline_id: int, total: int
) -> None:
    """docs/api.md: the cancelled counter counts every interval that will not run because of
    the cancel, materialized as a run or not: completed + failed + cancelled = total."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    end = start + timedelta(minutes=total - 1)
    spec = svc.BackfillSpec(start=start, end=end, interval_type="minute", max_active_runs=3, retries=0)
    bf = svc.create(db, team, pipeline_id, spec, start=True)
    assert row(db, bf)["runs_total"] == total
    first = claim(db, n=3)
    assert row(db, bf)["runs_created"] == 3  # a claim creates the runs it takes, no more
    with db.write() as conn:  # queued runs nobody claimed yet: cancelled as runs
        assert queue.materialize(conn, store.get(conn, bf), 10, T0) == 10
    record(db, first[0])
    record(db, first[1], ok=False, error="boom")
    running = first[2]
    svc.cancel(db, team, bf)
    r = row(db, bf)
    assert (r["status"], r["runs_completed"], r["runs_failed"], r["runs_running"]) == ("cancelled", 1, 1, 1)
    # 10 of the cancelled ones were runs; the rest never became runs
    assert r["runs_created"] == 13
    assert r["runs_cancelled"] == total - 3
    assert claim(db, n=5) == []
    assert record(db, running)  # the running one finishes and is recorded
    r = row(db, bf)
    assert (r["runs_completed"], r["runs_failed"], r["runs_cancelled"], r["runs_running"]) == (2, 1, total - 3, 0)
    assert r["runs_completed"] + r["runs_failed"] + r["runs_cancelled"] == r["runs_total"]
    with db.read() as conn:
        totals = runs_store.status_totals(conn)
    assert totals.runs["queued"] == 0 and totals.queue_depth == 0


def test_cancel_while_not_started(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = svc.create(db, team, pipeline_id, svc.BackfillSpec(start="2024-01-01", end="2024-01-03"), start=False)
    assert row(db, bf)["status"] == "created"
    svc.cancel(db, team, bf)
    assert row(db, bf)["status"] == "cancelled"


def test_retry_requeues_only_failed(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-04", max_active_runs=4)
    runs = claim(db, n=4)
    failing = {runs[0].run_id, runs[2].run_id}
    for r in runs:
        record(db, r, ok=r.run_id not in failing, error="boom")
    after = row(db, bf)
    assert (after["status"], after["runs_failed"], after["runs_completed"]) == ("failed", 2, 2)
    assert after["failed_at"] is not None
    assert svc.retry(db, team, bf) == 2
    assert row(db, bf)["status"] == "scheduled"
    again = claim(db, n=4)
    assert {x.run_id for x in again} == failing
    for x in again:
        record(db, x)
    assert row(db, bf)["status"] == "completed"
    with db.read() as conn:
        attempts = dict(conn.execute(select(interval_runs.c.id, interval_runs.c.attempt)).all())
    assert {k for k, v in attempts.items() if v == 2} == failing
    assert {k for k, v in attempts.items() if v == 1} == {x.run_id for x in runs} - failing


def test_overlap_is_a_conflict_naming_the_other(db: Database, team: Actor, pipeline_id: int) -> None:
    first = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-10")
    with pytest.raises(Conflict) as info:
        make(db, team, pipeline_id, start="2024-01-10", end="2024-01-20")
    assert f"backfill {first}" in info.value.message
    make(db, team, pipeline_id, start="2024-01-11", end="2024-01-20")  # adjacent is fine


def test_reprocess_failed_skips_completed_intervals(db: Database, team: Actor, pipeline_id: int) -> None:
    first = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-03", max_active_runs=3)
    for r in claim(db, n=3):
        record(db, r, ok=r.interval_start != datetime(2024, 1, 2, tzinfo=UTC))
    svc.cancel(db, team, first)
    second = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-05", reprocess="failed", max_active_runs=5)
    assert row(db, second)["runs_total"] == 3
    starts = sorted(r.interval_start.day for r in claim(db, n=10))
    assert starts == [2, 4, 5]


def test_reprocess_missing_with_everything_done_completes_at_once(db: Database, team: Actor, pipeline_id: int) -> None:
    first = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-02")
    for r in claim(db, n=2):
        record(db, r)
    assert row(db, first)["status"] == "completed"
    again = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-02", reprocess="missing")
    assert row(db, again)["status"] == "completed"
    assert row(db, again)["runs_total"] == 0


def test_pause_stops_claims(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = make(db, team, pipeline_id)
    svc.set_paused(db, team, bf, True)
    assert claim(db) == []
    svc.set_paused(db, team, bf, False)
    assert len(claim(db)) == 4


def test_failed_attempt_is_retried_with_backoff(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-01", retries=1, retry_delay_seconds=60)
    (r,) = claim(db)
    record(db, r, ok=False, error="first try")
    assert row(db, bf)["status"] == "running"
    assert claim(db, now=T0 + timedelta(seconds=30)) == []
    (r2,) = claim(db, now=T0 + timedelta(seconds=61))
    assert r2.attempt == 2 and r2.tries == 2
    record(db, r2, ok=False, error="second try", now=T0 + timedelta(seconds=62))
    assert row(db, bf)["status"] == "failed"
    with db.read() as conn:
        run = conn.execute(select(interval_runs).where(interval_runs.c.id == r.run_id)).mappings().one()
    assert run["status"] == RunStatus.FAILED.value and run["error"] == "second try"
    assert BackfillStatus(row(db, bf)["status"]) is BackfillStatus.FAILED
