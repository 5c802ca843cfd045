"""Engine figures. Prints, does not assert.

- no-op interval runs completed per second, end to end (claim → child process →
  record), one in-process worker, SQLite and PostgreSQL, with the worker process's CPU
  per run (claim, record, executor parent);
- the worker's database path alone (``hotpath``, not in the default set): its real step
  with an executor that finishes every run at once, CPU per run of the worker and of
  the PostgreSQL backends serving it;
- 1, 2 and 4 worker processes (concurrency 8 each, as `backfill worker` runs them, the
  benchmark polling from its own process) against one backfill and against 8 competing
  backfills, on SQLite and PostgreSQL: runs/s, CPU per run of the worker processes, of
  their executor children and of the PostgreSQL server; every interval checked completed
  once;
- time to create (and start) and to cancel a backfill of 87,600 hourly intervals, and
  the peak memory while doing so, for 87,600 and 876,000 intervals;
- the memory of a `backfill serve` process (RSS sampled every second) while it works
  through a backfill of 1,000,000 one-minute intervals for --soak-seconds.

Usage: python benchmarks/engine.py [--runs 3000] [--concurrency 8] [--pg URL|--no-pg] [--no-sqlite]
       [--processes 1,2,4] [--soak-seconds 60] [--only throughput,hotpath,processes,create,soak]
"""

from __future__ import annotations

import argparse
import calendar
import gc
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa
from sqlalchemy import func, select

from backfill.domain.model import BlockType, Role
from backfill.domain.pipeline import Block, PipelineDefinition
from backfill.engine.scheduler import Scheduler
from backfill.engine.worker import Worker, WorkerSettings
from backfill.services import backfills as svc
from backfill.services import bootstrap
from backfill.services.actor import Actor
from backfill.store import auth
from backfill.store import backfills as store
from backfill.store import pipelines as pipeline_store
from backfill.store.db import Database, normalize_url
from backfill.store.tables import interval_runs, metadata

NOOP = PipelineDefinition(
    uuid="noop",
    name="noop",
    blocks=(Block(uuid="main", type=BlockType.PYTHON, source="def run(context):\n    return None\n"),),
)


def setup(url: str) -> tuple[Database, Actor, int]:
    db = Database(url)
    metadata.create_all(db.engine)
    with db.write() as conn:
        team = auth.create_team(conn, "bench")
        user = auth.create_user(conn, f"{uuid.uuid4().hex[:6]}@bench.local", team_id=team, role=Role.OWNER)
        pipeline_store.sync(conn, [NOOP], default_team_id=team)
        pid = int(pipeline_store.get_in_team(conn, team, uuid="noop")["id"])
    return db, Actor(team, user), pid


def hours_spec(first_year: int, runs: int, max_active_runs: int) -> svc.BackfillSpec:
    """A backfill of ``runs`` hourly intervals from the start of ``first_year``."""
    start = calendar.timegm((first_year, 1, 1, 0, 0, 0))
    return svc.BackfillSpec(
        start=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start)),
        end=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start + (runs - 1) * 3600)),
        interval_type="hour",
        max_active_runs=max_active_runs,
        run_order="oldest_first",
    )


class WorkerDied(Exception):
    pass


def wait_final(db: Database, ids: list[int], alive: Callable[[], bool] = lambda: True) -> None:
    while True:
        with db.read() as conn:
            statuses = [store.get(conn, i)["status"] for i in ids]
        if all(s in ("completed", "failed") for s in statuses):
            assert set(statuses) == {"completed"}, statuses
            return
        if not alive():
            raise WorkerDied("a worker process died (its traceback is above)")
        time.sleep(0.02)


def check_once(db: Database, ids: list[int], runs: int) -> None:
    """Every interval completed exactly once: one run row each, all completed, attempt 1
    unless a lease expired (none should here)."""
    with db.read() as conn:
        q = select(
            func.count(), func.count(interval_runs.c.interval_start.distinct()), func.max(interval_runs.c.attempt)
        )
        rows, distinct, attempts = conn.execute(
            q.where(interval_runs.c.backfill_id.in_(ids), interval_runs.c.status == "completed")
        ).one()
    assert (rows, distinct) == (runs, runs) and attempts == 1, (rows, distinct, attempts, runs)


def python_loop_seconds() -> float:
    """Wall time of a plain 10,000,000-step Python loop: how fast this machine runs Python.
    Machines of one kind differ (the same code made 1,860 runs/s on one, 780 on another)."""
    t0, total = time.perf_counter(), 0
    for i in range(10_000_000):
        total += i
    return time.perf_counter() - t0


def steal_ticks() -> int:
    """CPU time the hypervisor gave to other guests so far (the ``steal`` of /proc/stat), in ticks."""
    with open("/proc/stat") as f:
        return int(f.readline().split()[8])


class Meter:
    """From its creation to ``stop``: wall time, this process's CPU, the CPU of the
    PostgreSQL server processes serving connections named ``application`` (if given),
    the load average at the start and the CPU steal meanwhile."""

    def __init__(self, db: Database, application: str | None) -> None:
        self.db, self.application = db, application
        self.server_before = {p.pid: cpu_of([p]) for p in self._server()}
        self.load, self.steal = os.getloadavg()[0], steal_ticks()
        self.cpu, self.t0 = time.process_time(), time.perf_counter()

    def _server(self) -> list[psutil.Process]:
        return backends(self.db, self.application) if self.application else []

    def stop(self, runs: int) -> dict[str, float]:
        elapsed, cpu = time.perf_counter() - self.t0, time.process_time() - self.cpu
        server = sum(cpu_of([p]) - self.server_before.get(p.pid, 0.0) for p in self._server())
        return {
            "rate": runs / elapsed,
            "worker_us": cpu / runs * 1e6,
            "server_us": server / runs * 1e6,
            "load": self.load,
            "steal": steal_ticks() - self.steal,
        }


def throughput(url: str, runs: int, concurrency: int) -> dict[str, float]:
    """Runs/s, this process's CPU per run (µs) with one in-process worker and, on
    PostgreSQL, the CPU per run of the server processes serving it; with the load
    average before and the CPU steal (ticks) during the run."""
    postgres = url.startswith("postgresql")
    application = f"bench-{uuid.uuid4().hex[:8]}"
    worker_db = None
    if postgres:
        worker_db = Database(f"{url}&application_name={application}")
    db, actor, pid = setup(url)
    stop = threading.Event()
    worker = Worker(worker_db or db, WorkerSettings(concurrency=concurrency, poll_seconds=0.05))
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    time.sleep(2.0)  # let the child processes start: measure steady state, not start-up
    meter = Meter(db, application if postgres else None)
    bf = svc.create(db, actor, pid, hours_spec(2020, runs, concurrency * 2), start=True)
    wait_final(db, [bf])
    figures = meter.stop(runs)
    stop.set()
    thread.join()
    check_once(db, [bf], runs)
    db.dispose()
    if worker_db is not None:
        worker_db.dispose()
    return figures


def hot_path(url: str, runs: int, concurrency: int) -> dict[str, float]:
    """The worker's database path alone: its real ``step`` drains a backfill with an
    executor that finishes every run at once (no child processes). Runs/s, this
    process's CPU per run and, on PostgreSQL, that of the backends serving the worker."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' helper
    from tests.engine.instant_executor import InstantExecutor

    postgres = url.startswith("postgresql")
    application = f"bench-{uuid.uuid4().hex[:8]}"
    db, actor, pid = setup(url)
    worker_db = Database(f"{url}&application_name={application}") if postgres else db
    bf = svc.create(db, actor, pid, hours_spec(2020, runs, concurrency * 2), start=True)
    worker = Worker(worker_db, WorkerSettings(concurrency=concurrency, lease_seconds=3600))
    executor = InstantExecutor(concurrency)
    worker._executor = executor  # type: ignore[assignment]  # step() outside run(): no children
    worker._definition(pid)  # the pipeline read is cached for the whole drain
    worker.step(claim=True)  # start-up (dead owners' reclaim) and the first claim
    meter = Meter(db, application if postgres else None)
    while len(executor.executed) < runs:
        worker.step(claim=True)
    figures = meter.stop(runs)
    worker.step(claim=True)  # records the last outcomes
    check_once(db, [bf], runs)
    db.dispose()
    if worker_db is not db:
        worker_db.dispose()
    return figures


# ---- several worker processes ----------------------------------------------------------


class CountingWorker(Worker):
    """A worker that adds the runs it claims to a counter shared with the benchmark."""

    def __init__(self, db: Database, settings: WorkerSettings, claimed: Any) -> None:
        super().__init__(db, settings)
        self.claimed = claimed

    def step(self, *, claim: bool = True) -> int:
        n = super().step(claim=claim)
        with self.claimed.get_lock():
            self.claimed.value += n
        return n


def worker_process(url: str, concurrency: int, stop: Any, claimed: Any) -> None:
    """One worker process, as `backfill worker` runs it: a scheduler thread (lease
    expiry) and the worker (its poll interval shortened as in the in-process figure, so
    an idle worker notices new work within 50 ms); ``claimed`` counts its runs."""
    db = Database(url)
    done = threading.Event()
    scheduler = threading.Thread(target=Scheduler(db).run, args=(done,), daemon=True)
    scheduler.start()
    try:
        CountingWorker(db, WorkerSettings(concurrency=concurrency, poll_seconds=0.05), claimed).run(stop)
    finally:
        done.set()
        scheduler.join(5)
        db.dispose()


def cpu_of(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def backends(db: Database, application: str) -> list[psutil.Process]:
    """The PostgreSQL server processes serving connections named ``application``."""
    with db.read() as conn:
        pids = conn.execute(
            sa.text("SELECT pid FROM pg_stat_activity WHERE application_name = :name"), {"name": application}
        ).scalars()
        return [psutil.Process(pid) for pid in pids]


def processes_run(url: str, processes: int, backfills: int, runs: int, concurrency: int) -> dict[str, Any]:
    db, actor, pid = setup(url)
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    postgres = url.startswith("postgresql")
    application = f"bench-{uuid.uuid4().hex[:8]}"
    # PostgreSQL: their server processes, found by name
    worker_url = f"{url}&application_name={application}" if postgres else url

    def server_processes() -> list[psutil.Process]:
        return backends(db, application) if postgres else []

    counters = [ctx.Value("l", 0) for _ in range(processes)]
    workers = [
        ctx.Process(target=worker_process, args=(worker_url, concurrency, stop, counter)) for counter in counters
    ]
    for w in workers:
        w.start()
    time.sleep(3.0 + processes)  # imports and child pools started: steady state
    parents = [psutil.Process(w.pid) for w in workers]
    children = [c for p in parents for c in p.children(recursive=True)]
    server_before = {p.pid: cpu_of([p]) for p in server_processes()}
    before = (cpu_of(parents), cpu_of(children))
    claimed_before = [c.value for c in counters]
    slots = processes * concurrency
    per = runs // backfills
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    ids = [
        svc.create(db, actor, pid, hours_spec(2000 + 2 * i, per, max(2 * slots // backfills, 4)), start=True)
        for i in range(backfills)
    ]
    try:
        wait_final(db, ids, alive=lambda: all(w.is_alive() for w in workers))
    except WorkerDied:
        stop.set()
        for w in workers:
            w.join(60)
        raise
    elapsed = time.perf_counter() - t0
    after = (cpu_of(parents), cpu_of(children))
    shares = [c.value - b for c, b in zip(counters, claimed_before, strict=True)]
    # connections the workers opened meanwhile count in full; none closes (pooled)
    server = sum(cpu_of([p]) - server_before.get(p.pid, 0.0) for p in server_processes())
    stop.set()
    for w in workers:
        w.join(60)
    check_once(db, ids, per * backfills)
    db.dispose()
    done = per * backfills
    return {
        "rate": done / elapsed,
        "shares": "/".join(str(n) for n in shares),
        "worker_us": (after[0] - before[0]) / done * 1e6,
        "children_us": (after[1] - before[1]) / done * 1e6,
        "server_us": server / done * 1e6,
        "load": load,
    }


# ---- memory of a server working through 1,000,000 intervals -------------------------

NOOP_YAML = """uuid: noop
name: noop
blocks:
  - uuid: main
    type: python
    file: main.py
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def soak(url: str, seconds: float, workers: int) -> None:
    """`backfill serve` (API, scheduler, worker slots) on ``url`` works through a backfill
    of 1,000,000 one-minute intervals; its RSS is sampled every second."""
    home = Path(tempfile.mkdtemp(prefix="backfill-soak-"))
    pipeline_dir = home / "project" / "pipelines" / "noop"
    pipeline_dir.mkdir(parents=True)
    (pipeline_dir / "pipeline.yaml").write_text(NOOP_YAML)
    (pipeline_dir / "main.py").write_text("def run(context):\n    return None\n")
    exe = Path(sys.executable).with_name("backfill")
    cmd = [
        str(exe),
        "serve",
        "--project",
        "project",
        "--db",
        url,
        "--port",
        str(free_port()),
        "--workers",
        str(workers),
    ]
    server = subprocess.Popen(cmd, cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        db = Database(url)
        deadline = time.monotonic() + 60
        pid = None
        while pid is None:
            assert server.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.2)
            try:
                team = bootstrap.default_team_id(db)
                with db.read() as conn:
                    pid = int(pipeline_store.get_in_team(conn, team or 0, uuid="noop")["id"])
            except Exception:  # tables or pipeline not there yet
                continue
        spec = svc.BackfillSpec(start="2020-01-01T00:00:00", end="2021-11-25T10:39:00", interval_type="minute")
        spec.max_active_runs = workers
        bf = svc.create(db, Actor(team or 0, None), pid, spec, start=True)
        proc = psutil.Process(server.pid)
        samples: list[tuple[float, float, int]] = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            time.sleep(1.0)
            with db.read() as conn:
                row = store.get(conn, bf)
            samples.append((time.monotonic() - t0, proc.memory_info().rss / 2**20, int(row["runs_completed"])))
        assert row["runs_total"] == 1_000_000, row["runs_total"]
        rss = [m for _, m, _ in samples]
        done = samples[-1][2]
        print(
            f"soak ({url.split(':')[0]}): serve --workers {workers}, 1,000,000 one-minute intervals, "
            f"{seconds:.0f} s: {done:,} runs completed ({done / seconds:.0f}/s); server RSS MiB "
            f"first {rss[0]:.1f}, last {rss[-1]:.1f}, min {min(rss):.1f}, max {max(rss):.1f}"
        )
        print("soak RSS samples (s, MiB, runs completed): " + ", ".join(f"{t:.0f}:{m:.1f}:{n}" for t, m, n in samples))
        db.dispose()
    finally:
        server.terminate()
        try:
            server.wait(40)
        except subprocess.TimeoutExpired:
            server.kill()


class RssSampler(threading.Thread):
    """Samples this process's RSS every millisecond; stop() returns the peak growth in MiB."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process()
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self.done = threading.Event()
        self.start()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.001)

    def stop(self) -> float:
        self.done.set()
        self.join()
        return (self.peak - self.base) / 2**20


def create_cancel(url: str, hours: int, *, trace: bool) -> tuple[float, float, float, float]:
    db, actor, pid = setup(url)
    gc.collect()
    sampler = RssSampler()
    if trace:
        tracemalloc.start()
    end = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(946684800 + (hours - 1) * 3600))
    spec = svc.BackfillSpec(start="2000-01-01T00:00:00", end=end, interval_type="hour")
    t0 = time.perf_counter()
    bf = svc.create(db, actor, pid, spec, start=True)
    t_create = time.perf_counter() - t0
    t0 = time.perf_counter()
    svc.cancel(db, actor, bf)
    t_cancel = time.perf_counter() - t0
    with db.read() as conn:
        row = store.get(conn, bf)
    assert row["runs_total"] == hours and row["status"] == "cancelled"
    allocated = tracemalloc.get_traced_memory()[1] / 2**20 if trace else 0.0
    tracemalloc.stop()
    peak = sampler.stop()
    db.dispose()
    return t_create * 1000, t_cancel * 1000, peak, allocated


def pg_schema_url(base: str) -> str:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with sa.create_engine(normalize_url(base)).begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--pg", default=os.environ.get("BACKFILL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
    )
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--processes", default="1,2,4", help="worker process counts")
    parser.add_argument("--process-runs", type=int, default=6000, help="runs per multi-process measurement")
    parser.add_argument("--soak-seconds", type=float, default=60.0)
    parser.add_argument("--only", default="throughput,processes,create,soak")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="backfill-bench-"))
    print(
        f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, load {os.getloadavg()[0]:.1f}, "
        f"a 10M-step Python loop takes {python_loop_seconds():.2f} s (compares machines of one kind)"
    )
    targets = [] if args.no_sqlite else [("sqlite", lambda: f"sqlite:///{tmp / uuid.uuid4().hex}.db")]
    if not args.no_pg:
        targets.append(("postgresql", lambda: pg_schema_url(args.pg)))
    for name, make_url in targets:
        rates = [
            ("throughput", throughput, "no-op runs/s end to end"),
            ("hotpath", hot_path, "worker hot path alone (instant executor), runs/s"),
        ]
        for part, measure, label in rates:
            if part not in parts:
                continue
            t = measure(make_url(), args.runs, args.concurrency)
            server = f", PostgreSQL server CPU {t['server_us']:.0f} us/run" if name == "postgresql" else ""
            print(
                f"{name}: {label} ({args.runs} runs, concurrency {args.concurrency}): "
                f"{t['rate']:.0f}; worker process CPU {t['worker_us']:.0f} us/run{server} "
                f"(load before {t['load']:.2f}, CPU steal {t['steal']:.0f} ticks)"
            )
        if "create" in parts:
            for hours in (87_600, 876_000):
                c, k, mem, _ = create_cancel(make_url(), hours, trace=False)
                _, _, _, alloc = create_cancel(make_url(), hours, trace=True)
                figures = (
                    f"create+start {c:.1f} ms, cancel {k:.1f} ms, "
                    f"peak RSS growth {mem:.1f} MiB, peak Python allocations {alloc:.2f} MiB"
                )
                print(f"{name}: {hours} hourly intervals: {figures}")
    if "processes" in parts:
        for name, make_url in targets:
            for backfills in (1, 8):
                for n in (int(x) for x in args.processes.split(",")):
                    try:
                        r = processes_run(make_url(), n, backfills, args.process_runs, args.concurrency)
                    except WorkerDied as exc:
                        print(f"{name}: {n} worker process(es), {backfills} backfill(s): FAILED, {exc}")
                        continue
                    server = f", PostgreSQL server {r['server_us']:.0f} us" if name == "postgresql" else ""
                    print(
                        f"{name}: {n} worker process(es) x concurrency {args.concurrency}, {backfills} backfill(s), "
                        f"{args.process_runs} runs: {r['rate']:.0f} runs/s, runs per process {r['shares']}; "
                        f"CPU per run: workers {r['worker_us']:.0f} us, "
                        f"their executor children {r['children_us']:.0f} us{server} (load before {r['load']:.2f})"
                    )
    if "soak" in parts and args.soak_seconds > 0:
        url = pg_schema_url(args.pg) if not args.no_pg else f"sqlite:///{tmp / 'soak.db'}"
        soak(url, args.soak_seconds, args.concurrency)


if __name__ == "__main__":
    main()
