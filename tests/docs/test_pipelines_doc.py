"""The example project of docs/pipelines.md loads with the real loader and runs through
the real services and worker, so the documentation cannot drift from the code.

Every fenced block of the document whose first line is ``# file: PATH`` (or
``-- file: PATH`` for SQL) is written to PATH in a temporary project."""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.engine.procs import wait_for

from backfill.engine.worker import Worker, WorkerSettings
from backfill.pipelines.loader import load_project
from backfill.services import backfills, bootstrap
from backfill.services import pipelines as pipeline_service
from backfill.services import runs as run_service
from backfill.services.actor import Actor
from backfill.store.db import Database
from backfill.store.tables import interval_runs

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "pipelines.md"
FENCE = re.compile(r"^```[a-z]*\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)
MARKER = re.compile(r"^(?:#|--) file: (?P<path>\S+)\n")


def documented_files() -> dict[str, str]:
    files: dict[str, str] = {}
    for fence in FENCE.finditer(DOC.read_text()):
        body = fence.group("body")
        marker = MARKER.match(body)
        if marker:
            path = marker.group("path")
            assert path not in files, f"{path} is shown twice in {DOC.name}"
            files[path] = body
    return files


def write_project(root: Path) -> Path:
    for relative, text in documented_files().items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return root


def test_the_document_shows_a_project() -> None:
    files = documented_files()
    assert "connections.yaml" in files
    assert {p for p in files if p.endswith("pipeline.yaml")} == {
        "pipelines/hello/pipeline.yaml",
        "pipelines/orders_daily/pipeline.yaml",
    }


def test_documented_pipelines_load_and_run(
    db: Database, team: Actor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse = tmp_path / "warehouse.db"
    monkeypatch.setenv("WAREHOUSE_PATH", str(warehouse))
    project = write_project(tmp_path / "project")

    loaded = load_project(project)
    assert [e.message for e in loaded.errors] == []
    assert [p.uuid for p in loaded.pipelines] == ["hello", "orders_daily"]
    orders = next(p for p in loaded.pipelines if p.uuid == "orders_daily")
    assert {b.type.value for b in orders.blocks} == {"python", "sql", "shell"}

    bootstrap.sync_project(db, project, team_id=team.team_id)
    # 2024-03-31 is 23 hours long in Berlin (daylight saving time starts)
    created = {
        uuid: backfills.create(
            db,
            team,
            int(pipeline_service.get_pipeline(db, team, uuid=uuid)["id"]),
            backfills.BackfillSpec(start="2024-03-30", end="2024-04-01"),
            start=True,
        )
        for uuid in ("hello", "orders_daily")
    }

    def statuses() -> set[str]:
        return {str(backfills.get(db, team, i).row["status"]) for i in created.values()}

    stop = threading.Event()
    worker = Worker(db, WorkerSettings(concurrency=2, poll_seconds=0.05), connections=loaded.connections)
    thread = threading.Thread(target=worker.run, args=(stop,), kwargs={"drain_seconds": 10.0}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: statuses() <= {"completed", "failed", "cancelled"}, timeout=120, interval=0.1)
    finally:
        stop.set()
        thread.join(timeout=30)

    with db.read() as conn:
        failures = conn.execute(select(interval_runs.c.error).where(interval_runs.c.status != "completed")).all()
    assert failures == [], failures
    assert statuses() == {"completed"}

    with sqlite3.connect(warehouse) as wh:
        per_day = wh.execute("select day, count(*), min(currency) from orders group by day order by day").fetchall()
    assert per_day == [("2024-03-30", 24, "EUR"), ("2024-03-31", 24, "EUR"), ("2024-04-01", 24, "EUR")]

    with db.read() as conn:
        runs = conn.execute(
            select(interval_runs.c.id, interval_runs.c.rows, interval_runs.c.interval_start).where(
                interval_runs.c.backfill_id == created["orders_daily"]
            )
        ).all()
    # extract 24 + load 24 + count 1 + total 1, as "Return values and rows" says
    assert sorted(r.rows for r in runs) == [50, 50, 50]
    march_31 = next(r for r in runs if r.interval_start.isoformat() == "2024-03-30T23:00:00+00:00")
    log = run_service.read_logs(db, team, int(march_31.id)).content
    assert "24 orders for 2024-03-31" in log
    assert "orders_daily 20240331 (2024-03-30T23:00:00+00:00) loaded by run" in log


def test_every_context_key_jinja_variable_and_shell_variable_is_documented() -> None:
    from datetime import UTC, datetime

    from backfill.engine import blocks

    text = DOC.read_text()
    context = blocks.BlockContext(interval_start=datetime(2024, 1, 1, tzinfo=UTC), interval_end=datetime(2024, 1, 2))
    names = set(context.keys()) | set(context.template_vars())
    shell = set(re.findall(r'"(BACKFILL_[A-Z_]+)"', Path(blocks.__file__).read_text()))
    assert shell, "the shell environment is no longer found in engine/blocks.py"
    missing = sorted(n for n in names | shell if f"`{n}`" not in text)
    assert missing == [], f"document these in docs/pipelines.md: {missing}"
