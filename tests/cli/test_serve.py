"""The README's main command: ``backfill serve`` with the example project and a backfill.

Starts the real server process in a fresh directory, waits for the example backfill to
complete, checks the first-start credentials, the warehouse, and that a restart does
not duplicate the start-up backfill."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from tests.engine.procs import wait_for

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(cwd: Path, port: int) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "backfill", "serve", "--project", str(REPO / "examples" / "shop"),
        "--port", str(port), "--workers", "2", "--backfill", "daily_sales,2024-01-01,2024-01-07",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKFILL_")}
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=open(cwd / "serve.log", "wb"))


def healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def backfill_rows(cwd: Path) -> list[tuple[int, str, int]]:
    db = cwd / ".backfill" / "backfill.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute("select id, status, runs_completed from backfills").fetchall()
        except sqlite3.OperationalError:
            return []


def test_serve_runs_the_example_backfill(tmp_path: Path) -> None:
    port = free_port()
    proc = serve(tmp_path, port)
    try:
        wait_for(lambda: healthy(port), timeout=60, interval=0.3)
        wait_for(lambda: [r[1] for r in backfill_rows(tmp_path)] == ["completed"], timeout=90, interval=0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert backfill_rows(tmp_path) == [(1, "completed", 7)]
    creds_path = tmp_path / ".backfill" / "credentials.json"
    # not a terminal: JSON lines; one says where to go, as whom, and where the password is
    messages = [json.loads(line)["message"] for line in (tmp_path / "serve.log").read_text().splitlines()]
    assert f"open http://127.0.0.1:{port}/ and sign in as owner@localhost with the password in {creds_path}" in messages
    assert stat.S_IMODE(creds_path.stat().st_mode) == 0o600
    creds = json.loads(creds_path.read_text())
    assert set(creds) >= {"url", "team_id", "user_id", "email", "token"}
    with sqlite3.connect(tmp_path / ".backfill" / "warehouse.db") as wh:
        days = wh.execute("select count(distinct day) from daily_sales").fetchone()[0]
    assert days == 7
    # restart: same database, no second start-up backfill, credentials kept
    proc = serve(tmp_path, port)
    try:
        wait_for(lambda: healthy(port), timeout=60, interval=0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert len(backfill_rows(tmp_path)) == 1
    assert json.loads(creds_path.read_text())["token"] == creds["token"]
