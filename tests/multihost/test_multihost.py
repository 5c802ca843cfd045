"""Workers on three hosts against one PostgreSQL database.

Three network namespaces stand for three machines (each its own hostname and network
link); each runs ``backfill worker`` processes that reach PostgreSQL over its link.
One backfill of a few thousand hourly intervals runs across them; part-way through one
host is lost (its link downed, its workers killed with SIGKILL) and the others take
over its runs once their leases expire. The blocks write a journal (host, interval,
start and end stamps) to a shared file, so the test checks what really executed,
independent of what the database says.

PostgreSQL only (the many-machines set-up is PostgreSQL by definition): the test uses
``BACKFILL_TEST_DATABASE_URL``, else the Makefile's ``PG_TEST_URL``, in a schema of its own.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
import sqlalchemy as sa
from tests.engine.procs import wait_for
from tests.factories import add_pipeline
from tests.multihost.netns import Host, HostsUnavailable, hosts

from backfill.domain.model import BlockType, Role
from backfill.domain.pipeline import Block, PipelineDefinition
from backfill.services import backfills as svc
from backfill.services.actor import Actor
from backfill.store import auth, queue
from backfill.store import backfills as store
from backfill.store.db import Database, normalize_url
from backfill.store.tables import interval_runs, metadata

pytestmark = pytest.mark.slow

PG_URL = os.environ.get("BACKFILL_TEST_DATABASE_URL") or os.environ.get(
    "PG_TEST_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
HOSTS = 3
WORKERS_PER_HOST = 1
CONCURRENCY = 4
# Above what two hosts hold (8) and below the 12 slots of all three: the cap binds across
# hosts, and every host must take part to reach it.
MAX_ACTIVE_RUNS = 10
LEASE_SECONDS = 2.0

JOURNALED = """
import json, random, socket, time
def run(context):
    started = time.time()
    time.sleep(random.uniform(0.03, 0.06))
    line = json.dumps({"host": socket.gethostname(), "start": context.interval_start.isoformat(),
                       "attempt": context.attempt, "t0": started, "t1": time.time()})
    with open(context.variables["journal"], "a") as fh:
        fh.write(line + "\\n")
    return {"rows": 1}
"""


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    schema = f"mh_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(normalize_url(PG_URL))
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except sa.exc.OperationalError as exc:
        pytest.fail(f"the multi-host test needs PostgreSQL at {PG_URL}: {exc.orig}")
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def test_hosts() -> Iterator[list[Host]]:
    parts = urlsplit(PG_URL)
    try:
        with hosts(HOSTS, target=(parts.hostname or "127.0.0.1", parts.port or 5432)) as made:
            yield made
    except HostsUnavailable as exc:
        pytest.fail(str(exc))


def start_workers(host: Host, url: str, log_dir: Path) -> None:
    env = {**os.environ, "BACKFILL_SCHEDULER_INTERVAL_SECONDS": "0.2", "BACKFILL_LOG_LEVEL": "WARNING"}
    for n in range(WORKERS_PER_HOST):
        argv = [sys.executable, "-m", "backfill", "worker", "--db", host.database_url(url)]
        argv += ["--concurrency", str(CONCURRENCY), "--lease-seconds", str(LEASE_SECONDS)]
        host.start(argv, env=env, log=str(log_dir / f"{host.name}-{n}.log"))


def read_journal(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def max_overlap(entries: list[dict[str, object]]) -> int:
    events = sorted(
        [(float(e["t0"]), 1) for e in entries] + [(float(e["t1"]), -1) for e in entries]  # type: ignore[arg-type]
    )
    peak = current = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def test_workers_on_three_hosts_share_one_backfill_and_survive_a_lost_host(
    pg_schema_url: str, test_hosts: list[Host], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db = Database(pg_schema_url)
    metadata.create_all(db.engine)
    with db.write() as conn:
        team_id = auth.create_team(conn, "Data team")
        user_id = auth.create_user(conn, "owner@example.com", team_id=team_id, role=Role.OWNER)
    team = Actor(team_id=team_id, user_id=user_id)
    pipeline_id = add_pipeline(
        db,
        team,
        PipelineDefinition(
            uuid="journaled",
            name="journaled",
            blocks=(Block(uuid="main", type=BlockType.PYTHON, source=JOURNALED),),
        ),
    )
    journal = tmp_path / "journal.jsonl"
    spec = svc.BackfillSpec(
        start="2024-01-01T00:00:00",
        end="2024-03-24T07:00:00",  # 2,000 hourly intervals
        interval_type="hour",
        max_active_runs=MAX_ACTIVE_RUNS,
        retries=3,
        retry_delay_seconds=0.1,
        variables={"journal": str(journal)},
    )
    backfill_id = svc.create(db, team, pipeline_id, spec, start=True)
    request.addfinalizer(db.dispose)
    with db.read() as conn:
        total = int(store.get(conn, backfill_id)["runs_total"])
    assert total == 2000

    began = time.monotonic()
    for host in test_hosts:
        start_workers(host, pg_schema_url, tmp_path)
    lost = test_hosts[-1]

    def done() -> int:
        return len(read_journal(journal))

    def has_status(*wanted: str) -> bool:
        with db.read() as conn:
            return str(store.get(conn, backfill_id)["status"]) in wanted

    def held_by_lost_host() -> set[object]:
        with db.read() as conn:
            return {
                r[0]
                for r in conn.execute(
                    sa.select(interval_runs.c.interval_start).where(
                        interval_runs.c.backfill_id == backfill_id,
                        interval_runs.c.status == "running",
                        interval_runs.c.lease_owner.like(f"{lost.name}:%"),
                    )
                )
            }

    # Let every host do a share, then lose the last one while it holds runs: once its link
    # is down it can record nothing, so what it holds then is what it held when it was lost.
    wait_for(lambda: done() >= total // 3, timeout=180)
    wait_for(lambda: bool(held_by_lost_host()), timeout=60, interval=0.01)
    lost.cut_off()
    before_loss = read_journal(journal)
    held = held_by_lost_host()
    assert held, "the lost host held no run when its link went down"
    for proc in lost.processes:
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        psutil.wait_procs(children, timeout=10)
    lost_at = time.time()

    wait_for(lambda: has_status("completed", "failed"), timeout=240, interval=0.5)
    wall = time.monotonic() - began
    entries = read_journal(journal)

    # Every interval completed exactly once in the database, nothing left running.
    with db.read() as conn:
        rows = conn.execute(sa.select(interval_runs).where(interval_runs.c.backfill_id == backfill_id)).mappings().all()
        counts = queue.recount(conn, backfill_id)
        row = store.get(conn, backfill_id)
    assert row["status"] == "completed"
    assert len(rows) == total
    assert all(r["status"] == "completed" and r["lease_owner"] is None for r in rows)
    assert (row["runs_completed"], row["runs_failed"], row["runs_running"]) == (counts.completed, 0, 0) == (total, 0, 0)

    # Every interval executed to its end at least once; repeats only where a lost lease made them.
    executions = Counter(str(e["start"]) for e in entries)
    assert len(executions) == total
    repeats = sum(n - 1 for n in executions.values())

    # max_active_runs held across the hosts, from the blocks' own stamps.
    peak = max_overlap(entries)
    assert 2 <= peak <= MAX_ACTIVE_RUNS

    # Work on every host before the loss; none on the lost host after it. The share is not
    # even (printed below): a worker that finds the backfill's row locked by another one's
    # claim (SKIP LOCKED) waits for its next poll, so busy workers win most claims.
    per_host = Counter(str(e["host"]) for e in before_loss)
    assert set(per_host) == {h.name for h in test_hosts}, per_host
    assert not [e for e in entries if e["host"] == lost.name and float(e["t1"]) > lost_at + 0.5]  # type: ignore[arg-type]

    # The runs the lost host held came back (as new attempts) and were completed by the others.
    recovered = [r for r in rows if r["interval_start"] in held]
    assert len(recovered) == len(held)
    assert all(int(r["attempt"]) >= 2 and not str(r["lease_owner"] or "").startswith(lost.name) for r in recovered)
    survivors = [h for h in test_hosts if h is not lost]
    assert all(p.poll() is None for h in survivors for p in h.processes), "a surviving worker died"
    print(
        f"\nmulti-host: {total} intervals on {HOSTS} hosts × {WORKERS_PER_HOST} worker(s) × {CONCURRENCY} slots, "
        f"max_active_runs {MAX_ACTIVE_RUNS} (peak seen {peak}); before the loss {dict(per_host)}; "
        f"lost {lost.name} holding {len(held)} runs, all recovered; repeated executions {repeats}; wall {wall:.1f} s"
    )
