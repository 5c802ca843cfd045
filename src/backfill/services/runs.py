"""Read use cases of interval runs: listings, one run, its logs, and the status totals of
``/metrics``. Each is one read transaction; nothing here changes state (that is
``services.backfills`` and ``store.queue``). Reads of backfills are in
``services.backfills``, reads of pipelines in ``services.pipelines``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from sqlalchemy import RowMapping

from backfill.domain.errors import NotFound, ValidationError
from backfill.domain.model import RunStatus
from backfill.domain.timeparse import parse_instant
from backfill.services.actor import Actor
from backfill.services.pages import Page
from backfill.store import backfills as backfill_store
from backfill.store import pipelines as pipeline_store
from backfill.store import runs as store
from backfill.store.db import Database
from backfill.store.runs import RunQuery, StatusTotals

MAX_LOG_CHUNK = 10_000_000
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class LogChunk:
    content: str
    offset: int
    next_offset: int
    complete: bool
    attempt: int = 0
    """The attempt these are the logs of (0: the run has not started yet)."""
    attempts: int = 0
    """Attempts the run has made."""
    status: str | None = None
    """The attempt's outcome: running, completed or failed (None before the first)."""
    pipeline_version: str | None = None
    error: str | None = None
    """A failed attempt's error, with its traceback."""
    run_final: bool = False
    """The run has ended for good: no further attempt will come (unless re-run)."""


# ---- runs ------------------------------------------------------------------------------


def list_backfill_runs(db: Database, actor: Actor, backfill_id: int, query: RunQuery) -> Page:
    with db.read() as conn:
        backfill_store.get(conn, backfill_id, team_id=actor.team_id)
        rows, total = store.list_runs(conn, actor.team_id, query, backfill_id=backfill_id)
        return Page(rows, total)


def _date_bounds(start: str, end: str, timezone: str) -> tuple[datetime, datetime]:
    """``[start, end]`` as UTC bounds on the interval start: a plain date means the whole
    day in ``timezone`` (end inclusive), a datetime an instant."""
    lower = parse_instant(start, field="start_date", timezone=timezone, naive="local")
    if _DATE_ONLY.fullmatch(end.strip()):
        try:
            next_day = date.fromisoformat(end.strip()) + timedelta(days=1)
        except (ValueError, OverflowError) as exc:
            raise ValidationError(f"end_date {end!r} is not a valid date", field="end_date") from exc
        upper = parse_instant(next_day.isoformat(), field="end_date", timezone=timezone, naive="local")
    else:
        upper = parse_instant(end, field="end_date", timezone=timezone, naive="local") + timedelta(microseconds=1)
    if lower >= upper:
        raise ValidationError("start_date must not be after end_date", field="end_date")
    return lower, upper


def list_pipeline_runs(db: Database, actor: Actor, pipeline_id: int, query: RunQuery, *, start: str, end: str) -> Page:
    """Runs of every backfill of a pipeline whose interval starts within ``[start, end]``
    (dates in the pipeline's timezone, else UTC)."""
    with db.read() as conn:
        pipeline = pipeline_store.get_in_team(conn, actor.team_id, pipeline_id=pipeline_id)
        lower, upper = _date_bounds(start, end, pipeline["timezone"] or "UTC")
        bounded = replace(query, start_from=lower, start_before=upper)
        rows, total = store.list_runs(conn, actor.team_id, bounded, pipeline_id=pipeline_id)
        return Page(rows, total)


def get_run(db: Database, actor: Actor, run_id: int) -> RowMapping:
    with db.read() as conn:
        return store.get_run(conn, actor.team_id, run_id)


def _attempt_status(run: RowMapping, attempt: int, error: str | None) -> str:
    """How an attempt ended: the latest one is what the run says; an earlier one failed
    unless it completed and was re-run."""
    status = RunStatus(run["status"])
    if attempt == run["attempt"] and status in (RunStatus.RUNNING, RunStatus.COMPLETED, RunStatus.FAILED):
        return status.value
    return RunStatus.FAILED.value if error else RunStatus.COMPLETED.value


def read_logs(
    db: Database,
    actor: Actor,
    run_id: int,
    *,
    attempt: int | None = None,
    offset: int = 0,
    limit: int = MAX_LOG_CHUNK,
) -> LogChunk:
    """One attempt's captured output (default the latest) from character ``offset``, with
    how it ended, the pipeline version it ran and, if it failed, its error.

    ``next_offset`` is where the next call continues; ``complete`` means the attempt has
    ended and nothing past ``next_offset`` will ever appear (tailing can stop).
    """
    if offset < 0:
        raise ValidationError("offset must be ≥ 0", field="offset")
    with db.read() as conn:
        run = store.get_run(conn, actor.team_id, run_id)
        attempts = int(run["attempt"])
        number = attempts if attempt is None else attempt
        if attempt is not None and not 1 <= attempt <= attempts:
            made = f"attempts 1 to {attempts}" if attempts > 1 else ("attempt 1" if attempts else "no attempt yet")
            raise NotFound(f"transfer run {run_id} has no attempt {attempt} ({made})")
        record = store.attempt_log(conn, run_id, number) if number else None
    latest = number == attempts
    full = str(record["content"]) if record is not None else ""
    error = record["error"] if record is not None and record["error"] else None
    if error is None and latest and run["status"] != RunStatus.COMPLETED.value:
        error = run["error"]
    version = record["pipeline_version"] if record is not None else None
    if version is None and latest:
        version = run["pipeline_version"]
    chunk = full[offset : offset + max(1, limit)] if offset <= len(full) else ""
    next_offset = min(len(full), offset + len(chunk)) if offset <= len(full) else len(full)
    ended = not latest or RunStatus(run["status"]) is not RunStatus.RUNNING
    complete = ended and (number > 0 or RunStatus(run["status"]).is_final) and next_offset >= len(full)
    return LogChunk(
        content=chunk,
        offset=offset,
        next_offset=next_offset,
        complete=complete,
        attempt=number,
        attempts=attempts,
        status=_attempt_status(run, number, error) if number else None,
        pipeline_version=version,
        error=error,
        run_final=RunStatus(run["status"]).is_final,
    )


# ---- operations --------------------------------------------------------------------------


def status_totals(db: Database) -> StatusTotals:
    with db.read() as conn:
        return store.status_totals(conn)
