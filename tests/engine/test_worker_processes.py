"""The engine with real worker processes: kill -9, several workers, cancel races, retry.

Each block appends one line to a journal file when it starts and when it ends, so the
tests can check what really executed, independent of what the database says."""

from __future__ import annotations

import signal
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import select
from tests.engine.procs import kill_tree, start_worker, wait_for, workers
from tests.factories import add_pipeline

from backfill.domain.model import BlockType
from backfill.domain.pipeline import Block, PipelineDefinition
from backfill.services import backfills as svc
from backfill.services.actor import Actor
from backfill.store import backfills as store
from backfill.store import queue
from backfill.store.db import Database
from backfill.store.tables import interval_runs

pytestmark = pytest.mark.slow

JOURNALED = """
import os, time
def run(context):
    path = context.variables["journal"]
    def note(event):
        with open(path, "a") as fh:
            fh.write(f"{event} {context.ds} {context.attempt} {time.time():.6f} {os.getpid()}\\n")
    note("start")
    time.sleep(float(context.variables.get("sleep", 0.2)))
    flag = context.variables.get("fail_flag")
    if flag and os.path.exists(flag) and context.ds in context.variables.get("fail_days", []):
        raise RuntimeError(f"planned failure on {context.ds}")
    note("end")
    return {"rows": 1}
"""


def journal_pipeline(db: Database, team: Actor) -> int:
    return add_pipeline(
        db,
        team,
        PipelineDefinition(
            uuid="journaled",
            name="journaled",
            blocks=(Block(uuid="main", type=BlockType.PYTHON, source=JOURNALED),),
        ),
    )


def read_journal(path: Path) -> list[tuple[str, str, int, float]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        event, ds, attempt, ts, _pid = line.split()
        out.append((event, ds, int(attempt), float(ts)))
    return out


def writers_after(path: Path, t: float) -> set[int]:
    """Pids of the processes that wrote to the journal after time ``t``."""
    return {int(line.split()[4]) for line in path.read_text().splitlines() if float(line.split()[3]) > t}


def dead(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE  # this VM's PID 1 does not reap orphans
    except psutil.NoSuchProcess:
        return True


def status(db: Database, backfill_id: int) -> str:
    with db.read() as conn:
        return str(store.get(conn, backfill_id)["status"])


def runs(db: Database, backfill_id: int) -> list[dict[str, Any]]:
    with db.read() as conn:
        return [
            dict(r)
            for r in conn.execute(select(interval_runs).where(interval_runs.c.backfill_id == backfill_id)).mappings()
        ]


def create(db: Database, team: Actor, pipeline_id: int, journal: Path, start: str, end: str, **kw: object) -> int:
    variables = {"journal": str(journal), **kw.pop("variables", {})}  # type: ignore[dict-item]
    spec = svc.BackfillSpec(start=start, end=end, variables=variables, **kw)  # type: ignore[arg-type]
    return svc.create(db, team, pipeline_id, spec, start=True)


def max_overlap(journal: list[tuple[str, str, int, float]]) -> int:
    """Peak number of blocks executing at once, from their own start/end stamps."""
    events = sorted((ts, 1 if ev == "start" else -1) for ev, _, _, ts in journal)
    peak = current = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def test_kill_9_worker_mid_run_every_interval_completes_once(
    db: Database, db_url: str, team: Actor, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.txt"
    pid = journal_pipeline(db, team)
    bf = create(
        db,
        team,
        pid,
        journal,
        "2024-01-01",
        "2024-01-30",
        max_active_runs=6,
        retries=2,
        retry_delay_seconds=0.1,
        variables={"sleep": 0.4},
    )
    victim = start_worker(db_url, concurrency=3, lease_seconds=1.5, log=tmp_path / "victim.log")
    try:
        wait_for(lambda: sum(1 for e in read_journal(journal) if e[0] == "end") >= 3, timeout=60)
        children = psutil.Process(victim.pid).children(recursive=True)
        victim.send_signal(signal.SIGKILL)  # the worker alone: its children must notice by themselves
        victim.wait(timeout=30)
        killed_at = time.time()
        wait_for(lambda: all(dead(c) for c in children), timeout=15)
        executor_pids = {c.pid for c in children}
        with workers(db_url, n=1, concurrency=3, lease_seconds=1.5):
            wait_for(lambda: status(db, bf) in ("completed", "failed"), timeout=120)
    finally:
        if victim.poll() is None:
            kill_tree(victim)
    assert status(db, bf) == "completed"
    rows = runs(db, bf)
    assert len(rows) == 30
    assert len({r["interval_start"] for r in rows}) == 30
    assert all(r["status"] == "completed" for r in rows)
    assert all(r["lease_owner"] is None for r in rows)
    # the runs the victim held were retried as new attempts after its lease expired
    assert any(int(r["attempt"]) > 1 for r in rows)
    ended = Counter(ds for ev, ds, _, _ in read_journal(journal) if ev == "end")
    assert set(ended) == {f"2024-01-{d:02d}" for d in range(1, 31)}
    # nothing of the victim kept running after the kill: its children died with it
    # nothing of the victim ran on after the kill: its executor children died with it
    assert executor_pids
    assert not writers_after(journal, killed_at + 0.5) & executor_pids
    with db.read() as conn:
        counts = queue.recount(conn, bf)
        row = store.get(conn, bf)
    assert (row["runs_completed"], row["runs_running"], row["runs_failed"]) == (counts.completed, 0, 0)


def test_several_workers_never_exceed_max_active_runs(db: Database, db_url: str, team: Actor, tmp_path: Path) -> None:
    journal = tmp_path / "journal.txt"
    pid = journal_pipeline(db, team)
    bf = create(db, team, pid, journal, "2024-01-01", "2024-01-24", max_active_runs=3, variables={"sleep": 0.15})
    with workers(db_url, n=3, concurrency=4):  # 12 slots, 3 schedulers, cap 3
        wait_for(lambda: status(db, bf) == "completed", timeout=120)
    entries = read_journal(journal)
    assert max_overlap(entries) <= 3
    assert max_overlap(entries) >= 2  # it did run in parallel
    started = Counter(ds for ev, ds, _, _ in entries if ev == "start")
    assert all(n == 1 for n in started.values()) and len(started) == 24  # no interval ran twice


def test_cancel_races(db: Database, db_url: str, team: Actor, tmp_path: Path) -> None:
    pid = journal_pipeline(db, team)
    with workers(db_url, n=2, concurrency=3):
        for i in range(8):
            journal = tmp_path / f"journal{i}.txt"
            year = 2000 + i
            bf = create(
                db,
                team,
                pid,
                journal,
                f"{year}-01-01",
                f"{year}-01-30",
                max_active_runs=4,
                variables={"sleep": 0.05 + 0.05 * (i % 4)},
            )
            wait_for(lambda: any(r["status"] != "queued" for r in runs(db, bf)), timeout=30, interval=0.01)  # noqa: B023 (called here, in this iteration)
            svc.cancel(db, team, bf)
            cancelled_at = datetime.now(UTC)
            after_cancel = runs(db, bf)
            assert status(db, bf) == "cancelled"
            assert not any(r["status"] == "queued" for r in after_cancel)
            running_then = {r["id"] for r in after_cancel if r["status"] == "running"}
            wait_for(lambda: all(r["status"] != "running" for r in runs(db, bf)), timeout=30)  # noqa: B023
            final = runs(db, bf)
            for r in final:
                assert r["started_at"] is None or r["started_at"] <= cancelled_at  # none started after
                if r["id"] in running_then:
                    assert r["status"] == "completed"  # running ones finished and were recorded
            assert status(db, bf) == "cancelled"
            with db.read() as conn:
                counts = queue.recount(conn, bf)
                row = store.get(conn, bf)
            unmaterialized = row["runs_total"] - row["runs_created"]
            assert (row["runs_created"], row["runs_cancelled"], row["runs_completed"]) == (
                counts.created,
                counts.cancelled + unmaterialized,
                counts.completed,
            )
            assert row["runs_completed"] + row["runs_failed"] + row["runs_cancelled"] == row["runs_total"]


def test_retry_reruns_only_failed_intervals(db: Database, db_url: str, team: Actor, tmp_path: Path) -> None:
    journal = tmp_path / "journal.txt"
    flag = tmp_path / "fail.flag"
    flag.write_text("x")
    pid = journal_pipeline(db, team)
    bad = ["2024-02-02", "2024-02-05"]
    bf = create(
        db,
        team,
        pid,
        journal,
        "2024-02-01",
        "2024-02-06",
        max_active_runs=6,
        retries=0,
        variables={"sleep": 0.01, "fail_flag": str(flag), "fail_days": bad},
    )
    with workers(db_url, n=1, concurrency=3):
        wait_for(lambda: status(db, bf) == "failed", timeout=60)
        detail = svc.get(db, team, bf)
        assert sorted(e["interval_start"].strftime("%Y-%m-%d") for e in detail.error_report) == bad
        assert all("planned failure" in e["error"] for e in detail.error_report)
        flag.unlink()
        svc.retry(db, team, bf)
        wait_for(lambda: status(db, bf) == "completed", timeout=60)
    starts = Counter(ds for ev, ds, _, _ in read_journal(journal) if ev == "start")
    assert {ds for ds, n in starts.items() if n == 2} == set(bad)
    assert {ds for ds, n in starts.items() if n == 1} == {
        "2024-02-01",
        "2024-02-03",
        "2024-02-04",
        "2024-02-06",
    }


FAULTY = """
import os, sys, time
def run(context):
    kind = context.variables["kinds"].get(context.ds, "ok")
    if kind == "raise":
        raise ValueError("bad input row 17")
    if kind == "exit":
        os._exit(3)
    if kind == "sleep":
        time.sleep(30)
    if kind == "loud":
        sys.stdout.write("x" * 3_000_000)
        sys.stdout.flush()
    return {"rows": 5}
"""


def test_faulty_blocks_are_handled_and_reported(db: Database, db_url: str, team: Actor) -> None:
    pid = add_pipeline(
        db,
        team,
        PipelineDefinition(
            uuid="faulty", name="faulty", blocks=(Block(uuid="main", type=BlockType.PYTHON, source=FAULTY),)
        ),
    )
    kinds = {"2024-03-01": "raise", "2024-03-02": "exit", "2024-03-03": "sleep", "2024-03-04": "loud"}
    spec = svc.BackfillSpec(
        start="2024-03-01",
        end="2024-03-05",
        variables={"kinds": kinds},
        timeout_seconds=2,
        retries=0,
        max_active_runs=5,
    )
    bf = svc.create(db, team, pid, spec, start=True)
    with workers(db_url, n=1, concurrency=5):
        wait_for(lambda: status(db, bf) == "failed", timeout=60)
    by_day = {r["interval_start"].strftime("%Y-%m-%d"): r for r in runs(db, bf)}
    assert by_day["2024-03-01"]["status"] == "failed" and "bad input row 17" in str(by_day["2024-03-01"]["error"])
    assert by_day["2024-03-02"]["status"] == "failed" and "exit" in str(by_day["2024-03-02"]["error"]).lower()
    assert by_day["2024-03-03"]["status"] == "failed" and "timed out" in str(by_day["2024-03-03"]["error"])
    assert by_day["2024-03-04"]["status"] == "completed" and by_day["2024-03-04"]["rows"] == 5
    assert by_day["2024-03-05"]["status"] == "completed"
    detail = svc.get(db, team, bf)
    assert len(detail.error_report) == 3
    assert detail.row["rows_total"] == 10
    from backfill.store.tables import run_logs

    with db.read() as conn:
        loud = conn.execute(
            select(run_logs.c.content).where(run_logs.c.run_id == by_day["2024-03-04"]["id"])
        ).scalar_one()
    assert len(loud) < 1_100_000  # 3 MB printed, stored capped with a marker
    assert "truncated" in loud


CHATTY = """
import time
def run(context):
    print("hello from", context.ds, flush=True)
    time.sleep(4)
    print("bye", flush=True)
"""


def test_output_of_a_running_attempt_can_be_tailed(db: Database, db_url: str, team: Actor) -> None:
    from backfill.store.tables import run_logs

    pid = add_pipeline(
        db,
        team,
        PipelineDefinition(
            uuid="chatty", name="chatty", blocks=(Block(uuid="main", type=BlockType.PYTHON, source=CHATTY),)
        ),
    )
    bf = svc.create(db, team, pid, svc.BackfillSpec(start="2024-05-01", end="2024-05-01"), start=True)

    def partial() -> str:
        with db.read() as conn:
            return "".join(conn.execute(select(run_logs.c.content)).scalars())

    with workers(db_url, n=1, concurrency=1):
        wait_for(lambda: "hello from 2024-05-01" in partial(), timeout=30)
        assert status(db, bf) == "running"
        assert "bye" not in partial()
        wait_for(lambda: status(db, bf) == "completed", timeout=30)
    assert "bye" in partial()
    assert partial().count("hello from") == 1
