"""A worker survives a database outage: it keeps its runs going, keeps their outcomes,
records them (fenced) when the database is back, and completes the backfill."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from tests.databases import PG_URL
from tests.engine.procs import kill_tree, start_worker, wait_for
from tests.engine.test_worker_processes import create, journal_pipeline, read_journal, runs, status
from tests.faultproxy import fault_proxy

from backfill.engine.scheduler import Scheduler
from backfill.engine.worker import Worker, WorkerSettings
from backfill.services.actor import Actor
from backfill.store import backfills as store
from backfill.store import queue
from backfill.store.db import Database, DatabaseTimeouts
from backfill.store.tables import interval_runs

pytestmark = pytest.mark.slow


class FlakyDatabase(Database):
    """A Database whose transactions fail like a lost connection while ``down`` is set."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.down = threading.Event()
        self.refused = 0

    def _check(self) -> None:
        if self.down.is_set():
            self.refused += 1
            raise OperationalError("BEGIN", {}, ConnectionRefusedError("connection refused"))

    @contextmanager
    def write(self) -> Iterator[Connection]:
        self._check()
        with super().write() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        self._check()
        with super().read() as conn:
            yield conn


@contextmanager
def running(worker: Worker) -> Iterator[threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), kwargs={"drain_seconds": 5}, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(30)


def ends(journal: Path) -> Counter[str]:
    return Counter(ds for ev, ds, _, _ in read_journal(journal) if ev == "end")


def assert_settled(db: Database, bf: int, n: int) -> None:
    rows = runs(db, bf)
    assert status(db, bf) == "completed"
    assert len(rows) == n and all(r["status"] == "completed" for r in rows)
    assert all(r["lease_owner"] is None for r in rows)
    with db.read() as conn:
        counts = queue.recount(conn, bf)
        row = store.get(conn, bf)
    assert (row["runs_completed"], row["runs_running"], row["runs_failed"]) == (counts.completed, 0, 0) == (n, 0, 0)


def test_outcomes_of_runs_that_finish_during_an_outage_are_recorded_when_it_ends(
    db: Database, db_url: str, team: Actor, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.txt"
    bf = create(db, team, journal_pipeline(db, team), journal, "2024-01-01", "2024-01-06", variables={"sleep": 0.3})
    flaky = FlakyDatabase(db_url)
    worker = Worker(flaky, WorkerSettings(concurrency=3, lease_seconds=60, poll_seconds=0.05))
    try:
        with running(worker) as thread:
            wait_for(lambda: len(read_journal(journal)) >= 1, timeout=60)
            flaky.down.set()
            # runs go on without the database; their outcomes wait in the worker
            wait_for(lambda: len(worker._unrecorded) >= 1 and sum(ends(journal).values()) >= 1, timeout=60)
            wait_for(lambda: flaky.refused >= 3, timeout=30)  # it kept trying, backing off
            flaky.down.clear()
            wait_for(lambda: status(db, bf) == "completed", timeout=60)
            assert thread.is_alive()
    finally:
        flaky.dispose()
    assert worker.backoff.outages == 1
    assert_settled(db, bf, 6)
    # nothing ran twice: the held outcomes were recorded, not re-run after lease expiry
    assert all(r["attempt"] == 1 for r in runs(db, bf))
    assert set(ends(journal).values()) == {1}


def test_a_lease_lost_during_an_outage_refuses_the_late_result_and_the_run_is_redone(
    db: Database, db_url: str, team: Actor, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.txt"
    bf = create(
        db, team, journal_pipeline(db, team), journal, "2024-01-01", "2024-01-03",
        retries=2, retry_delay_seconds=0, variables={"sleep": 0.5},
    )  # fmt: skip
    flaky = FlakyDatabase(db_url)
    worker = Worker(flaky, WorkerSettings(concurrency=3, lease_seconds=1.0, poll_seconds=0.05))
    scheduler = Scheduler(db, interval_seconds=0.1)  # on the healthy connection: expires the leases
    try:
        with running(worker) as thread:
            wait_for(lambda: len(read_journal(journal)) >= 1, timeout=60)
            flaky.down.set()
            wait_for(lambda: scheduler.tick() > 0 or _expired(db, bf), timeout=30)
            wait_for(lambda: len(worker._unrecorded) >= 1, timeout=30)
            flaky.down.clear()
            deadline = time.monotonic() + 60
            while status(db, bf) != "completed" and time.monotonic() < deadline:
                scheduler.tick()
                time.sleep(0.1)
            assert thread.is_alive()
    finally:
        flaky.dispose()
    assert_settled(db, bf, 3)
    assert any(r["attempt"] > 1 for r in runs(db, bf))  # the expired attempt was redone
    assert set(ends(journal)) == {"2024-01-01", "2024-01-02", "2024-01-03"}


def _expired(db: Database, bf: int) -> bool:
    with db.read() as conn:
        q = select(interval_runs.c.id).where(interval_runs.c.backfill_id == bf, interval_runs.c.attempt > 1)
        return conn.execute(q).first() is not None


@contextmanager
def _sqlite_locked(db_url: str) -> Iterator[None]:
    """An exclusive lock on the SQLite file, held by another connection."""
    path = make_url(db_url).database
    assert path
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def test_worker_survives_a_real_database_outage_and_completes_the_backfill(
    db: Database, db_url: str, team: Actor, tmp_path: Path
) -> None:
    """PostgreSQL: the connection is cut for ~3 s by a TCP proxy. SQLite: another process
    holds an exclusive lock for ~3 s, past the worker's (configured) 0.5 s busy timeout."""
    journal = tmp_path / "journal.txt"
    bf = create(db, team, journal_pipeline(db, team), journal, "2024-01-01", "2024-01-12", variables={"sleep": 0.2})
    proxy_cm: AbstractContextManager[Any]
    if PG_URL:
        proxy_cm = fault_proxy(db_url)
        proxy, url = proxy_cm.__enter__()
    else:
        proxy_cm, proxy, url = None, None, db_url  # type: ignore[assignment]
    worker_db = Database(url, timeouts=DatabaseTimeouts(busy=0.5, connect=2))
    worker = Worker(worker_db, WorkerSettings(concurrency=3, lease_seconds=30, poll_seconds=0.05))
    try:
        with running(worker) as thread:
            wait_for(lambda: sum(ends(journal).values()) >= 2, timeout=60)
            if proxy is not None:
                proxy.cut()
                wait_for(lambda: worker.backoff.outages >= 1, timeout=30)
                time.sleep(3)
                proxy.restore()
            else:
                with _sqlite_locked(db_url):
                    wait_for(lambda: worker.backoff.outages >= 1, timeout=30)
                    time.sleep(3)
            wait_for(lambda: status(db, bf) == "completed", timeout=90)
            assert thread.is_alive()
    finally:
        worker_db.dispose()
        if proxy_cm is not None:
            proxy_cm.__exit__(None, None, None)
    assert worker.backoff.outages >= 1
    assert not worker.backoff.failing
    assert_settled(db, bf, 12)


@pytest.mark.skipif(not PG_URL, reason="PostgreSQL only: a refused connection through the TCP proxy")
def test_a_worker_started_during_an_outage_waits_for_the_database(
    db: Database, db_url: str, team: Actor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = tmp_path / "journal.txt"
    bf = create(db, team, journal_pipeline(db, team), journal, "2024-01-01", "2024-01-03", variables={"sleep": 0.1})
    monkeypatch.setenv("BACKFILL_DB_STARTUP_WAIT_SECONDS", "60")
    with fault_proxy(db_url) as (proxy, url):
        proxy.cut()
        proc = start_worker(url, concurrency=2, lease_seconds=10, log=tmp_path / "worker.log")
        try:
            wait_for(lambda: proxy.refused >= 2, timeout=30)  # it tried, and tries again
            assert proc.poll() is None
            proxy.restore()
            wait_for(lambda: status(db, bf) == "completed", timeout=60)
            assert proc.poll() is None
        finally:
            kill_tree(proc, signal.SIGTERM)


class _BusyExecutor:
    """Every slot busy, nothing finishing: a worker step then needs no table at all."""

    free_slots = 0

    def poll(self, _timeout: float) -> list[Any]:
        return []


def test_a_step_that_needs_no_table_does_not_end_an_outage(db_url: str) -> None:
    # Seen in CI: with all slots busy and nothing to record, a step touched no table
    # while the database was still down, and the worker logged "reachable again" and
    # said ready; the next write failed and began a second outage.
    flaky = FlakyDatabase(db_url)
    worker = Worker(flaky, WorkerSettings(concurrency=1, lease_seconds=3600, poll_seconds=0.01))
    worker._reclaimed = True
    worker._last_heartbeat = time.monotonic()
    worker._executor = _BusyExecutor()  # type: ignore[assignment]
    try:
        flaky.down.set()
        worker.backoff.failed(OperationalError("BEGIN", {}, ConnectionRefusedError("connection refused")))
        deadline = time.monotonic() + 5
        while flaky.refused < 3 and time.monotonic() < deadline:
            worker.step()
        assert flaky.refused >= 3  # each due try asked the database
        assert worker.backoff.in_outage and worker.backoff.outages == 1
        flaky.down.clear()
        deadline = time.monotonic() + 10
        while worker.backoff.failing and time.monotonic() < deadline:
            worker.step()
        assert not worker.backoff.failing and worker.backoff.outages == 1
    finally:
        flaky.dispose()
