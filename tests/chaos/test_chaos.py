"""The chaos suite (RELIABILITY.md "Faults"): a long backfill on real processes while workers and
the server are killed with SIGKILL and the database goes away; at the end every promise
of RELIABILITY.md is checked and the figures are printed.

PostgreSQL (``BACKFILL_TEST_DATABASE_URL`` set): ``serve`` + 2 ``backfill worker``, the
database behind a TCP proxy cut twice for 5 s, 5 worker kills and 1 server kill.
SQLite (otherwise): ``serve`` + 1 ``backfill worker``, 3 server kills and a 35 s exclusive
lock held by the test (the processes' busy timeout is 5 s, so writers fail past it).
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from tests.chaos.harness import (
    Cluster,
    Event,
    chaotic_pipeline,
    check_and_measure,
    claimed_since,
    finished,
    now_utc,
    read_journal,
    report,
    status_of,
)
from tests.databases import PG_URL
from tests.engine.procs import wait_for
from tests.faultproxy import fault_proxy

from backfill.domain.model import Role
from backfill.services import backfills as svc
from backfill.services.actor import Actor
from backfill.store import auth
from backfill.store import backfills as store
from backfill.store.db import Database
from backfill.store.migrate import upgrade

pytestmark = pytest.mark.slow

LEASE = 10.0


@pytest.fixture
def chaos_db(db_url: str) -> Iterator[tuple[Database, Actor]]:
    db = Database(db_url)
    upgrade(db)  # as `serve` would: the processes find an up-to-date schema
    with db.write() as conn:
        team_id = auth.create_team(conn, "chaos")
        user_id = auth.create_user(conn, "chaos@example.com", team_id=team_id, role=Role.OWNER)
    try:
        yield db, Actor(team_id=team_id, user_id=user_id)
    finally:
        db.dispose()


def variables(journal: Path, max_sleep: float = 0.1) -> dict[str, object]:
    return {"journal": str(journal), "max_sleep": max_sleep, "fail_rate": 0.1, "daemon_rate": 0.01}


def create(db: Database, team: Actor, pipeline_id: int, start: str, end: str, **kw: object) -> int:
    spec = svc.BackfillSpec(start=start, end=end, **kw)  # type: ignore[arg-type]
    return svc.create(db, team, pipeline_id, spec, start=True)


def completed(db: Database, backfill_id: int) -> int:
    with db.read() as conn:
        return int(store.get(conn, backfill_id)["runs_completed"])


class Scenario:
    """The backfills every chaos run drives: a long one (≥ 1,000 hourly intervals), one to
    cancel half way, one without retries to retry once it failed, and a final probe."""

    def __init__(self, db: Database, team: Actor, journal: Path) -> None:
        self.db, self.team, self.journal = db, team, journal
        self.pipeline_id = chaotic_pipeline(db, team)
        v = variables(journal)
        self.main = create(
            db, team, self.pipeline_id, "2024-01-01", "2024-02-12", interval_type="hour",
            retries=6, retry_delay_seconds=0, max_active_runs=3, variables=v,
        )  # fmt: skip
        self.to_cancel = create(
            db, team, self.pipeline_id, "2025-01-01", "2025-12-31",
            retries=6, retry_delay_seconds=0, max_active_runs=2, variables=v,
        )  # fmt: skip
        self.to_retry = create(
            db, team, self.pipeline_id, "2026-01-01", "2026-02-19",
            retries=0, max_active_runs=2, variables=v,
        )  # fmt: skip
        self.cancel_committed_at: datetime | None = None
        self.retried = False
        with db.read() as conn:
            assert store.get(conn, self.main)["runs_total"] >= 1000

    def cancel(self) -> None:
        wait_for(lambda: completed(self.db, self.to_cancel) >= 5, timeout=120, interval=0.2)
        svc.cancel(self.db, self.team, self.to_cancel)
        self.cancel_committed_at = now_utc()  # committed by now

    def retry_when_failed(self) -> None:
        wait_for(lambda: status_of(self.db, self.to_retry) in ("completed", "failed"), timeout=180, interval=0.2)
        if status_of(self.db, self.to_retry) == "failed":
            svc.retry(self.db, self.team, self.to_retry)
            self.retried = True

    def finish(self, cluster: Cluster, since: float) -> float:
        """Wait for every backfill to be final, then run a probe that every live process
        must take part in (each still claims after the faults). Returns its start time."""
        backfills = [self.main, self.to_cancel, self.to_retry]
        wait_for(lambda: finished(self.db, backfills), timeout=240, interval=0.5)
        probe = create(
            self.db, self.team, self.pipeline_id, "2027-01-01", "2027-02-09",
            retries=6, retry_delay_seconds=0, max_active_runs=6, variables=variables(self.journal, max_sleep=0.3),
        )  # fmt: skip
        self.probe = probe
        wait_for(lambda: finished(self.db, [probe]), timeout=120, interval=0.3)
        entries = read_journal(self.journal)
        for proc in cluster.alive():
            assert claimed_since(entries, proc.pid, since), f"process {proc.pid} claimed nothing after the faults"
        return since

    def check(self, cluster: Cluster, started: float) -> dict[str, int | float]:
        backfills = [self.main, self.to_cancel, self.to_retry, self.probe]
        figures = check_and_measure(
            self.db,
            self.journal,
            backfills=backfills,
            cancelled=self.to_cancel,
            cancel_committed_at=self.cancel_committed_at,
            started_wall=started,
        )
        assert status_of(self.db, self.to_cancel) == "cancelled"
        kills = [e.name for e in cluster.events]
        with self.db.read() as conn:
            done_at = store.get(conn, self.main)["completed_at"]
        last_fault = max(e.at for e in cluster.events)
        return {
            **figures,
            "worker kills (-9)": kills.count("kill worker"),
            "server kills (-9)": kills.count("kill server"),
            "database outages": kills.count("outage"),
            "retried after failure": int(self.retried),
            "long backfill final, seconds after the last fault": round(done_at.timestamp() - last_fault, 1),
        }


def _no_orphans(cluster: Cluster) -> None:
    cluster.stop()
    wait_for(lambda: not cluster.leftovers(), timeout=20)


@pytest.mark.skipif(not PG_URL, reason="the PostgreSQL chaos run (BACKFILL_TEST_DATABASE_URL)")
def test_chaos_postgres(chaos_db: tuple[Database, Actor], db_url: str, tmp_path: Path) -> None:
    db, team = chaos_db
    rng = random.Random()
    started = time.time()
    with fault_proxy(db_url) as (proxy, proxied):
        # a worker restarted into an outage waits for the database, as one under a supervisor would
        env = {"BACKFILL_LEASE_SECONDS": str(LEASE), "BACKFILL_SCHEDULER_INTERVAL_SECONDS": "0.5",
               "BACKFILL_LOG_LEVEL": "WARNING", "BACKFILL_DB_STARTUP_WAIT_SECONDS": "60"}  # fmt: skip
        cluster = Cluster(tmp_path, proxied, env)
        try:
            cluster.start_server(workers=2)
            for _ in range(2):
                cluster.start_worker(2, LEASE)
            scenario = Scenario(db, team, tmp_path / "journal.txt")

            def pause() -> None:
                time.sleep(rng.uniform(0.5, 2.0))

            def outage() -> None:
                proxy.cut()
                cluster.events.append(Event("outage", time.time()))
                time.sleep(5)
                proxy.restore()

            pause()
            cluster.kill_worker(rng.randrange(len(cluster.workers)), 2, LEASE)
            scenario.cancel()
            for _ in range(2):
                pause()
                cluster.kill_worker(rng.randrange(len(cluster.workers)), 2, LEASE)
            pause()
            cluster.kill_server(workers=2)
            pause()
            outage()
            for _ in range(2):
                pause()
                cluster.kill_worker(rng.randrange(len(cluster.workers)), 2, LEASE)
            pause()
            outage()
            after_faults = time.time()
            scenario.retry_when_failed()
            scenario.finish(cluster, after_faults)
            assert len(cluster.alive()) == 3  # every process survived the outages
            figures = scenario.check(cluster, started)
        finally:
            _no_orphans(cluster)
    print("\n" + report("PostgreSQL", figures))


@contextmanager
def exclusive_lock(db_url: str) -> Iterator[None]:
    path = make_url(db_url).database
    assert path
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


@pytest.mark.skipif(bool(PG_URL), reason="the SQLite chaos run (BACKFILL_TEST_DATABASE_URL unset)")
def test_chaos_sqlite(chaos_db: tuple[Database, Actor], db_url: str, tmp_path: Path) -> None:
    db, team = chaos_db
    rng = random.Random()
    started = time.time()
    env = {"BACKFILL_LEASE_SECONDS": str(LEASE), "BACKFILL_SCHEDULER_INTERVAL_SECONDS": "0.5",
           "BACKFILL_LOG_LEVEL": "WARNING", "BACKFILL_DB_BUSY_TIMEOUT_SECONDS": "5",
           "BACKFILL_DB_STARTUP_WAIT_SECONDS": "60"}  # fmt: skip
    cluster = Cluster(tmp_path, db_url, env)
    try:
        cluster.start_server(workers=3)
        cluster.start_worker(2, LEASE)
        scenario = Scenario(db, team, tmp_path / "journal.txt")

        def pause() -> None:
            time.sleep(rng.uniform(0.5, 2.0))

        pause()
        cluster.kill_server(workers=3)
        scenario.cancel()
        pause()
        with exclusive_lock(db_url):
            cluster.events.append(Event("outage", time.time()))
            time.sleep(35)  # past every busy timeout (5 s) and every lease (10 s)
        pause()
        cluster.kill_server(workers=3)
        pause()
        cluster.kill_server(workers=3)
        after_faults = time.time()
        scenario.retry_when_failed()
        scenario.finish(cluster, after_faults)
        assert len(cluster.alive()) == 2
        figures = scenario.check(cluster, started)
    finally:
        _no_orphans(cluster)
    print("\n" + report("SQLite", figures))
