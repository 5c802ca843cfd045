"""Read-only queries over interval runs and their logs (and the small aggregates the
HTTP list endpoints and ``/metrics`` need). Every status change of a run lives in
``queue.py``; nothing here writes.

Every query is scoped to a team through the run's backfill, so another team's run id
behaves exactly like a missing one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, RowMapping, and_, case, func, select

from backfill.domain.errors import NotFound
from backfill.domain.model import ACTIVE_BACKFILL_STATUSES, RunStatus
from backfill.store.tables import backfills, interval_runs, run_logs

SORT_COLUMNS = {
    "data_date": interval_runs.c.interval_start,
    "created_time": interval_runs.c.created_at,
    "ended_time": interval_runs.c.ended_at,
}
ISSUE_STATUSES = (RunStatus.FAILED.value, RunStatus.CANCELLED.value)
_ACTIVE = [s.value for s in ACTIVE_BACKFILL_STATUSES]

# What a run listing returns: the run plus what is needed to render its data date.
_RUN_COLUMNS = (
    interval_runs.c.id,
    interval_runs.c.backfill_id,
    interval_runs.c.pipeline_id,
    interval_runs.c.interval_start,
    interval_runs.c.interval_end,
    interval_runs.c.status,
    interval_runs.c.attempt,
    interval_runs.c.created_at,
    interval_runs.c.queued_at,
    interval_runs.c.started_at,
    interval_runs.c.ended_at,
    interval_runs.c.duration,
    interval_runs.c.rows,
    interval_runs.c.error,
    interval_runs.c.pipeline_version,
    backfills.c.timezone,
    backfills.c.interval_type,
    backfills.c.cron,
)


@dataclass(frozen=True)
class RunQuery:
    """Filters, sort and page of a run listing. ``statuses`` are canonical (lowercase);
    ``start_from`` / ``start_before`` bound ``interval_start`` (inclusive / exclusive)."""

    statuses: Sequence[str] | None = None
    issues_only: bool = False
    start_from: datetime | None = None
    start_before: datetime | None = None
    sort_field: str = "data_date"
    descending: bool = False
    limit: int = 100
    offset: int = 0


def _conditions(query: RunQuery) -> list[ColumnElement[bool]]:
    cond: list[ColumnElement[bool]] = []
    statuses: set[str] | None = set(query.statuses) if query.statuses is not None else None
    if query.issues_only:
        statuses = set(ISSUE_STATUSES) if statuses is None else statuses & set(ISSUE_STATUSES)
    if statuses is not None:
        cond.append(interval_runs.c.status.in_(sorted(statuses)))
    if query.start_from is not None:
        cond.append(interval_runs.c.interval_start >= query.start_from)
    if query.start_before is not None:
        cond.append(interval_runs.c.interval_start < query.start_before)
    return cond


def list_runs(
    conn: Connection,
    team_id: int,
    query: RunQuery,
    *,
    backfill_id: int | None = None,
    pipeline_id: int | None = None,
) -> tuple[list[RowMapping], int]:
    """Runs of one backfill or of one pipeline (in ``team_id``), with the total count
    matching the filters. The caller checks that the backfill / pipeline exists."""
    cond = [backfills.c.team_id == team_id, *_conditions(query)]
    if backfill_id is not None:
        cond.append(interval_runs.c.backfill_id == backfill_id)
    if pipeline_id is not None:
        cond.append(interval_runs.c.pipeline_id == pipeline_id)
    where = and_(*cond)
    joined = interval_runs.join(backfills, backfills.c.id == interval_runs.c.backfill_id)
    total = conn.execute(select(func.count()).select_from(joined).where(where)).scalar_one()
    column = SORT_COLUMNS[query.sort_field]
    order = column.desc() if query.descending else column.asc()
    tie = interval_runs.c.id.desc() if query.descending else interval_runs.c.id.asc()
    q = (
        select(*_RUN_COLUMNS)
        .select_from(joined)
        .where(where)
        .order_by(order.nulls_last(), tie)
        .limit(query.limit)
        .offset(query.offset)
    )
    return list(conn.execute(q).mappings()), int(total)


def get_run(conn: Connection, team_id: int, run_id: int) -> RowMapping:
    """One run with its per-block results; NotFound when absent or in another team."""
    q = (
        select(*_RUN_COLUMNS, interval_runs.c.block_results, interval_runs.c.tries)
        .select_from(interval_runs.join(backfills, backfills.c.id == interval_runs.c.backfill_id))
        .where(interval_runs.c.id == run_id, backfills.c.team_id == team_id)
    )
    row = conn.execute(q).mappings().first()
    if row is None:
        raise NotFound(f"transfer run {run_id} not found")
    return row


def attempt_log(conn: Connection, run_id: int, attempt: int) -> RowMapping | None:
    """One attempt's record (output, pipeline version, error), if it left one."""
    q = select(run_logs.c.content, run_logs.c.pipeline_version, run_logs.c.error).where(
        run_logs.c.run_id == run_id, run_logs.c.attempt == attempt
    )
    return conn.execute(q).mappings().first()


def log_parts(conn: Connection, run_id: int) -> list[str]:
    """The captured output of every attempt of a run, oldest first."""
    q = select(run_logs.c.content).where(run_logs.c.run_id == run_id).order_by(run_logs.c.id)
    return [str(c) for c in conn.execute(q).scalars()]


@dataclass(frozen=True)
class StatusTotals:
    runs: dict[str, int]
    backfills: dict[str, int]
    queue_depth: int


def status_totals(conn: Connection) -> StatusTotals:
    """Runs by status and queue depth from the backfill counters (no scan of the runs)."""
    done = backfills.c.runs_completed + backfills.c.runs_failed + backfills.c.runs_cancelled
    row = conn.execute(
        select(
            # Only unfinished backfills have queued runs; a cancelled one's cancelled counter
            # also counts the intervals never materialized (docs/api.md), which created does not.
            func.coalesce(
                func.sum(
                    case(
                        (backfills.c.status.in_(_ACTIVE), backfills.c.runs_created - done - backfills.c.runs_running),
                        else_=0,
                    )
                ),
                0,
            ),
            func.coalesce(func.sum(backfills.c.runs_running), 0),
            func.coalesce(func.sum(backfills.c.runs_completed), 0),
            func.coalesce(func.sum(backfills.c.runs_failed), 0),
            func.coalesce(func.sum(backfills.c.runs_cancelled), 0),
        )
    ).one()
    runs = {
        RunStatus.QUEUED.value: int(row[0]),
        RunStatus.RUNNING.value: int(row[1]),
        RunStatus.COMPLETED.value: int(row[2]),
        RunStatus.FAILED.value: int(row[3]),
        RunStatus.CANCELLED.value: int(row[4]),
    }
    depth = conn.execute(
        select(func.coalesce(func.sum(backfills.c.runs_total - done - backfills.c.runs_running), 0)).where(
            backfills.c.status.in_(_ACTIVE)
        )
    ).scalar_one()
    by_status: dict[str, Any] = dict(
        conn.execute(select(backfills.c.status, func.count()).group_by(backfills.c.status)).all()
    )
    return StatusTotals(
        runs=runs,
        backfills={str(k): int(v) for k, v in by_status.items()},
        queue_depth=max(0, int(depth)),
    )
