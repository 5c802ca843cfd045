"""A worker whose claim skipped a backfill row another worker held (PostgreSQL, SKIP
LOCKED) asks again soon instead of after its poll interval — a bounded number of times
in a row — and claims once the row is free."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from tests.databases import PG_URL
from tests.engine.instant_executor import InstantExecutor
from tests.store.test_queue import make

from backfill.engine.worker import CONTENDED_RETRIES, CONTENDED_RETRY_SECONDS, Worker, WorkerSettings
from backfill.services.actor import Actor
from backfill.store.db import Database
from backfill.store.tables import backfills

pytestmark = pytest.mark.skipif(not PG_URL, reason="PostgreSQL only: SQLite serializes writers, nothing is skipped")


def test_a_contended_claim_is_retried_soon_a_bounded_number_of_times(
    db: Database, team: Actor, pipeline_id: int
) -> None:
    bf = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-10", max_active_runs=4)
    worker = Worker(db, WorkerSettings(concurrency=2, lease_seconds=3600, poll_seconds=30.0), owner="w-busy")
    executor = InstantExecutor(2)
    worker._executor = executor  # type: ignore[assignment]  # step() outside run(): no child processes
    worker.step(claim=True)  # start-up: re-queues dead owners' runs, claims 2
    assert len(executor.submitted) == 2
    executor.submitted.clear()  # still running as far as the worker knows; 2 slots free again
    with db.write() as holder:  # another worker's step holds the backfill row
        holder.execute(select(backfills.c.id).where(backfills.c.id == bf).with_for_update())
        for _ in range(CONTENDED_RETRIES):
            worker._next_claim_at = 0.0
            assert worker.step(claim=True) == 0
            assert worker._idle_wait() <= CONTENDED_RETRY_SECONDS  # asks again soon, not in 30 s
        worker._next_claim_at = 0.0
        assert worker.step(claim=True) == 0
        assert worker._idle_wait() > CONTENDED_RETRY_SECONDS  # held for long: back to the poll interval
    worker._next_claim_at = 0.0
    assert worker.step(claim=True) == 2  # the row is free: it claims
    assert worker._contended == 0
