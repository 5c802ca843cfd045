"""The chaos harness: real ``serve`` and ``backfill worker`` processes on one database, a
pipeline whose block sleeps a few ms and fails ~10 % of the time, a journal every
attempt writes to, and the end-of-run checks and figures shared by both suites.

Every process started here carries ``BACKFILL_CHAOS`` = a fresh marker in its
environment (inherited by executor children and by the daemons some blocks start), so
the orphan check finds anything left behind, whatever its session or parent.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
from sqlalchemy import select
from tests.engine.procs import wait_for
from tests.factories import add_pipeline

from backfill.domain.model import BlockType, RunStatus
from backfill.domain.pipeline import Block, PipelineDefinition
from backfill.services.actor import Actor
from backfill.store import backfills as store
from backfill.store import queue
from backfill.store.db import Database
from backfill.store.tables import interval_runs

CHAOTIC = """
import os, random, subprocess, sys, time
import psutil

def _note(path, event, context, worker):
    line = f"{event} {context.run_id} {context.attempt} {worker} {time.time():.6f}\\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)

def _daemon(marker):
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", marker],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)

def run(context):
    v = context.variables
    # executor child -> fork server -> the worker (or serve) process
    worker = psutil.Process(os.getppid()).ppid()
    _note(v["journal"], "start", context, worker)
    time.sleep(random.uniform(0.002, float(v["max_sleep"])))
    if random.random() < float(v["daemon_rate"]):
        _daemon(os.environ.get("BACKFILL_CHAOS", "?") + "-daemon")
    if random.random() < float(v["fail_rate"]):
        _note(v["journal"], "fail", context, worker)
        raise RuntimeError("planned failure")
    _note(v["journal"], "end", context, worker)
    return {"rows": 1}
"""

REPO = Path(__file__).resolve().parents[2]


def chaotic_pipeline(db: Database, team: Actor) -> int:
    definition = PipelineDefinition(
        uuid="chaotic", name="chaotic", blocks=(Block(uuid="main", type=BlockType.PYTHON, source=CHAOTIC),)
    )
    return add_pipeline(db, team, definition)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Event:
    name: str
    at: float  # time.time()


@dataclass
class Cluster:
    """The processes of one chaos run, restartable by role."""

    workdir: Path
    db_url: str  # what the processes use (through the fault proxy on PostgreSQL)
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    marker: str = field(default_factory=lambda: f"backfill-chaos-{uuid.uuid4().hex}")
    server: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    started: int = 0

    def _env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("BACKFILL_")}
        return {**base, **self.env, "BACKFILL_CHAOS": self.marker}

    def _popen(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        self.started += 1
        out = open(self.workdir / f"{log}.log", "ab")  # noqa: SIM115 — the child keeps it
        return subprocess.Popen(
            [sys.executable, "-m", "backfill", *args], cwd=self.workdir, env=self._env(), stdout=out, stderr=out
        )

    def start_server(self, workers: int) -> None:
        self.server = self._popen(
            ["serve", "--db", self.db_url, "--port", str(self.port), "--workers", str(workers)], "serve"
        )
        wait_for(self.server_up, timeout=60, interval=0.2)

    def server_up(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def start_worker(self, concurrency: int, lease_seconds: float) -> subprocess.Popen[bytes]:
        proc = self._popen(
            ["worker", "--db", self.db_url, "--concurrency", str(concurrency), "--lease-seconds", str(lease_seconds)],
            "worker",
        )
        self.workers.append(proc)
        return proc

    def kill_server(self, workers: int) -> None:
        assert self.server is not None
        self.server.send_signal(signal.SIGKILL)
        self.server.wait(30)
        self.events.append(Event("kill server", time.time()))
        self.start_server(workers)

    def kill_worker(self, index: int, concurrency: int, lease_seconds: float) -> None:
        victim = self.workers.pop(index)
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
        self.events.append(Event("kill worker", time.time()))
        self.start_worker(concurrency, lease_seconds)

    def alive(self) -> list[subprocess.Popen[bytes]]:
        procs = [*self.workers, *([self.server] if self.server else [])]
        return [p for p in procs if p.poll() is None]

    def stop(self) -> None:
        for proc in [*self.workers, *([self.server] if self.server else [])]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*self.workers, *([self.server] if self.server else [])]:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def leftovers(self) -> list[psutil.Process]:
        """Live processes (not zombies) carrying this run's marker in argv or environment."""
        found = []
        for proc in psutil.process_iter(["cmdline", "status"]):
            try:
                if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
                    continue
                cmdline = " ".join(proc.info["cmdline"] or [])
                if self.marker in cmdline or proc.environ().get("BACKFILL_CHAOS") == self.marker:
                    found.append(proc)
            except psutil.Error:
                continue
        return found


@dataclass(frozen=True)
class Entry:
    event: str
    run_id: int
    attempt: int
    worker: int
    at: float


def read_journal(path: Path) -> list[Entry]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 5:
            out.append(Entry(parts[0], int(parts[1]), int(parts[2]), int(parts[3]), float(parts[4])))
    return out


def finished(db: Database, backfill_ids: list[int]) -> bool:
    with db.read() as conn:
        rows = [store.get(conn, b) for b in backfill_ids]
    return all(r["status"] in ("completed", "failed", "cancelled") and r["runs_running"] == 0 for r in rows)


def status_of(db: Database, backfill_id: int) -> str:
    with db.read() as conn:
        return str(store.get(conn, backfill_id)["status"])


def check_and_measure(
    db: Database,
    journal: Path,
    *,
    backfills: list[int],
    cancelled: int | None,
    cancel_committed_at: datetime | None,
    started_wall: float,
) -> dict[str, int | float]:
    """The end-of-run checks (assertions) and the figures of the run."""
    entries = read_journal(journal)
    by_run: dict[int, Counter[str]] = defaultdict(Counter)
    ended_attempts: set[tuple[int, int]] = set()
    for e in entries:
        by_run[e.run_id][e.event] += 1
        if e.event == "end":
            ended_attempts.add((e.run_id, e.attempt))
    requeued = 0
    intervals = 0
    with db.read() as conn:
        for bf in backfills:
            row = store.get(conn, bf)
            counts = queue.recount(conn, bf)
            if row["status"] == "cancelled":  # intervals never materialized count as cancelled
                counts = replace(counts, cancelled=counts.cancelled + row["runs_total"] - row["runs_created"])
            # counters exact: equal to a recount of the run rows
            assert (row["runs_completed"], row["runs_failed"], row["runs_cancelled"], row["runs_running"]) == (
                counts.completed,
                counts.failed,
                counts.cancelled,
                counts.running,
            ), (bf, dict(row), counts)
            assert row["runs_running"] == 0 and row["status"] in ("completed", "failed", "cancelled"), dict(row)
            runs = conn.execute(select(interval_runs).where(interval_runs.c.backfill_id == bf)).mappings().all()
            intervals += len(runs)
            # every interval final; nothing RUNNING or left with a lease
            assert all(r["status"] != RunStatus.RUNNING.value and r["lease_owner"] is None for r in runs)
            if row["status"] != "cancelled":
                assert len(runs) == row["runs_total"], (bf, len(runs), row["runs_total"])
                assert all(r["status"] in ("completed", "failed") for r in runs)
            # one row per interval, so at most one completion record each; and the attempt
            # recorded as completed is one that really ran to its end
            assert len({r["interval_start"] for r in runs}) == len(runs)
            for r in runs:
                if r["status"] == RunStatus.COMPLETED.value:
                    assert (r["id"], r["attempt"]) in ended_attempts, dict(r)
                requeued += int(r["attempt"]) - 1
            if bf == cancelled:
                assert cancel_committed_at is not None
                late = [r for r in runs if r["started_at"] is not None and r["started_at"] > cancel_committed_at]
                assert not late, f"{len(late)} runs started after the cancel committed"
    duplicates = sum(c["end"] - 1 for c in by_run.values() if c["end"] > 1)
    abandoned = sum(max(0, c["start"] - c["end"] - c["fail"]) for c in by_run.values())
    return {
        "intervals": intervals,
        "attempts started": sum(c["start"] for c in by_run.values()),
        "planned failures": sum(c["fail"] for c in by_run.values()),
        "re-queued attempts (claimed again)": requeued,
        "attempts abandoned (killed or lease lost)": abandoned,
        "duplicate executions of a block": duplicates,
        "wall seconds": round(time.time() - started_wall, 1),
    }


def report(title: str, figures: dict[str, int | float]) -> str:
    lines = [f"chaos ({title}):"] + [f"  {k}: {v}" for k, v in figures.items()]
    text = "\n".join(lines)
    out = Path(os.environ.get("BACKFILL_CHAOS_REPORT", "")) if os.environ.get("BACKFILL_CHAOS_REPORT") else None
    if out is not None:
        with out.open("a") as fh:
            fh.write(text + "\n")
    return text


def now_utc() -> datetime:
    return datetime.now(UTC)


def claimed_since(entries: list[Entry], pid: int, since: float) -> bool:
    return any(e.event == "start" and e.worker == pid and e.at > since for e in entries)
