"""No process started by a run outlives it: after completion, failure, timeout, cancel
and a kill -9 of the worker, no descendant of the run is left — also one that called
``setsid()`` and double-forked (re-parented to the executor child, a subreaper)."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from tests.engine.procs import kill_tree, start_worker, wait_for
from tests.engine.test_executor import collect, pipeline, py, request, run_one
from tests.engine.test_worker_processes import status
from tests.factories import add_pipeline

from backfill.engine.executor import Executor
from backfill.services import backfills as svc
from backfill.services.actor import Actor
from backfill.store.db import Database

pytestmark = pytest.mark.slow


def spawner(marker: str, *, daemon: bool, then: str = "return {'rows': 1}") -> str:
    """Block body: start a sleeping python with ``marker`` in its argv — as a daemon (fork,
    setsid, Popen, the middle one exits) or as a plain grandchild — wait until it runs,
    then ``then``."""
    return f"""
    import os, subprocess, sys, time
    argv = [sys.executable, "-c", "import time; time.sleep(120)", {marker!r}]
    pid = os.fork()
    if pid == 0:
        try:
            if {daemon!r}:
                os.setsid()
            subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    def started():
        for p in os.listdir("/proc"):
            try:
                if p.isdigit() and {marker!r} in open(f"/proc/{{p}}/cmdline").read():
                    return True
            except OSError:
                pass
        return False
    deadline = time.time() + 20
    while not started() and time.time() < deadline:
        time.sleep(0.02)
    {then}
"""


def marked(marker: str) -> list[psutil.Process]:
    """Live (not zombie) processes with ``marker`` in their argv."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if marker in (proc.info["cmdline"] or []) and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


@pytest.fixture
def marker() -> Iterator[str]:
    value = f"backfill-orphan-test-{uuid.uuid4().hex}"
    yield value
    for proc in marked(value):  # never leave one behind, whatever the outcome
        proc.kill()


@pytest.mark.parametrize("daemon", [True, False], ids=["setsid-double-fork", "plain-grandchild"])
def test_nothing_a_completed_run_started_survives_it(marker: str, daemon: bool) -> None:
    with Executor(1) as ex:
        outcome = run_one(ex, request(1, pipeline(py("main", spawner(marker, daemon=daemon)))))
        assert outcome.ok, outcome.error
        wait_for(lambda: not marked(marker), timeout=10)
        # the child serves the next run as usual
        assert run_one(ex, request(2, pipeline(py("main", "    return {'rows': 2}")))).rows == 2


def test_nothing_a_failed_run_started_survives_it(marker: str) -> None:
    body = spawner(marker, daemon=True, then="raise RuntimeError('planned')")
    with Executor(1) as ex:
        outcome = run_one(ex, request(1, pipeline(py("main", body))))
        assert not outcome.ok
        wait_for(lambda: not marked(marker), timeout=10)


def test_nothing_a_timed_out_run_started_survives_it(marker: str) -> None:
    body = spawner(marker, daemon=True, then="time.sleep(60)")
    with Executor(1) as ex:
        outcome = run_one(ex, request(1, pipeline(py("main", body)), timeout=3), within=30)
        assert outcome.timed_out
        wait_for(lambda: not marked(marker), timeout=10)


def test_nothing_a_cancelled_run_started_survives_it(marker: str) -> None:
    body = spawner(marker, daemon=True, then="time.sleep(60)")
    with Executor(1) as ex:
        ex.submit(request(1, pipeline(py("main", body))))
        wait_for(lambda: bool(marked(marker)), timeout=20)
        assert ex.cancel(1)
        (outcome,) = collect(ex, 1)
        assert outcome.cancelled
        wait_for(lambda: not marked(marker), timeout=10)


def test_nothing_a_run_started_survives_a_kill_9_of_its_worker(
    db: Database, db_url: str, team: Actor, tmp_path: Path, marker: str
) -> None:
    definition = pipeline(py("main", spawner(marker, daemon=True, then="time.sleep(60)")), uuid="daemonizer")
    pipeline_id = add_pipeline(db, team, definition)
    bf = svc.create(db, team, pipeline_id, svc.BackfillSpec(start="2024-01-01", end="2024-01-01"), start=True)
    victim = start_worker(db_url, concurrency=1, lease_seconds=30, log=tmp_path / "worker.log")
    try:
        wait_for(lambda: bool(marked(marker)), timeout=60)
        victim.send_signal(signal.SIGKILL)  # the worker alone
        victim.wait(timeout=30)
        wait_for(lambda: not marked(marker), timeout=15)
    finally:
        if victim.poll() is None:
            kill_tree(victim)
    assert status(db, bf) == "running"  # nothing recorded it; lease expiry brings it back
