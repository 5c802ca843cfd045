"""The interval-run queue: every SQL statement that changes a run's status.

The ``interval_runs`` table is the queue. This module owns the atomic pieces —
lazy materialization, claiming with a lease, heartbeats, fenced completion, lease
expiry, cancelling queued runs and re-queueing for a retry — and keeps the backfill's
counters and status consistent with its runs in the same transaction. Decisions
(what status comes next) are taken by ``domain.transitions``.

Locking: on PostgreSQL, claimers lock the backfill row ``FOR UPDATE SKIP LOCKED``, so
``max_active_runs`` holds with any number of workers; on SQLite every write
transaction is ``BEGIN IMMEDIATE`` (see ``store.db``), which serializes writers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from itertools import islice
from typing import Any

from sqlalchemy import Connection, RowMapping, and_, bindparam, func, insert, or_, select, update

from backfill.domain import transitions
from backfill.domain.intervals import IntervalSeries
from backfill.domain.model import ACTIVE_BACKFILL_STATUSES, BackfillStatus, Reprocess, RunOrder, RunStatus
from backfill.domain.transitions import RunCounts
from backfill.store.tables import backfills, interval_runs, run_logs
from backfill.store.types import UTCDateTime, json_type

ERROR_LIMIT = 10_000
ACTIVE = [s.value for s in ACTIVE_BACKFILL_STATUSES]
Row = Mapping[Any, Any]  # a backfill row, or a dict copy of one


@dataclass(frozen=True)
class RunKey:
    """What fences a worker's writes: the run, its attempt, and the lease owner."""

    run_id: int
    attempt: int


@dataclass(frozen=True)
class ClaimedRun:
    run_id: int
    attempt: int
    tries: int
    backfill_id: int
    pipeline_id: int
    interval_start: datetime
    interval_end: datetime
    timezone: str
    block_uuids: tuple[str, ...] | None
    variables: dict[str, Any]
    retries: int
    timeout_seconds: float | None

    @property
    def key(self) -> RunKey:
        return RunKey(self.run_id, self.attempt)


@dataclass(frozen=True)
class AttemptResult:
    ok: bool
    error: str | None = None
    rows: int = 0
    duration: float | None = None
    block_results: list[dict[str, Any]] | None = None
    log: str | None = None
    started_at: datetime | None = None


@dataclass
class Materialized:
    inserted: int = 0
    skipped: int = 0
    exhausted: bool = False
    cursor: datetime | None = None
    starts: list[datetime] = field(default_factory=list)


# ---- series and reprocess ------------------------------------------------------------


@lru_cache(maxsize=1024)
def _series(
    start: datetime, end: datetime, interval_type: str, units: int | None, tz: str, cron: str | None
) -> IntervalSeries:
    return IntervalSeries(start, end, interval_type, units, timezone=tz, cron=cron)


def series_of(bf: Row) -> IntervalSeries:
    """The backfill's interval series (cached: building a cron series costs a count)."""
    return _series(bf["start"], bf["end"], bf["interval_type"], bf["interval_units"], bf["timezone"], bf["cron"])


def _done_clause(reprocess: Reprocess) -> Any:
    """Runs of other backfills that make an interval skippable under ``reprocess``."""
    if reprocess is Reprocess.FAILED:
        return interval_runs.c.status == RunStatus.COMPLETED.value
    return interval_runs.c.started_at.is_not(None)  # missing: the interval ever ran


def done_intervals(conn: Connection, bf: Row, starts: Sequence[datetime] | None = None) -> set[datetime]:
    """Interval starts this backfill skips because of ``reprocess`` (failed / missing).

    With ``starts`` only those are checked; otherwise the whole range is, keeping only
    the starts that are boundaries of this backfill's series.
    """
    reprocess = Reprocess(bf["reprocess"])
    if reprocess is Reprocess.ALL:
        return set()
    q = (
        select(interval_runs.c.interval_start)
        .distinct()
        .where(
            interval_runs.c.pipeline_id == bf["pipeline_id"],
            interval_runs.c.backfill_id != bf["id"],
            _done_clause(reprocess),
        )
    )
    if starts is not None:
        if not starts:
            return set()
        return set(conn.execute(q.where(interval_runs.c.interval_start.in_(list(starts)))).scalars())
    series = series_of(bf)
    q = q.where(
        interval_runs.c.interval_start >= series.first_start,
        interval_runs.c.interval_start < series.last_end,
    )
    return {t for t in conn.execute(q).scalars() if series.index_of(t) is not None}


# ---- materialization -----------------------------------------------------------------


def materialize(conn: Connection, bf: Row, limit: int, now: datetime) -> Materialized:
    """Create the next ``limit`` interval runs (in run order) after the backfill's cursor.

    Idempotent after a crash: the cursor and the runs commit together, and the unique
    (backfill, interval_start) constraint would refuse a duplicate anyway. Intervals
    skipped by ``reprocess`` advance the cursor without a run.
    """
    series = series_of(bf)
    descending = RunOrder(bf["run_order"]) is RunOrder.NEWEST_FIRST
    result = Materialized(cursor=bf["cursor"])
    pending = series.iter_from(bf["cursor"], descending=descending)
    while result.inserted < limit:
        chunk = list(islice(pending, limit - result.inserted + 1))
        more = len(chunk) > limit - result.inserted
        chunk = chunk[: limit - result.inserted]
        if not chunk:
            result.exhausted = True
            break
        done = done_intervals(conn, bf, [iv.start for iv in chunk])
        rows = [
            {
                "backfill_id": bf["id"],
                "pipeline_id": bf["pipeline_id"],
                "interval_start": iv.start,
                "interval_end": iv.end,
                "status": RunStatus.QUEUED.value,
                "attempt": 0,
                "tries": 0,
                "created_at": now,
                "queued_at": now,
            }
            for iv in chunk
            if iv.start not in done
        ]
        if rows:
            conn.execute(insert(interval_runs), rows)
        result.inserted += len(rows)
        result.skipped += len(chunk) - len(rows)
        result.starts.extend(r["interval_start"] for r in rows)
        result.cursor = chunk[-1].start
        if not more:
            result.exhausted = True
            break
        # Put back the look-ahead item: continue after the cursor.
        pending = series.iter_from(result.cursor, descending=descending)
    conn.execute(
        update(backfills)
        .where(backfills.c.id == bf["id"])
        .values(
            cursor=result.cursor,
            exhausted=result.exhausted,
            runs_created=backfills.c.runs_created + result.inserted,
            updated_at=now,
        )
    )
    return result


# ---- claiming ------------------------------------------------------------------------


def _claim_candidates(conn: Connection, limit: int) -> list[RowMapping]:
    queued = (
        backfills.c.runs_created
        - backfills.c.runs_completed
        - backfills.c.runs_failed
        - backfills.c.runs_cancelled
        - backfills.c.runs_running
    )
    newest = select(func.max(backfills.c.last_claimed_at)).where(backfills.c.status.in_(ACTIVE)).scalar_subquery()
    q = (
        select(backfills, newest.label("newest_claim"))
        .where(
            backfills.c.status.in_(ACTIVE),
            backfills.c.paused.is_(False),
            backfills.c.runs_running < backfills.c.max_active_runs,
            or_(backfills.c.exhausted.is_(False), queued > 0),
        )
        .order_by(backfills.c.last_claimed_at.asc().nulls_first(), backfills.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    return list(conn.execute(q).mappings())


@lru_cache(maxsize=8)
def _take_next_statement(descending: bool, postgres: bool) -> Any:
    """Claim the next ready queued run of a backfill in one statement (built once)."""
    order = interval_runs.c.interval_start.desc() if descending else interval_runs.c.interval_start.asc()
    pick = (
        select(interval_runs.c.id)
        .where(
            interval_runs.c.backfill_id == bindparam("p_backfill"),
            interval_runs.c.status == RunStatus.QUEUED.value,
            or_(interval_runs.c.not_before.is_(None), interval_runs.c.not_before <= bindparam("p_now")),
        )
        .order_by(order)
        .limit(1)
    )
    if postgres:
        pick = pick.with_for_update(skip_locked=True)
    return (
        update(interval_runs)
        .where(interval_runs.c.id == pick.scalar_subquery())
        .values(
            status=transitions.run_claim(RunStatus.QUEUED).value,
            attempt=interval_runs.c.attempt + 1,
            tries=interval_runs.c.tries + 1,
            lease_owner=bindparam("p_owner"),
            lease_expires_at=bindparam("p_lease", type_=UTCDateTime()),
            started_at=bindparam("p_now", type_=UTCDateTime()),
            ended_at=None,
            duration=None,
            not_before=None,
        )
        .returning(
            interval_runs.c.id,
            interval_runs.c.attempt,
            interval_runs.c.tries,
            interval_runs.c.interval_start,
            interval_runs.c.interval_end,
        )
    )


def _take_next(conn: Connection, bf: Row, owner: str, lease_until: datetime, now: datetime) -> RowMapping | None:
    stmt = _take_next_statement(bf["run_order"] == RunOrder.NEWEST_FIRST.value, conn.dialect.name == "postgresql")
    params = {"p_backfill": bf["id"], "p_now": now, "p_owner": owner, "p_lease": lease_until}
    return conn.execute(stmt, params).mappings().first()


def materialize_chunk_size(bf: Row) -> int:
    """How many runs to create at once: enough to keep the slots busy, never the range."""
    return max(32, 4 * int(bf["max_active_runs"]))


def claim(conn: Connection, owner: str, limit: int, *, lease_seconds: float, now: datetime) -> list[ClaimedRun]:
    """Claim up to ``limit`` runs for worker ``owner``, rotating over competing backfills.

    Backfills are served least-recently-claimed first, one run per backfill per round,
    so a large backfill cannot starve the others. Runs are materialized on demand.
    """
    if limit <= 0:
        return []
    claimed: list[ClaimedRun] = []
    candidates = [dict(c) for c in _claim_candidates(conn, limit=max(limit, 16))]
    lease_until = now + timedelta(seconds=lease_seconds)
    stamp = _claim_stamp_base(candidates, now)
    tick = 0
    while candidates and len(claimed) < limit:
        for bf in list(candidates):
            if len(claimed) >= limit:
                break
            if bf["runs_running"] >= bf["max_active_runs"]:
                candidates.remove(bf)
                continue
            run = _take_next(conn, bf, owner, lease_until, now)
            if run is None and not bf["exhausted"]:
                made = materialize(conn, bf, materialize_chunk_size(bf), now)
                bf["runs_created"] += made.inserted
                bf["exhausted"] = made.exhausted
                bf["cursor"] = made.cursor
                if made.inserted:
                    run = _take_next(conn, bf, owner, lease_until, now)
                elif made.exhausted:
                    _settle(conn, bf["id"], now)
            if run is None:
                candidates.remove(bf)
                continue
            tick += 1
            # Distinct, increasing stamps keep the round-robin order inside one claim.
            counters = _bump(conn, bf["id"], now, running=1, claimed_at=stamp + timedelta(microseconds=tick))
            bf.update(counters)
            claimed.append(
                ClaimedRun(
                    run_id=run["id"],
                    attempt=run["attempt"],
                    tries=run["tries"],
                    backfill_id=bf["id"],
                    pipeline_id=bf["pipeline_id"],
                    interval_start=run["interval_start"],
                    interval_end=run["interval_end"],
                    timezone=bf["timezone"],
                    block_uuids=tuple(bf["block_uuids"]) if bf["block_uuids"] is not None else None,
                    variables=dict(bf["variables"] or {}),
                    retries=bf["retries"],
                    timeout_seconds=bf["timeout_seconds"],
                )
            )
    return claimed


def _claim_stamp_base(candidates: Sequence[Row], now: datetime) -> datetime:
    """Where this claim's ``last_claimed_at`` stamps start: after every stamp given so
    far, so the backfills served now go behind all others even when the clock reads the
    same (or, on another host, earlier) time as at the previous claim."""
    newest = candidates[0]["newest_claim"] if candidates else None
    return now if newest is None or newest < now else newest


def counts_of(bf: Row) -> RunCounts:
    return RunCounts(
        created=bf["runs_created"],
        completed=bf["runs_completed"],
        failed=bf["runs_failed"],
        cancelled=bf["runs_cancelled"],
        running=bf["runs_running"],
    )


# ---- leases --------------------------------------------------------------------------


def heartbeat(
    conn: Connection, owner: str, keys: Iterable[RunKey], *, lease_seconds: float, now: datetime
) -> set[RunKey]:
    """Extend the leases of ``owner``'s runs; returns the keys it still holds."""
    keys = list(keys)
    if not keys:
        return set()
    result = conn.execute(
        update(interval_runs)
        .where(
            interval_runs.c.lease_owner == owner,
            interval_runs.c.status == RunStatus.RUNNING.value,
            interval_runs.c.id.in_([k.run_id for k in keys]),
        )
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
        .returning(interval_runs.c.id, interval_runs.c.attempt)
    )
    held = {RunKey(int(r.id), int(r.attempt)) for r in result}
    return held & set(keys)


def expire_leases(conn: Connection, now: datetime, *, limit: int = 500) -> list[RunKey]:
    """Runs whose worker stopped heartbeating: re-queued as a new attempt while retries
    remain, else failed with a clear error. Returns the runs it expired."""
    q = (
        select(interval_runs.c.id, interval_runs.c.attempt, interval_runs.c.lease_owner)
        .where(interval_runs.c.status == RunStatus.RUNNING.value, interval_runs.c.lease_expires_at < now)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    expired: list[RunKey] = []
    for row in conn.execute(q).all():
        key = RunKey(int(row.id), int(row.attempt))
        message = (
            f"worker {row.lease_owner} stopped renewing its lease (killed or lost); attempt {row.attempt} abandoned"
        )
        if record_attempt(conn, key, None, AttemptResult(ok=False, error=message), now, expired_before=now):
            expired.append(key)
    return expired


# ---- finishing -----------------------------------------------------------------------


_COMPLETE = (
    update(interval_runs)
    .where(
        interval_runs.c.id == bindparam("p_run"),
        interval_runs.c.attempt == bindparam("p_attempt"),
        interval_runs.c.status == RunStatus.RUNNING.value,
        interval_runs.c.lease_owner == bindparam("p_owner"),
    )
    .values(
        status=RunStatus.COMPLETED.value,
        ended_at=bindparam("p_now", type_=UTCDateTime()),
        duration=bindparam("p_duration"),
        rows=bindparam("p_rows"),
        error=None,
        block_results=bindparam("p_blocks", type_=json_type()),
        lease_owner=None,
        lease_expires_at=None,
        not_before=None,
    )
    .returning(interval_runs.c.backfill_id)
)


def record_attempt(
    conn: Connection,
    key: RunKey,
    owner: str | None,
    result: AttemptResult,
    now: datetime,
    *,
    expired_before: datetime | None = None,
) -> bool:
    """Record the end of an attempt, fenced on (run id, attempt, lease owner).

    Returns False (and writes nothing) when the caller no longer holds that attempt —
    a worker that lost its lease cannot overwrite a newer attempt.
    """
    if result.ok and owner is not None and expired_before is None:
        return _record_success(conn, key, owner, result, now)
    fence = [
        interval_runs.c.id == key.run_id,
        interval_runs.c.attempt == key.attempt,
        interval_runs.c.status == RunStatus.RUNNING.value,
    ]
    if owner is not None:
        fence.append(interval_runs.c.lease_owner == owner)
    if expired_before is not None:
        fence.append(interval_runs.c.lease_expires_at < expired_before)
    q = (
        select(
            interval_runs.c.backfill_id,
            interval_runs.c.tries,
            interval_runs.c.started_at,
            backfills.c.retries,
            backfills.c.retry_delay_seconds,
            backfills.c.status.label("backfill_status"),
        )
        .join(backfills, backfills.c.id == interval_runs.c.backfill_id)
        .where(and_(*fence))
    )
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(of=interval_runs)
    row = conn.execute(q).first()
    if row is None:
        return False
    backfill_active = BackfillStatus(row.backfill_status) in ACTIVE_BACKFILL_STATUSES
    status = transitions.run_after_attempt(ok=result.ok, tries=row.tries, retries=row.retries if backfill_active else 0)
    duration = result.duration
    if duration is None and row.started_at is not None:
        duration = max(0.0, (now - row.started_at).total_seconds())
    not_before = None
    if status is RunStatus.QUEUED:
        not_before = now + timedelta(seconds=transitions.retry_delay(row.retry_delay_seconds, row.tries))
    error = result.error[:ERROR_LIMIT] if result.error else None
    conn.execute(
        update(interval_runs)
        .where(interval_runs.c.id == key.run_id)
        .values(
            status=status.value,
            ended_at=now,
            duration=duration,
            rows=result.rows,
            error=error,
            block_results=result.block_results,
            lease_owner=None,
            lease_expires_at=None,
            not_before=not_before,
            queued_at=now if status is RunStatus.QUEUED else interval_runs.c.queued_at,
        )
    )
    _save_log(conn, key, result, now)
    completed = status is RunStatus.COMPLETED
    _bump(
        conn,
        row.backfill_id,
        now,
        running=-1,
        completed=1 if completed else 0,
        failed=1 if status is RunStatus.FAILED else 0,
        rows=result.rows if completed else 0,
        duration=(duration or 0.0) if completed else 0.0,
    )
    return True


def _record_success(conn: Connection, key: RunKey, owner: str, result: AttemptResult, now: datetime) -> bool:
    """The hot path: a worker reports a completed attempt (two statements)."""
    duration = result.duration or 0.0
    params = {
        "p_run": key.run_id,
        "p_attempt": key.attempt,
        "p_owner": owner,
        "p_now": now,
        "p_duration": duration,
        "p_rows": result.rows,
        "p_blocks": result.block_results,
    }
    backfill_id = conn.execute(_COMPLETE, params).scalar()
    if backfill_id is None:
        return False
    _save_log(conn, key, result, now)
    _bump(conn, backfill_id, now, running=-1, completed=1, rows=result.rows, duration=duration)
    return True


def _save_log(conn: Connection, key: RunKey, result: AttemptResult, now: datetime) -> None:
    if result.log:
        _upsert_log(conn, key, result.log, now)


def _upsert_log(conn: Connection, key: RunKey, content: str, now: datetime) -> None:
    updated = conn.execute(
        update(run_logs)
        .where(run_logs.c.run_id == key.run_id, run_logs.c.attempt == key.attempt)
        .values(content=content)
    ).rowcount
    if not updated:
        conn.execute(insert(run_logs).values(run_id=key.run_id, attempt=key.attempt, content=content, created_at=now))


def write_partial_log(conn: Connection, key: RunKey, owner: str, content: str, now: datetime) -> bool:
    """Store the output of a running attempt so far (for tailing), fenced like every
    worker write: only the lease owner of that attempt may write it."""
    held = conn.execute(
        select(interval_runs.c.id).where(
            interval_runs.c.id == key.run_id,
            interval_runs.c.attempt == key.attempt,
            interval_runs.c.status == RunStatus.RUNNING.value,
            interval_runs.c.lease_owner == owner,
        )
    ).first()
    if held is None:
        return False
    _upsert_log(conn, key, content, now)
    return True


_COUNTERS = (
    backfills.c.status,
    backfills.c.exhausted,
    backfills.c.runs_created,
    backfills.c.runs_completed,
    backfills.c.runs_failed,
    backfills.c.runs_cancelled,
    backfills.c.runs_running,
)

_BUMP = (
    update(backfills)
    .where(backfills.c.id == bindparam("p_backfill"))
    .values(
        runs_running=backfills.c.runs_running + bindparam("d_running"),
        runs_completed=backfills.c.runs_completed + bindparam("d_completed"),
        runs_failed=backfills.c.runs_failed + bindparam("d_failed"),
        rows_total=backfills.c.rows_total + bindparam("d_rows"),
        duration_total=backfills.c.duration_total + bindparam("d_duration"),
        updated_at=bindparam("p_now", type_=UTCDateTime()),
    )
    .returning(*_COUNTERS)
)

_CLAIM_BUMP = (
    update(backfills)
    .where(backfills.c.id == bindparam("p_backfill"))
    .values(
        runs_running=backfills.c.runs_running + bindparam("d_running"),
        started_at=func.coalesce(backfills.c.started_at, bindparam("p_now", type_=UTCDateTime())),
        last_claimed_at=bindparam("p_claimed", type_=UTCDateTime()),
        updated_at=bindparam("p_now", type_=UTCDateTime()),
    )
    .returning(*_COUNTERS)
)


def _bump(
    conn: Connection,
    backfill_id: int,
    now: datetime,
    *,
    running: int = 0,
    completed: int = 0,
    failed: int = 0,
    rows: int = 0,
    duration: float = 0.0,
    claimed_at: datetime | None = None,
) -> dict[str, Any]:
    """Move the backfill's counters with its runs, then settle its status — one
    statement plus, only when the status changes, a second."""
    if claimed_at is not None:
        params: dict[str, Any] = {
            "p_backfill": backfill_id,
            "d_running": running,
            "p_now": now,
            "p_claimed": claimed_at,
        }
        row = conn.execute(_CLAIM_BUMP, params).mappings().one()
    else:
        params = {
            "p_backfill": backfill_id,
            "d_running": running,
            "d_completed": completed,
            "d_failed": failed,
            "d_rows": rows,
            "d_duration": duration,
            "p_now": now,
        }
        row = conn.execute(_BUMP, params).mappings().one()
    counters = dict(row)
    counters["status"] = _apply_settle(conn, backfill_id, counters, now).value
    return counters


def _apply_settle(conn: Connection, backfill_id: int, bf: Row, now: datetime) -> BackfillStatus:
    current = BackfillStatus(bf["status"])
    new = transitions.settle(current, counts_of(bf), exhausted=bool(bf["exhausted"]))
    if new is not current:
        values: dict[str, Any] = {"status": new.value, "updated_at": now}
        if new is BackfillStatus.COMPLETED:
            values["completed_at"] = now
        elif new is BackfillStatus.FAILED:
            values["failed_at"] = now
            values["completed_at"] = now
        conn.execute(update(backfills).where(backfills.c.id == backfill_id).values(**values))
    return new


def _settle(conn: Connection, backfill_id: int, now: datetime) -> BackfillStatus:
    """Derive the backfill status from its counters (same transaction as the change)."""
    bf = conn.execute(select(*_COUNTERS).where(backfills.c.id == backfill_id)).mappings().one()
    return _apply_settle(conn, backfill_id, bf, now)


def settle(conn: Connection, backfill_id: int, now: datetime) -> BackfillStatus:
    return _settle(conn, backfill_id, now)


# ---- user actions on many runs ---------------------------------------------------------


def cancel_queued(conn: Connection, backfill_id: int, now: datetime) -> int:
    """Cancel every run that has not started; stop materializing. Running runs go on."""
    cancelled = conn.execute(
        update(interval_runs)
        .where(interval_runs.c.backfill_id == backfill_id, interval_runs.c.status == RunStatus.QUEUED.value)
        .values(status=transitions.run_cancel(RunStatus.QUEUED).value, ended_at=now, not_before=None)
    ).rowcount
    conn.execute(
        update(backfills)
        .where(backfills.c.id == backfill_id)
        .values(runs_cancelled=backfills.c.runs_cancelled + cancelled, exhausted=True, updated_at=now)
    )
    return int(cancelled)


def requeue_for_retry(conn: Connection, backfill_id: int, now: datetime) -> int:
    """Re-queue the failed and cancelled runs of a backfill (a manual retry); the
    completed ones are left alone. Their retry budget starts afresh."""
    by_status: dict[str, int] = dict(
        conn.execute(
            select(interval_runs.c.status, func.count())
            .where(
                interval_runs.c.backfill_id == backfill_id,
                interval_runs.c.status.in_([s.value for s in transitions.RETRYABLE_RUN_STATUSES]),
            )
            .group_by(interval_runs.c.status)
        ).all()
    )
    for status in by_status:
        transitions.run_retry(RunStatus(status))
    conn.execute(
        update(interval_runs)
        .where(
            interval_runs.c.backfill_id == backfill_id,
            interval_runs.c.status.in_([s.value for s in transitions.RETRYABLE_RUN_STATUSES]),
        )
        .values(
            status=RunStatus.QUEUED.value,
            tries=0,
            not_before=None,
            error=None,
            ended_at=None,
            queued_at=now,
        )
    )
    failed = int(by_status.get(RunStatus.FAILED.value, 0))
    cancelled = int(by_status.get(RunStatus.CANCELLED.value, 0))
    conn.execute(
        update(backfills)
        .where(backfills.c.id == backfill_id)
        .values(
            runs_failed=backfills.c.runs_failed - failed,
            runs_cancelled=backfills.c.runs_cancelled - cancelled,
            updated_at=now,
        )
    )
    return failed + cancelled


def recount(conn: Connection, backfill_id: int) -> RunCounts:
    """Counts straight from the runs (used by tests and consistency checks)."""
    rows: dict[str, int] = dict(
        conn.execute(
            select(interval_runs.c.status, func.count())
            .where(interval_runs.c.backfill_id == backfill_id)
            .group_by(interval_runs.c.status)
        ).all()
    )
    return RunCounts(
        created=sum(int(v) for v in rows.values()),
        completed=int(rows.get(RunStatus.COMPLETED.value, 0)),
        failed=int(rows.get(RunStatus.FAILED.value, 0)),
        cancelled=int(rows.get(RunStatus.CANCELLED.value, 0)),
        running=int(rows.get(RunStatus.RUNNING.value, 0)),
    )
