"""Logs per attempt: the latest by default, any earlier one by number, each with how it
ended, the pipeline version it ran and, for a failed one, its error."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from backfill.domain.errors import NotFound
from backfill.services import backfills as svc
from backfill.services import runs as run_svc
from backfill.services.actor import Actor
from backfill.store import queue
from backfill.store.db import Database

T0 = datetime(2030, 1, 1, tzinfo=UTC)
TRACEBACK = "block 'main' failed: ValueError: bad row\nTraceback (most recent call last):\n  File \"main.py\", line 2"


def attempt(db: Database, result: queue.AttemptResult) -> queue.ClaimedRun:
    with db.write() as conn:
        (run,) = queue.claim(conn, "w", 1, lease_seconds=30, now=T0)
        assert queue.record_attempt(conn, run.key, "w", result, T0)
    return run


def test_each_attempt_has_its_log_version_and_error(db: Database, team: Actor, pipeline_id: int) -> None:
    spec = svc.BackfillSpec(start="2024-01-01", end="2024-01-01", retries=1, retry_delay_seconds=0)
    svc.create(db, team, pipeline_id, spec, start=True)
    first = attempt(db, queue.AttemptResult(ok=False, error=TRACEBACK, log="reading\n", pipeline_version="v1"))
    # before the retry starts: the latest attempt is the failed one, the run not final
    latest = run_svc.read_logs(db, team, first.run_id)
    assert (latest.attempt, latest.attempts, latest.status, latest.run_final) == (1, 1, "failed", False)
    assert latest.complete and latest.error == TRACEBACK

    second = attempt(db, queue.AttemptResult(ok=True, log="done\n", pipeline_version="v2"))
    assert second.run_id == first.run_id and second.attempt == 2
    latest = run_svc.read_logs(db, team, first.run_id)
    assert (latest.attempt, latest.attempts, latest.status, latest.pipeline_version) == (2, 2, "completed", "v2")
    assert (latest.content, latest.error, latest.complete, latest.run_final) == ("done\n", None, True, True)
    one = run_svc.read_logs(db, team, first.run_id, attempt=1)
    assert (one.content, one.status, one.pipeline_version, one.error) == ("reading\n", "failed", "v1", TRACEBACK)
    with pytest.raises(NotFound, match="no attempt 3 \\(attempts 1 to 2\\)"):
        run_svc.read_logs(db, team, first.run_id, attempt=3)


def test_a_failed_attempt_without_output_still_shows_its_error(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = svc.create(
        db, team, pipeline_id, svc.BackfillSpec(start="2024-01-01", end="2024-01-01", retries=0), start=True
    )
    run = attempt(db, queue.AttemptResult(ok=False, error=TRACEBACK, pipeline_version="v1"))
    logs = run_svc.read_logs(db, team, run.run_id)
    assert (logs.content, logs.status, logs.error, logs.pipeline_version) == ("", "failed", TRACEBACK, "v1")
    assert svc.get(db, team, bf).row["status"] == "failed"
