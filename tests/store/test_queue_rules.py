"""The engine's correctness rules at the store level, one test per rule a mutation run
found unguarded: fencing on attempt and owner (success and failure paths), no claim
from a cancelled or paused backfill, fair share across claim calls, cancel of queued
runs. Each test fails against the mutant ``make mutants`` names next to it."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select
from tests.store.test_queue import T0, claim, make, record, row

from backfill.domain import transitions
from backfill.domain.errors import InvalidTransition
from backfill.domain.model import BackfillStatus, RunStatus
from backfill.services import backfills as svc
from backfill.services.actor import Actor
from backfill.store import backfills as store
from backfill.store import queue
from backfill.store.db import Database
from backfill.store.tables import backfills, interval_runs, run_logs


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
    with db.write() as conn:  # runs materialized, still queued
        assert queue.materialize(conn, store.get(conn, bf), 4, T0) == 4
    with db.write() as conn:
        store.update_backfill(conn, bf, status=BackfillStatus.CANCELLED.value)
    assert claim(db, n=5) == []
    assert RunStatus.RUNNING.value not in runs_by_status(db, bf)


# mutant: claim-paused
def test_no_run_of_a_paused_backfill_is_claimed_with_runs_queued(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = make(db, team, pipeline_id, start="2024-01-01", end="2024-12-31", max_active_runs=2)
    for run in claim(db, n=2):
        assert record(db, run)
    with db.write() as conn:
        assert queue.materialize(conn, store.get(conn, bf), 4, T0) == 4
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
    with db.write() as conn:
        assert queue.materialize(conn, store.get(conn, bf), 5, T0) == 5
    before = row(db, bf)
    queued = int(before["runs_created"]) - 2
    assert queued == 5
    svc.cancel(db, team, bf)
    assert runs_by_status(db, bf) == {RunStatus.RUNNING.value: 2, RunStatus.CANCELLED.value: queued}
    after = row(db, bf)  # the cancelled counter also counts the intervals never materialized
    assert after["runs_cancelled"] == after["runs_total"] - 2
    for run in running:
        assert record(db, run)
    assert runs_by_status(db, bf) == {RunStatus.COMPLETED.value: 2, RunStatus.CANCELLED.value: queued}


# ---- the batched hot path keeps the rules ---------------------------------------------


def test_record_many_fences_each_run_and_moves_counters_once(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-04", max_active_runs=4, retries=1)
    runs = claim(db, owner="w1", n=4)
    assert len(runs) == 4
    ok = queue.AttemptResult(ok=True, rows=3, duration=0.5)
    stale = queue.RunKey(runs[2].run_id, runs[2].attempt + 1)  # an attempt that does not exist
    finished = [
        (runs[0].key, ok),
        (runs[1].key, queue.AttemptResult(ok=False, error="boom")),
        (stale, ok),
        (runs[3].key, ok),
    ]
    with db.write() as conn:
        recorded = queue.record_many(conn, "w1", finished, T0)
    assert recorded == {runs[0].key, runs[1].key, runs[3].key}
    r = row(db, bf)
    assert (r["runs_completed"], r["runs_running"], r["rows_total"]) == (2, 1, 6)
    assert r["duration_total"] == 1.0
    assert runs_by_status(db, bf) == {"completed": 2, "queued": 1, "running": 1}  # the failure is retried
    with db.write() as conn:
        assert queue.record_many(conn, "w2", [(runs[2].key, ok)], T0) == set()  # not its run
        assert queue.record_many(conn, "w1", [(runs[2].key, ok)], T0) == {runs[2].key}


def test_record_many_refuses_a_run_twice_in_one_batch(db: Database, team: Actor, pipeline_id: int) -> None:
    make(db, team, pipeline_id, start="2024-01-01", end="2024-01-01")
    (run,) = claim(db)
    ok = queue.AttemptResult(ok=True)
    with db.write() as conn, pytest.raises(ValueError, match="twice"):
        queue.record_many(conn, "w1", [(run.key, ok), (run.key, ok)], T0)


def test_a_batched_claim_deals_slots_over_backfills_within_their_room(
    db: Database, team: Actor, pipeline_id: int
) -> None:
    a = make(db, team, pipeline_id, start="2020-01-01", end="2020-12-31", max_active_runs=2)
    b = make(db, team, pipeline_id, start="2021-01-01", end="2021-12-31", max_active_runs=50)
    c = make(db, team, pipeline_id, start="2022-01-01", end="2022-01-03", max_active_runs=50)
    runs = claim(db, n=12)
    by_backfill = {x: sum(1 for r in runs if r.backfill_id == x) for x in (a, b, c)}
    assert by_backfill == {a: 2, b: 7, c: 3}  # a at its max_active_runs, c has only 3 intervals
    assert len({r.run_id for r in runs}) == 12
    assert [row(db, x)["runs_running"] for x in (a, b, c)] == [2, 7, 3]
    assert claim(db, n=12, owner="w2", now=T0 + timedelta(seconds=1))  # b still has room
    assert row(db, a)["runs_running"] == 2


def test_claimed_runs_come_in_run_order(db: Database, team: Actor, pipeline_id: int) -> None:
    make(db, team, pipeline_id, start="2024-01-01", end="2024-03-31", max_active_runs=40)
    first = claim(db, n=5)
    assert [r.interval_start.day for r in first] == [31, 30, 29, 28, 27]  # newest first (default)
    second = claim(db, n=50)  # 35: the rest of its max_active_runs
    starts = [r.interval_start for r in first + second]
    assert starts == sorted(starts, reverse=True) and len(set(starts)) == 40


# mutant: fence-heartbeat-owner
def test_a_heartbeat_of_another_worker_does_not_extend_the_lease(db: Database, team: Actor, pipeline_id: int) -> None:
    make(db, team, pipeline_id, start="2024-01-01", end="2024-01-01", retries=0)
    (run,) = claim(db, owner="w1", lease=10)
    with db.write() as conn:
        assert queue.heartbeat(conn, "w2", [run.key], lease_seconds=3600, now=T0 + timedelta(seconds=5)) == set()
    assert run_row(db, run.run_id)["lease_expires_at"] == T0 + timedelta(seconds=10)
    with db.write() as conn:
        assert queue.expire_leases(conn, T0 + timedelta(seconds=11)) == [run.key]


def test_the_statuses_the_queue_writes_come_from_the_transitions() -> None:
    assert transitions.run_succeed(RunStatus.RUNNING) is RunStatus.COMPLETED
    with pytest.raises(InvalidTransition, match="only running runs complete"):
        transitions.run_succeed(RunStatus.QUEUED)
    assert transitions.CLAIMABLE_BACKFILL_STATUSES == (BackfillStatus.SCHEDULED, BackfillStatus.RUNNING)
    assert queue.CLAIMABLE == ["scheduled", "running"]


def test_materialize_creates_queued_runs_nobody_holds(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-10", max_active_runs=10)
    with db.write() as conn:
        assert queue.materialize(conn, store.get(conn, bf), 4, T0) == 4
    assert runs_by_status(db, bf) == {RunStatus.QUEUED.value: 4}
    r = row(db, bf)
    assert (r["runs_created"], r["runs_running"], r["status"], r["exhausted"]) == (4, 0, "scheduled", False)
    assert sorted(x.interval_start.day for x in claim(db, n=10)) == list(range(1, 11))  # then the other 6


def test_a_mixed_batch_records_each_outcome_and_the_counters_match_a_recount(
    db: Database, team: Actor, pipeline_id: int
) -> None:
    """Completions, failures with a retry left, failures without, a stale attempt and
    another owner's run in ONE record_many: each is recorded (or refused) as on its own,
    over two backfills, and the counters equal ``queue.recount``."""
    retrying = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-04", max_active_runs=4, retries=1)
    final = make(db, team, pipeline_id, start="2025-01-01", end="2025-01-04", max_active_runs=4, retries=0)
    mine = claim(db, owner="w1", n=6)
    theirs = claim(db, owner="w2", n=2)
    by_bf = {b: [r for r in mine if r.backfill_id == b] for b in (retrying, final)}
    assert [len(v) for v in by_bf.values()] == [3, 3] and len(theirs) == 2
    (a_ok, a_fail, a_stale), (b_ok, b_fail, b_fail2) = by_bf[retrying], by_bf[final]
    blocks = [{"uuid": "main", "status": "completed", "rows": 4}]
    ok = queue.AttemptResult(ok=True, rows=4, duration=0.25, block_results=blocks, pipeline_version="v7")
    boom = queue.AttemptResult(ok=False, error="boom", rows=1, duration=0.5, pipeline_version="v7")
    batch = [
        (a_ok.key, ok),
        (a_fail.key, boom),  # retries left: queued again, with a delay
        (queue.RunKey(a_stale.run_id, a_stale.attempt + 1), ok),  # an attempt that is not the running one
        (b_ok.key, ok),
        (b_fail.key, boom),  # no retries: failed
        (b_fail2.key, queue.AttemptResult(ok=False, error="x" * (queue.ERROR_LIMIT + 5))),
        (theirs[0].key, boom),  # not w1's run
        (theirs[1].key, ok),
    ]
    with db.write() as conn:
        recorded = queue.record_many(conn, "w1", batch, T0)
    assert recorded == {a_ok.key, a_fail.key, b_ok.key, b_fail.key, b_fail2.key}
    done = run_row(db, a_ok.run_id)
    assert (done["status"], done["rows"], done["duration"], done["block_results"]) == ("completed", 4, 0.25, blocks)
    assert (done["pipeline_version"], done["lease_owner"], done["error"]) == ("v7", None, None)
    again = run_row(db, a_fail.run_id)
    assert (again["status"], again["error"], again["lease_owner"], again["pipeline_version"]) == (
        "queued",
        "boom",
        None,
        "v7",
    )
    not_before = again["not_before"]
    assert isinstance(not_before, datetime) and not_before > T0 and again["queued_at"] == T0
    failed = run_row(db, b_fail.run_id)
    assert (failed["status"], failed["error"], failed["not_before"], failed["ended_at"]) == ("failed", "boom", None, T0)
    assert len(str(run_row(db, b_fail2.run_id)["error"])) == queue.ERROR_LIMIT
    for untouched in (a_stale, theirs[0], theirs[1]):
        assert run_row(db, untouched.run_id)["status"] == "running"
    with db.read() as conn:
        for b in (retrying, final):
            assert queue.counts_of(row(db, b)) == queue.recount(conn, b)
        assert conn.execute(select(func.count()).select_from(run_logs)).scalar() == 3  # each failure's error
    r, f = row(db, retrying), row(db, final)
    assert (r["runs_completed"], r["runs_failed"], r["runs_running"], r["rows_total"]) == (
        1,
        0,
        2,
        4,
    )  # a stale one and w2's left
    assert (f["runs_completed"], f["runs_failed"], f["runs_running"], f["rows_total"]) == (1, 2, 1, 4)


def test_a_batch_of_stale_attempts_writes_nothing(db: Database, team: Actor, pipeline_id: int) -> None:
    """The fence refuses a whole batch of a worker that lost its leases: the runs were
    expired and claimed again (a newer attempt) — neither its successes nor its failures
    touch them or the counters."""
    bf = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-04", max_active_runs=4, retries=3)
    old = claim(db, owner="w1", n=4, lease=10)
    with db.write() as conn:
        assert len(queue.expire_leases(conn, T0 + timedelta(seconds=11))) == 4
    later = T0 + timedelta(hours=1)  # past the retry delay
    new = claim(db, owner="w2", n=4, now=later)
    assert {r.run_id for r in new} == {r.run_id for r in old} and all(r.attempt == 2 for r in new)
    before = row(db, bf)
    stale = [
        (r.key, queue.AttemptResult(ok=i % 2 == 0, error=None if i % 2 == 0 else "late")) for i, r in enumerate(old)
    ]
    with db.write() as conn:
        assert queue.record_many(conn, "w1", stale, later) == set()
        assert queue.record_many(conn, "w2", stale, later) == set()  # right owner, stale attempts
    assert row(db, bf) == before
    assert runs_by_status(db, bf) == {"running": 4}


def test_a_claim_that_skipped_a_locked_backfill_says_so(db: Database, team: Actor, pipeline_id: int) -> None:
    """PostgreSQL skips the backfill row another claimer holds: the claim comes back short
    and ``contended`` (the worker asks again soon instead of after its poll interval);
    short for want of work or room, it is not contended."""
    bf = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-02", max_active_runs=1)
    if db.is_postgres:  # SQLite serializes writers: no claim runs while another holds the lock
        with db.write() as holder:
            holder.execute(select(backfills.c.id).where(backfills.c.id == bf).with_for_update())
            with db.write() as conn:
                assert queue.claim_runs(conn, "w2", 4, lease_seconds=30, now=T0) == queue.Claim([], skipped=(bf,))
    with db.write() as conn:
        got = queue.claim_runs(conn, "w1", 4, lease_seconds=30, now=T0)
    assert len(got.runs) == 1 and not got.contended  # max_active_runs 1: no room, not contended
    with db.write() as conn:
        assert queue.claim_runs(conn, "w1", 4, lease_seconds=30, now=T0) == queue.Claim([])
    record(db, got.runs[0])
    (last,) = claim(db)
    record(db, last)
    with db.write() as conn:
        assert queue.claim_runs(conn, "w1", 4, lease_seconds=30, now=T0) == queue.Claim([])
