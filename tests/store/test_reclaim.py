"""Reclaiming the runs of dead owners on this host at once (no wait for lease expiry)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import psutil
import pytest
from tests.engine.procs import wait_for
from tests.engine.test_worker_processes import status
from tests.store.test_queue import T0, claim, make, record, row

from backfill.engine import owners
from backfill.engine.worker import Worker, WorkerSettings
from backfill.services.actor import Actor
from backfill.store import queue
from backfill.store.db import Database

HOST = socket.gethostname()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not psutil.pid_exists(proc.pid) or psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE
    return proc.pid


def test_expire_owners_requeues_or_fails_only_the_given_owners(db: Database, team: Actor, pipeline_id: int) -> None:
    retried = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-02", retries=1, max_active_runs=2)
    (gone,) = claim(db, owner="gone", n=1)
    (alive,) = claim(db, owner="alive", n=1)
    with db.write() as conn:
        assert queue.running_owners(conn).keys() == {"gone", "alive"}
        expired = queue.expire_owners(conn, ["gone"], T0, reason="is gone")
    assert expired == [gone.key]
    assert row(db, retried)["runs_running"] == 1  # the live owner's run is untouched
    assert record(db, alive, owner="alive")
    assert not record(db, gone, owner="gone")  # the fence refuses the dead owner's attempt
    (again,) = claim(db, owner="next", now=T0 + timedelta(hours=1))
    assert (again.run_id, again.attempt) == (gone.run_id, gone.attempt + 1)
    with db.write() as conn:
        assert queue.expire_owners(conn, [], T0, reason="-") == []


def test_expire_owners_fails_a_run_without_retries_left(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-01", retries=0)
    claim(db, owner="gone")
    with db.write() as conn:
        queue.expire_owners(conn, ["gone"], T0, reason="is no longer running on this host")
    assert row(db, bf)["status"] == "failed"


def test_dead_owners_are_those_of_this_host_whose_process_is_gone() -> None:
    now = datetime.now(UTC)
    me = f"{HOST}:{psutil.Process().pid}:aaaa"
    dead = f"{HOST}:{dead_pid()}:bbbb"
    elsewhere = f"another-host:{dead_pid()}:cccc"
    reused = f"{HOST}:{psutil.Process().pid}:dddd"  # our pid, but held since before we started
    since_before_us = datetime.fromtimestamp(psutil.Process().create_time(), UTC) - timedelta(hours=1)
    held = {me: now, dead: now, elsewhere: now, reused: since_before_us, "not-an-owner-id": now}
    assert owners.dead_owners_on_this_host(held) == sorted([dead, reused])


@pytest.mark.parametrize("owner", ["a:b", "host:12x:u", ":1:u", "host:1:"])
def test_malformed_owner_ids_are_left_alone(owner: str) -> None:
    assert owners.parse_owner(owner) is None
    assert owners.parse_owner("my-host:123:abcd") == ("my-host", 123)


@pytest.mark.slow
def test_a_starting_worker_reruns_at_once_the_runs_of_a_dead_owner_on_its_host(
    db: Database, team: Actor, pipeline_id: int
) -> None:
    bf = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-02", retries=1, retry_delay_seconds=0)
    previous = f"{HOST}:{dead_pid()}:deadbeef"
    now = datetime.now(UTC)
    held = claim(db, owner=previous, n=2, now=now, lease=3600)  # would wait an hour for expiry
    assert len(held) == 2
    stop = threading.Event()
    worker = Worker(db, WorkerSettings(concurrency=2, poll_seconds=0.05))
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        # (row() recounts too: only once the worker is still; here the status alone)
        wait_for(lambda: status(db, bf) == "completed", timeout=60)
    finally:
        stop.set()
        thread.join(30)
    assert row(db, bf)["runs_completed"] == 2
    with db.read() as conn:
        assert queue.running_owners(conn) == {}
