"""How many SQL statements the worker's hot path costs per run (issue: batched engine).

A worker at concurrency 8 drains a backfill through its real ``step`` (record the
finished runs and claim into the free slots in one transaction), with an executor that
finishes every run at once, so each step records and claims a full batch — the steady
state of a busy worker, measured without a clock."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event
from tests.engine.instant_executor import InstantExecutor
from tests.store.test_queue import make, row

from backfill.engine.worker import Worker, WorkerSettings
from backfill.services.actor import Actor
from backfill.store.db import Database

CONCURRENCY = 8
# Budget, amortized per run (SQLAlchemy cursor executions; BEGIN/COMMIT are counted
# apart, as transactions): a step of 8 finished + 8 claimed runs is one ``queue.step``:
# 1 candidate read (which first locks the backfill rows of the finished runs), 1 batched
# completion, 1 batched claim (the INSERT that creates the runs it takes, already claimed)
# and ONE counter update for what was recorded and claimed: 4 / 8 = 0.5 per
# run, measured 0.51 on SQLite and 0.52 on PostgreSQL (the one-run-at-a-time path:
# 4.18; two counter updates per step before ``queue.step``: 0.64; the extra 0.01 – 0.02:
# the drain's last steps, where a short claim on PostgreSQL also asks which locked
# backfill it skipped). BENCHMARKS.md has the figures.
STATEMENTS_PER_RUN = 0.6
TRANSACTIONS_PER_RUN = 0.2  # one per step of 8 runs (0.125) plus the heartbeat


@pytest.fixture
def statements(db: Database) -> Iterator[dict[str, int]]:
    counts = {"statements": 0, "transactions": 0}

    def on_execute(*_: Any) -> None:
        counts["statements"] += 1

    def on_commit(*_: Any) -> None:
        counts["transactions"] += 1

    event.listen(db.engine, "before_cursor_execute", on_execute)
    event.listen(db.engine, "commit", on_commit)
    yield counts
    event.remove(db.engine, "before_cursor_execute", on_execute)
    event.remove(db.engine, "commit", on_commit)


def test_statements_per_run_at_concurrency_8(
    db: Database, db_url: str, team: Actor, pipeline_id: int, statements: dict[str, int]
) -> None:
    runs = 480
    checker = Database(db_url)  # the test's own reads go through another engine: not counted
    bf = make(
        db,
        team,
        pipeline_id,
        start="2024-01-01T00:00:00",
        end="2024-01-20T23:00:00",
        interval_type="hour",
        max_active_runs=16,
    )
    assert row(db, bf)["runs_total"] == runs
    worker = Worker(db, WorkerSettings(concurrency=CONCURRENCY, lease_seconds=3600), owner="w-count")
    executor = InstantExecutor(CONCURRENCY)
    worker._executor = executor  # type: ignore[assignment]  # step() outside run(): no child processes
    worker._definition(pipeline_id)  # the pipeline read is cached for the whole drain: not the hot path
    before = dict(statements)
    steps = 0
    while row(checker, bf)["status"] != "completed":
        worker.step(claim=True)
        steps += 1
        assert steps < 4 * runs, "the backfill does not finish"
    measured = {k: statements[k] - before[k] for k in statements}
    done = row(checker, bf)
    checker.dispose()
    assert (done["runs_completed"], done["runs_running"]) == (runs, 0)
    assert sorted(executor.executed) == sorted(set(executor.executed)) and len(executor.executed) == runs
    per_run = measured["statements"] / runs
    print(f"{measured} over {runs} runs and {steps} steps: {per_run:.2f} statements per run")
    assert per_run <= STATEMENTS_PER_RUN, measured
    assert measured["transactions"] / runs <= TRANSACTIONS_PER_RUN, measured
