"""The database handle: a private SQLite file; bounded waits on PostgreSQL."""

from __future__ import annotations

import stat
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from tests.databases import PG_URL
from tests.faultproxy import fault_proxy

from backfill.app import create_app
from backfill.config import Settings
from backfill.store import db as db_module
from backfill.store.db import Database, DatabaseTimeouts
from backfill.store.tables import metadata


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_sqlite_database_files_are_private_to_their_owner(tmp_path: Path) -> None:
    path = tmp_path / ".backfill" / "backfill.db"
    db = Database(f"sqlite:///{path}")
    try:
        metadata.create_all(db.engine)
        with db.write() as conn:
            conn.execute(text("CREATE TABLE probe (x INTEGER)"))
        with db.read() as conn:  # the -wal and -shm files exist while a connection is open
            conn.execute(text("SELECT count(*) FROM probe"))
            assert mode(path) == 0o600
            assert mode(path.with_name("backfill.db-wal")) == 0o600
            assert mode(path.with_name("backfill.db-shm")) == 0o600
        assert mode(path.parent) == 0o700
    finally:
        db.dispose()


def test_an_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    db.dispose()
    assert mode(tmp_path) == 0o755
    assert mode(tmp_path / "x.db") == 0o600


def test_sqlite_busy_timeout_is_configurable(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}", timeouts=DatabaseTimeouts(busy=1.5))
    try:
        with db.read() as conn:
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 1500
    finally:
        db.dispose()


pg_only = pytest.mark.skipif(not PG_URL, reason="PostgreSQL only (BACKFILL_TEST_DATABASE_URL)")


@pg_only
def test_postgres_sessions_carry_the_timeouts_and_keep_the_url_options(db_url: str) -> None:
    db = Database(db_url, timeouts=DatabaseTimeouts(statement=7, lock=3, idle_in_transaction=45))
    try:
        with db.read() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "7s"
            assert conn.execute(text("SHOW lock_timeout")).scalar() == "3s"
            assert conn.execute(text("SHOW idle_in_transaction_session_timeout")).scalar() == "45s"
            assert str(conn.execute(text("SHOW search_path")).scalar()).startswith("t_")  # from the URL
    finally:
        db.dispose()


@pg_only
@pytest.mark.slow
def test_a_database_that_drops_packets_is_503_not_a_hang(db_url: str) -> None:
    with fault_proxy(db_url) as (proxy, url):
        db = Database(url, timeouts=DatabaseTimeouts(connect=2, tcp_user=2, pool=2))
        app = create_app(db, Settings(secret_key="test", rate_limit="100000/minute"))
        try:
            with TestClient(app, raise_server_exceptions=False) as client:
                assert client.get("/readyz").status_code == 200  # a pooled connection exists
                proxy.blackhole()
                started = time.monotonic()
                response = client.get("/readyz")
                assert response.status_code == 503
                assert "database" in response.json()["error"]["message"]
                with pytest.raises(OperationalError), db.read() as conn:  # what every request waits on
                    conn.execute(text("SELECT 1"))
                # bounded by the connect / TCP user timeouts (2 s each here), not hung; the
                # margin is wide on purpose (a loaded machine)
                assert time.monotonic() - started < 30
                proxy.restore()
        finally:
            db.dispose()


@pg_only
def test_a_pooled_connection_is_pinged_only_after_it_sat_idle(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection reused at once is not pinged (a worker's steps reuse one every few
    ms); one idle for ``PING_AFTER_IDLE_SECONDS`` is, before it is handed out."""
    db = Database(db_url)
    pings: list[Any] = []
    real_ping = db.engine.dialect.do_ping

    def counting_ping(dbapi_connection: Any) -> bool:
        pings.append(dbapi_connection)
        return bool(real_ping(dbapi_connection))

    monkeypatch.setattr(db.engine.dialect, "do_ping", counting_ping)
    try:
        for _ in range(5):
            db.ping()
        assert pings == []  # fresh, then reused within the second
        monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 0.0)
        db.ping()
        assert len(pings) == 1
    finally:
        db.dispose()


@pg_only
def test_a_connection_that_broke_while_idle_is_replaced_on_checkout(db_url: str) -> None:
    """The server side of an idle pooled connection goes away (a restart): the checkout
    ping notices, and the caller gets a working connection instead of an error."""
    with fault_proxy(db_url) as (proxy, url):
        db = Database(url)
        try:
            db.ping()  # one pooled connection through the proxy
            proxy.cut()  # its server side is gone
            proxy.restore()
            time.sleep(db_module.PING_AFTER_IDLE_SECONDS + 0.1)
            db.ping()  # no error: the ping found it broken and the pool made a new one
        finally:
            db.dispose()
