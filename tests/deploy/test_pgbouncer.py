"""The engine behind a real PgBouncer in transaction-pooling mode (``?pgbouncer=true``).

Always PostgreSQL, whichever pass runs it: the server of BACKFILL_TEST_DATABASE_URL, else
PG_TEST_URL, else postgresql://postgres@127.0.0.1:5432/test (the default of `make test`);
`make test` runs it in its PostgreSQL pass only (the SQLite pass leaves tests/deploy out).
A missing PgBouncer or PostgreSQL fails the test: nothing here is skipped."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, create_engine, select, text
from sqlalchemy.exc import DBAPIError
from tests.deploy.pgbouncer import Bouncer, pgbouncer
from tests.engine.procs import start_worker, wait_for
from tests.factories import add_pipeline, python_pipeline

from backfill.app import create_app
from backfill.config import Settings
from backfill.domain.model import Role, Scope
from backfill.services.actor import Actor
from backfill.store import auth, queue
from backfill.store import backfills as store
from backfill.store.db import Database, normalize_url
from backfill.store.tables import interval_runs

pytestmark = pytest.mark.slow

# The first attempt of every tenth hour fails: those runs complete on their retry.
FLAKY = """
def run(context):
    if context.attempt == 1 and int(context.hr) % 10 == 0:
        raise RuntimeError("planned failure of the first attempt")
    return {"rows": 1}
"""
SLOW = "import time\ndef run(context):\n    time.sleep(0.05)\n    return {'rows': 1}\n"


@pytest.fixture
def bouncer() -> Iterator[Bouncer]:
    with pgbouncer(pool_size=4) as b:
        yield b


def _select_in_transaction(conn: Connection, value: int) -> int:
    with conn.begin():
        return int(conn.execute(text("SELECT CAST(:v AS integer) + 1"), {"v": value}).scalar_one())


def _run_on_a_new_server_connection(engine: Engine) -> None:
    """One client connection runs a statement 8 times (psycopg prepares it at the 5th);
    while a second client holds the server connection that has it, the first runs it once
    more: PgBouncer gives that transaction another server connection."""
    with engine.connect() as first, engine.connect() as second:
        for i in range(8):
            assert _select_in_transaction(first, i) == i + 1
        with second.begin():
            second.execute(text("SELECT 1"))
            assert _select_in_transaction(first, 100) == 101


def test_psycopg_prepared_statements_break_under_transaction_pooling(bouncer: Bouncer) -> None:
    engine = create_engine(normalize_url(bouncer.url(option=False)))  # psycopg's defaults
    try:
        with pytest.raises(DBAPIError, match='prepared statement "_pg3_0" does not exist'):
            _run_on_a_new_server_connection(engine)
    finally:
        engine.dispose()


def test_a_database_works_through_pgbouncer_with_the_option_only(bouncer: Bouncer) -> None:
    plain = Database(bouncer.url(option=False))
    try:
        # prepared statements, or the startup parameter 'options' when the Database sends one
        with pytest.raises(DBAPIError, match=r"prepared statement|unsupported startup parameter: options"):
            _run_on_a_new_server_connection(plain.engine)
    finally:
        plain.dispose()
    pooled = Database(bouncer.url())
    try:
        assert pooled.behind_pgbouncer
        _run_on_a_new_server_connection(pooled.engine)
    finally:
        pooled.dispose()


def test_migrate_workers_and_the_api_through_pgbouncer(bouncer: Bouncer, tmp_path: Path) -> None:
    url = bouncer.url()
    migrated = subprocess.run(
        [sys.executable, "-m", "backfill", "migrate", "--db", url, "--json"], capture_output=True, text=True
    )
    assert migrated.returncode == 0, migrated.stderr
    assert '"revision"' in migrated.stdout

    db = Database(url)
    try:
        with db.read() as conn:  # the server settings of PgBouncer's connect_query
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "30s"
            assert conn.execute(text("SHOW lock_timeout")).scalar() == "10s"
        with db.write() as conn:
            team_id = auth.create_team(conn, "Data team")
            user_id = auth.create_user(conn, "owner@example.com", team_id=team_id, role=Role.OWNER)
        team = Actor(team_id=team_id, user_id=user_id)
        # hourly, with no delay between the attempts of a run
        spec = {"interval_type": "hour", "retry_delay_seconds": 0}
        flaky = add_pipeline(db, team, python_pipeline("flaky", FLAKY))
        slow = add_pipeline(db, team, python_pipeline("slow", SLOW))
        logs = [tmp_path / "worker0.log", tmp_path / "worker1.log"]

        token = _token(db, user_id)
        procs = [start_worker(url, concurrency=4, lease_seconds=10.0, log=log) for log in logs]
        try:
            app = create_app(db, Settings(rate_limit="100000/minute", secret_key="test"))
            with TestClient(app, raise_server_exceptions=False) as api:
                main = _create(
                    api,
                    token,
                    f"/v1/teams/{team_id}/transfers/{flaky}/backfills",
                    {
                        **spec,
                        "range_start": "2024-01-01",
                        "range_end": "2024-01-13",
                        "max_active_runs": 8,
                        "retries": 2,
                    },
                )
                doomed = _create(
                    api,
                    token,
                    f"/v1/teams/{team_id}/transfers/{slow}/backfills",
                    {**spec, "range_start": "2023-01-01", "range_end": "2023-01-09", "max_active_runs": 2},
                )
                wait_for(lambda: _row(db, doomed)["runs_completed"] >= 5, timeout=120)
                cancelled = api.patch(
                    f"/v1/teams/{team_id}/backfills/{doomed}", json={"status": "CANCELLED"}, headers=token
                )
                assert cancelled.status_code == 200, cancelled.text
                wait_for(lambda: _row(db, main)["status"] in ("completed", "failed"), timeout=240)
                wait_for(lambda: _row(db, doomed)["runs_running"] == 0, timeout=60)
                shown = api.get(f"/v1/teams/{team_id}/backfills/{main}", headers=token)
                assert shown.status_code == 200 and shown.json()["data"]["status"] == "COMPLETED", shown.text
            assert all(p.poll() is None for p in procs), "a worker died"
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
                    p.wait(timeout=60)

        bf = _row(db, main)
        assert bf["status"] == "completed"
        total = int(bf["runs_total"])
        assert total == 12 * 24 + 1  # hourly, both ends included
        runs = _runs(db, main)
        assert len(runs) == total and all(r["status"] == "completed" for r in runs)
        assert len({r["interval_start"] for r in runs}) == total  # each interval once
        planned = {r["id"] for r in runs if r["interval_start"].hour % 10 == 0}  # 00:00, 10:00, 20:00 fail once
        assert len(planned) == 3 * 12 + 1 and planned <= {r["id"] for r in runs if int(r["attempt"]) >= 2}
        assert _row(db, doomed)["status"] == "cancelled"
        doomed_statuses = Counter(r["status"] for r in _runs(db, doomed))
        # its runs finished or were cancelled while queued (a retry); the intervals it never
        # reached have no run and are counted as cancelled (below)
        assert set(doomed_statuses) <= {"completed", "cancelled"} and doomed_statuses["completed"] >= 5
        with db.read() as conn:
            for backfill_id in (main, doomed):
                row = store.get(conn, backfill_id)
                counts = queue.recount(conn, backfill_id)
                # a cancel also counts the intervals never materialized as cancelled
                unmaterialized = int(row["runs_total"]) - int(row["runs_created"])
                counts = replace(counts, cancelled=counts.cancelled + unmaterialized)
                assert counts == queue.counts_of(row), backfill_id
                assert row["runs_completed"] + row["runs_failed"] + row["runs_cancelled"] == row["runs_total"]
    finally:
        db.dispose()
    for log in logs:
        content = log.read_text(errors="replace")
        assert "prepared statement" not in content, content[-2000:]


def _token(db: Database, user_id: int) -> dict[str, str]:
    with db.write() as conn:
        issued = auth.create_token(conn, user_id, scopes=(Scope.READ, Scope.WRITE), expires_in=None)
    return {"Authorization": f"Bearer {issued.secret}"}


def _create(api: TestClient, token: dict[str, str], path: str, body: dict[str, object]) -> int:
    response = api.post(path, json=body, headers=token)
    assert response.status_code in (200, 201), response.text
    return int(response.json()["data"]["transfer_backfill_id"])


def _row(db: Database, backfill_id: int) -> dict[str, Any]:
    with db.read() as conn:
        return dict(store.get(conn, backfill_id))


def _runs(db: Database, backfill_id: int) -> list[dict[str, Any]]:
    with db.read() as conn:
        query = select(interval_runs).where(interval_runs.c.backfill_id == backfill_id)
        return [dict(r) for r in conn.execute(query).mappings()]
