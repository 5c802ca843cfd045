"""Engine figures (issue: engine). Prints, does not assert.

- no-op interval runs completed per second, end to end (claim → child process →
  record), SQLite and PostgreSQL;
- time to create (and start) and to cancel a backfill of 87,600 hourly intervals;
- peak memory (RSS) of the process while doing so, for 87,600 and 876,000 intervals
  (flat in the range size means lazy materialization works).

Usage: python benchmarks/engine.py [--runs 3000] [--concurrency 8] [--pg URL|--no-pg]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from pathlib import Path

import psutil
import sqlalchemy as sa

from backfill.domain.model import BlockType, Role
from backfill.domain.pipeline import Block, PipelineDefinition
from backfill.engine.worker import Worker, WorkerSettings
from backfill.services import backfills as svc
from backfill.services.actor import Actor
from backfill.store import auth
from backfill.store import backfills as store
from backfill.store import pipelines as pipeline_store
from backfill.store.db import Database, normalize_url
from backfill.store.tables import metadata

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


def throughput(url: str, runs: int, concurrency: int) -> float:
    db, actor, pid = setup(url)
    spec = svc.BackfillSpec(
        start="2020-01-01T00:00:00",
        end="2020-12-31T23:00:00",
        interval_type="hour",
        max_active_runs=concurrency * 2,
        run_order="oldest_first",
    )
    spec.end = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1577836800 + (runs - 1) * 3600))  # `runs` intervals
    stop = threading.Event()
    worker = Worker(db, WorkerSettings(concurrency=concurrency, poll_seconds=0.05))
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    time.sleep(2.0)  # let the child processes start: measure steady state, not start-up
    t0 = time.perf_counter()
    bf = svc.create(db, actor, pid, spec, start=True)
    while True:
        with db.read() as conn:
            row = store.get(conn, bf)
        if row["status"] in ("completed", "failed"):
            break
        time.sleep(0.02)
    elapsed = time.perf_counter() - t0
    stop.set()
    thread.join()
    assert row["status"] == "completed", row["status"]
    db.dispose()
    return runs / elapsed


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
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="backfill-bench-"))
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    targets = [("sqlite", lambda: f"sqlite:///{tmp / uuid.uuid4().hex}.db")]
    if not args.no_pg:
        targets.append(("postgresql", lambda: pg_schema_url(args.pg)))
    for name, make_url in targets:
        rate = throughput(make_url(), args.runs, args.concurrency)
        print(f"{name}: no-op runs/s end to end ({args.runs} runs, concurrency {args.concurrency}): {rate:.0f}")
        for hours in (87_600, 876_000):
            c, k, mem, _ = create_cancel(make_url(), hours, trace=False)
            _, _, _, alloc = create_cancel(make_url(), hours, trace=True)
            figures = (
                f"create+start {c:.1f} ms, cancel {k:.1f} ms, "
                f"peak RSS growth {mem:.1f} MiB, peak Python allocations {alloc:.2f} MiB"
            )
            print(f"{name}: {hours} hourly intervals: {figures}")


if __name__ == "__main__":
    main()
