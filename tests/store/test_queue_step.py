"""A worker step (``queue.step``): record and claim in one transaction, one counter
update per backfill, and the lock order every writer keeps (backfill rows, then runs)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, text
from tests.factories import add_pipeline, python_pipeline
from tests.store.test_queue import T0, claim, make, row

from backfill.services.actor import Actor
from backfill.store import backfills as store
from backfill.store import queue
from backfill.store.db import Database
from backfill.store.tables import backfills, interval_runs

OK = queue.AttemptResult(ok=True, rows=2, duration=0.25)


def finish(run: queue.ClaimedRun, result: queue.AttemptResult = OK) -> queue.Finish:
    return queue.Finish(run.key, run.backfill_id, result)


@contextmanager
def statements(db: Database, head: str) -> Iterator[list[str]]:
    """The statements starting with ``head`` (upper case) run meanwhile."""
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith(head):
            seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", before)


def backfill_updates(db: Database) -> Any:
    """The UPDATE statements of the ``backfills`` table run meanwhile."""
    return statements(db, "UPDATE BACKFILLS")


def lock_waits(db: Database) -> int:
    """Sessions waiting for a lock now (a fresh transaction: the activity view is read
    once per transaction)."""
    with db.read() as conn:
        waits = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        return int(conn.execute(waits).scalar_one())


def test_a_step_records_claims_and_moves_each_backfill_once(db: Database, team: Actor, pipeline_id: int) -> None:
    a = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-10", max_active_runs=2)
    b = make(db, team, pipeline_id, start="2025-01-01", end="2025-01-10", max_active_runs=2)
    held = claim(db, owner="w1", n=4)
    assert {r.backfill_id for r in held} == {a, b}
    one_of_a = next(r for r in held if r.backfill_id == a)
    one_of_b = next(r for r in held if r.backfill_id == b)
    failed = queue.AttemptResult(ok=False, error="boom")  # no retries: final
    with backfill_updates(db) as updates, db.write() as conn:
        step = queue.step(conn, "w1", [finish(one_of_a), finish(one_of_b, failed)], 2, lease_seconds=30, now=T0)
    assert step.recorded == {one_of_a.key, one_of_b.key}
    assert len(step.claim.runs) == 2
    # both backfills had a run recorded and runs claimed: one counter update each, both
    # in one statement on PostgreSQL
    assert len(updates) == (1 if db.is_postgres else 2), updates
    for bf in (a, b):
        r = row(db, bf)  # row() checks the counters against a recount of the runs
        assert r["runs_running"] == 2  # the freed slots were filled in the same step


def test_a_claim_creates_only_the_runs_it_takes(db: Database, team: Actor, pipeline_id: int) -> None:
    """No run is created ahead as queued (on PostgreSQL each would leave a dead entry in
    the queued part of the claim index once claimed, which every later take scans)."""
    bf = make(db, team, pipeline_id, start="2024-01-01", end="2024-04-09", max_active_runs=5)
    first = claim(db, owner="w1", n=3)
    assert [r.interval_start.day for r in first] == [9, 8, 7]  # newest first
    r = row(db, bf)
    assert (r["runs_created"], r["runs_running"], r["exhausted"]) == (3, 3, False)
    with db.read() as conn:
        statuses = conn.execute(select(interval_runs.c.status).where(interval_runs.c.backfill_id == bf)).scalars()
        assert set(statuses) == {"running"}
    more = claim(db, owner="w1", n=4)
    assert [r.interval_start.day for r in more] == [6, 5]  # max_active_runs left room for 2
    assert row(db, bf)["runs_created"] == 5


def test_the_last_runs_created_mark_the_backfill_exhausted(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-03", max_active_runs=5)
    assert len(claim(db, owner="w1", n=2)) == 2
    assert row(db, bf)["exhausted"] is False  # one interval is left
    assert len(claim(db, owner="w1", n=1)) == 1
    r = row(db, bf)
    assert (r["runs_created"], r["exhausted"]) == (3, True)
    assert claim(db, owner="w1", n=1) == []


def test_new_runs_of_several_backfills_are_one_insert(db: Database, team: Actor, pipeline_id: int) -> None:
    ids = [make(db, team, pipeline_id, start=f"202{i}-01-01", end=f"202{i}-01-31", max_active_runs=2) for i in range(3)]
    with statements(db, "INSERT INTO INTERVAL_RUNS") as inserts:
        runs = claim(db, owner="w1", n=6)
    assert sorted(r.backfill_id for r in runs) == sorted(ids * 2)
    assert len(inserts) == 1, inserts
    for bf in ids:
        assert row(db, bf)["runs_created"] == 2  # row() also checks the counters against the runs


def test_new_runs_of_backfills_with_the_same_intervals_each_get_their_own(
    db: Database, team: Actor, pipeline_id: int
) -> None:
    """One insert creates the same intervals for two backfills (of two pipelines): every
    claimed run is the row of its own backfill and interval (SQLite matches the new ids
    back by both)."""
    other = add_pipeline(db, team, python_pipeline("other"))
    a, b = (make(db, team, p, start="2024-01-01", end="2024-01-31", max_active_runs=2) for p in (pipeline_id, other))
    with statements(db, "INSERT INTO INTERVAL_RUNS") as inserts:
        runs = claim(db, owner="w1", n=4)
    assert len(inserts) == 1, inserts
    with db.read() as conn:
        stored = {
            r.id: (r.backfill_id, r.interval_start, r.interval_end)
            for r in conn.execute(
                select(
                    interval_runs.c.id,
                    interval_runs.c.backfill_id,
                    interval_runs.c.interval_start,
                    interval_runs.c.interval_end,
                )
            )
        }
    assert {r.run_id: (r.backfill_id, r.interval_start, r.interval_end) for r in runs} == stored
    starts = {bf: sorted(r.interval_start for r in runs if r.backfill_id == bf) for bf in (a, b)}
    assert starts[a] == starts[b] and len(set(starts[a])) == 2  # the same two intervals, a run each


def test_a_step_that_claims_nothing_still_moves_the_counters(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-02", max_active_runs=2)
    runs = claim(db, owner="w1", n=2)
    with db.write() as conn:
        step = queue.step(conn, "w1", [finish(r) for r in runs], 0, lease_seconds=30, now=T0)
    assert step.recorded == {r.key for r in runs}
    assert step.claim == queue.Claim([])
    r = row(db, bf)
    assert (r["status"], r["runs_completed"], r["runs_running"], r["rows_total"]) == ("completed", 2, 0, 4)


def test_a_step_refuses_a_run_twice(db: Database, team: Actor, pipeline_id: int) -> None:
    make(db, team, pipeline_id, start="2024-01-01", end="2024-01-01")
    (run,) = claim(db, owner="w1")
    with db.write() as conn, pytest.raises(ValueError, match="twice"):
        queue.step(conn, "w1", [finish(run), finish(run)], 1, lease_seconds=30, now=T0)


def test_a_slot_freed_at_max_active_runs_goes_to_the_same_backfill(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-10", max_active_runs=1)
    (first,) = claim(db, owner="w1", n=4)
    with db.write() as conn:
        step = queue.step(conn, "w1", [finish(first)], 4, lease_seconds=30, now=T0)
    assert [r.backfill_id for r in step.claim.runs] == [bf]  # room counted after the record
    assert row(db, bf)["runs_running"] == 1


def test_a_step_locks_the_backfill_row_before_the_run_rows(db: Database, team: Actor, pipeline_id: int) -> None:
    """While a user's transaction holds a backfill row (as a rerun or cancel does before
    it touches its runs), a worker step recording a run of it waits without having locked
    that run: the two take rows in the same order, so they cannot deadlock."""
    if not db.is_postgres:
        pytest.skip("PostgreSQL only: SQLite has no row locks (writers are serialized)")
    bf = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-01")
    (run,) = claim(db, owner="w1")
    done = threading.Event()
    errors: list[BaseException] = []

    def worker_step() -> None:
        try:
            with db.write() as conn:
                queue.step(conn, "w1", [finish(run)], 1, lease_seconds=30, now=T0)
        except BaseException as exc:  # reported by the test below
            errors.append(exc)
        finally:
            done.set()

    with db.engine.connect() as user:
        tx = user.begin()
        user.execute(select(backfills.c.id).where(backfills.c.id == bf).with_for_update())
        thread = threading.Thread(target=worker_step, daemon=True)
        thread.start()
        waiting = 0
        for _ in range(200):  # until the step waits on our lock
            waiting = lock_waits(db)
            if waiting:
                break
            time.sleep(0.02)
        assert waiting, "the step did not wait for the backfill row"
        assert not done.is_set()
        # the run row is free: the step has not touched it before taking the backfill row
        user.execute(text("SET LOCAL lock_timeout = '1s'"))
        locked = user.execute(
            select(interval_runs.c.id).where(interval_runs.c.id == run.run_id).with_for_update(nowait=True)
        ).scalar_one()
        assert locked == run.run_id
        tx.rollback()
    assert done.wait(30)
    thread.join(5)
    assert not errors, errors
    assert row(db, bf)["runs_completed"] == 1


def test_queued_runs_of_several_backfills_are_taken_in_each_ones_run_order(
    db: Database, team: Actor, pipeline_id: int
) -> None:
    """One claim over backfills that all have queued runs (PostgreSQL takes them in one
    statement): each gives its share in its own run order, and a run waiting for its
    retry delay is not taken."""
    newest = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-31", max_active_runs=3)
    oldest = make(
        db, team, pipeline_id, start="2025-01-01", end="2025-01-31", max_active_runs=3, run_order="oldest_first"
    )
    first = claim(db, owner="w1", n=2)
    assert {r.backfill_id for r in first} == {newest, oldest}
    with db.write() as conn:  # the next runs of each, queued
        for bf in (newest, oldest):
            assert queue.materialize(conn, store.get(conn, bf), 8, T0) == 8
    with db.write() as conn:  # the next oldest run of `oldest` waits an hour for a retry
        waiting = conn.execute(
            select(interval_runs.c.id)
            .where(interval_runs.c.backfill_id == oldest, interval_runs.c.status == "queued")
            .order_by(interval_runs.c.interval_start)
            .limit(1)
        ).scalar_one()
        conn.execute(
            interval_runs.update().where(interval_runs.c.id == waiting).values(not_before=T0 + timedelta(hours=1))
        )
    runs = claim(db, owner="w1", n=4)
    starts = {bf: sorted(r.interval_start.day for r in runs if r.backfill_id == bf) for bf in (newest, oldest)}
    assert starts == {newest: [29, 30], oldest: [3, 4]}  # day 31 and day 1 went first; day 2 waits
    assert waiting not in {r.run_id for r in runs}
    for bf in (newest, oldest):
        assert row(db, bf)["runs_running"] == 3


def test_a_step_waits_for_the_rows_its_last_claim_skipped(db: Database, team: Actor, pipeline_id: int) -> None:
    """The claim skips a backfill row another worker holds and names it (``skipped``); the
    next step waits for that row instead of skipping it again, and gets its runs."""
    if not db.is_postgres:
        pytest.skip("PostgreSQL only: SQLite has no row locks (writers are serialized)")
    bf = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-04", max_active_runs=4)
    got: list[queue.Step] = []

    def next_step(skipped: tuple[int, ...]) -> None:
        with db.write() as conn:
            got.append(queue.step(conn, "w2", [], 4, lease_seconds=30, now=T0, wait_for=skipped))

    with db.write() as holder:
        holder.execute(select(backfills.c.id).where(backfills.c.id == bf).with_for_update())
        with db.write() as conn:
            short = queue.step(conn, "w2", [], 4, lease_seconds=30, now=T0)
        assert short.claim == queue.Claim([], skipped=(bf,))
        thread = threading.Thread(target=next_step, args=(short.claim.skipped,), daemon=True)
        thread.start()
        for _ in range(200):
            if lock_waits(db):
                break
            time.sleep(0.02)
        assert lock_waits(db) == 1, "the step did not wait for the skipped row"
    thread.join(30)
    assert [len(s.claim.runs) for s in got] == [4]
