"""Helpers for tests that start real worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psutil


def start_worker(
    db_url: str,
    *,
    concurrency: int = 4,
    lease_seconds: float = 2.0,
    log: Path | None = None,
    scheduler: bool = True,
    extra: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BACKFILL_SCHEDULER_INTERVAL_SECONDS": "0.2", "BACKFILL_LOG_LEVEL": "WARNING"}
    cmd = [
        sys.executable,
        "-m",
        "backfill",
        "worker",
        "--db",
        db_url,
        "--concurrency",
        str(concurrency),
        "--lease-seconds",
        str(lease_seconds),
    ]
    if not scheduler:
        cmd.append("--no-scheduler")
    cmd.extend(extra)
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


def kill_tree(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    proc.send_signal(sig)
    proc.wait(timeout=30)
    if sig == signal.SIGKILL:
        # kill -9 of the worker: its executor children must die with it (they watch their parent)
        _, alive = psutil.wait_procs(children, timeout=10)
        for p in alive:
            p.kill()


@contextmanager
def workers(db_url: str, n: int = 1, **kw: object) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [start_worker(db_url, **kw) for _ in range(n)]  # type: ignore[arg-type]
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                kill_tree(p, signal.SIGTERM)


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
