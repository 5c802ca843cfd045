"""Read use cases of interval runs: listings, one run, its logs, and the status totals of
``/metrics``. Each is one read transaction; nothing here changes state (that is
``services.backfills`` and ``store.queue``). Reads of backfills are in
``services.backfills``, reads of pipelines in ``services.pipelines``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import RowMapping

from backfill.domain.errors import ValidationError
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
        bounded = RunQuery(
            statuses=query.statuses,
            issues_only=query.issues_only,
            start_from=lower,
            start_before=upper,
            sort_field=query.sort_field,
            descending=query.descending,
            limit=query.limit,
            offset=query.offset,
        )
        rows, total = store.list_runs(conn, actor.team_id, bounded, pipeline_id=pipeline_id)
        return Page(rows, total)


def get_run(db: Database, actor: Actor, run_id: int) -> RowMapping:
    with db.read() as conn:
        return store.get_run(conn, actor.team_id, run_id)


def read_logs(db: Database, actor: Actor, run_id: int, *, offset: int = 0, limit: int = MAX_LOG_CHUNK) -> LogChunk:
    """The run's captured output (every attempt, concatenated) from character ``offset``.

    ``next_offset`` is where the next call continues; ``complete`` means the run has
    ended and nothing past ``next_offset`` will ever appear (tailing can stop).
    """
    if offset < 0:
        raise ValidationError("offset must be ≥ 0", field="offset")
    with db.read() as conn:
        run = store.get_run(conn, actor.team_id, run_id)
        full = "".join(store.log_parts(conn, run_id))
    chunk = full[offset : offset + max(1, limit)]
    next_offset = min(len(full), offset + len(chunk)) if offset <= len(full) else len(full)
    if offset > len(full):
        chunk = ""
    complete = RunStatus(run["status"]).is_final and next_offset >= len(full)
    return LogChunk(content=chunk, offset=offset, next_offset=next_offset, complete=complete)


# ---- operations --------------------------------------------------------------------------


def status_totals(db: Database) -> StatusTotals:
    with db.read() as conn:
        return store.status_totals(conn)
