"""The interval-run queue: every SQL statement that changes a run's status.

The ``interval_runs`` table is the queue. This module owns the atomic pieces —
lazy materialization, claiming with a lease, heartbeats, fenced completion, lease
expiry, cancelling queued runs and re-queueing for a retry — and keeps the backfill's
counters and status consistent with its runs in the same transaction. Decisions
(what status comes next) are taken by ``domain.transitions``.

The hot path is batched: a worker step is ONE transaction (``step``) that records what
the worker saw end — all successes in one fenced UPDATE, all failures in one fenced read
and one batched UPDATE — and claims into its free slots: per backfill one statement takes
its share of queued runs (or one INSERT creates the next runs, already claimed),
and then every backfill the step touched gets ONE counter update. On PostgreSQL the
per-run values travel as one JSON document or one array per column: a statement has one
short text whatever the batch size, which psycopg caches and the server prepares
(psycopg prepares no text over 4,096 characters).

Locking: on PostgreSQL, claimers lock the backfill row ``FOR UPDATE SKIP LOCKED``, so
``max_active_runs`` holds with any number of workers; on SQLite every write
transaction is ``BEGIN IMMEDIATE`` (see ``store.db``), which serializes writers.

Lock order: every writer takes backfill rows before run rows. A user's action on a
backfill (rerun, cancel, retry) locks its row first; a worker step's first statement
locks the backfill rows of the runs it records, waiting, in id order, and then the claim
candidates with SKIP LOCKED (``_candidates_statement``); lease expiry reads the lapsed
runs, locks their backfills in id order, and only then locks the runs. The only waits on
a backfill row are id-ordered and come before any run row is touched, so no two writers
wait for each other in a cycle.

Why SKIP LOCKED for the candidates and not a blocking lock: they come in
least-recently-claimed order, not id order, so waiting for them could close a cycle
with another worker's id-ordered locks. Its cost — a worker that finds the hot backfill
row held skips it and, finding nothing, would sleep a whole poll interval while the
holder takes everything — is removed by ``Claim.contended``: a short claim that skipped
a row with room and work says so (one plain read, only on a short claim), and the worker
asks again within ``CONTENDED_RETRY_SECONDS`` instead of after its poll interval.

Commits stay synchronous: a recorded outcome is forgotten by the worker right after the
commit, so an asynchronous commit lost in a PostgreSQL crash would bring back a finished
run as running (and, after its lease, run it again) after the API had shown it finished.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from itertools import islice
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    Float,
    Integer,
    RowMapping,
    String,
    Text,
    all_,
    and_,
    any_,
    bindparam,
    case,
    cast,
    column,
    func,
    insert,
    literal,
    literal_column,
    not_,
    or_,
    select,
    true,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.engine import Dialect

from backfill.domain import transitions
from backfill.domain.intervals import Interval, IntervalSeries
from backfill.domain.model import ACTIVE_BACKFILL_STATUSES, BackfillStatus, Reprocess, RunOrder, RunStatus
from backfill.domain.transitions import RunCounts
from backfill.store import notifications
from backfill.store.tables import backfills, interval_runs, run_logs
from backfill.store.types import UTCDateTime, json_type

ERROR_LIMIT = 10_000
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
    pipeline_version: str | None = None  # the version the attempt ran (None: unknown)


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


def done_lookup_window(bf: Row) -> int:
    """How many intervals one look-up of already-done intervals covers (``reprocess``
    other than ``all``): enough to keep the slots busy, never the range."""
    return max(32, 4 * int(bf["max_active_runs"]))


def materialize(conn: Connection, bf: Row, limit: int, now: datetime) -> int:
    """Create the next ``limit`` runs of a backfill (in run order) as queued runs, claimed
    by nobody, and move its cursor and counters; returns how many it created."""
    row = dict(bf)
    created = row["runs_created"]
    _insert_runs(conn, [(row, iv) for iv in _next_intervals(conn, row, limit)], _queued_values(now))
    made = int(row["runs_created"] - created)
    _bump(conn, {row["id"]: _Deltas(created=made)}, now, moved={row["id"]: (row, None)})
    return made


def _materialize(
    conn: Connection, wanted: Sequence[tuple[dict[str, Any], int]], owner: str, lease_until: datetime, now: datetime
) -> dict[int, list[Row]]:
    """Create the next ``n`` runs of each backfill (in its run order) after its cursor,
    already claimed by ``owner``: one INSERT … RETURNING for all of them. Returns each
    backfill's new runs, in run order.

    A claim creates exactly the runs it takes: a fresh run is inserted as running, never
    first as queued. That is one write per run less, and on PostgreSQL it keeps the
    queued part of the claim index free of the dead entries each claimed run would leave
    there until VACUUM (a take scans them all: with chunks materialized ahead it slowed
    down with every run claimed, 1 ms at 2,000 runs and 6 ms at 20,000).

    The new cursor, ``exhausted`` and ``runs_created`` of each are left in its ``bf`` for
    the caller's one counter update of the backfill (same transaction; the unique
    (backfill, interval_start) constraint refuses a duplicate anyway).
    """
    new = [(bf, iv) for bf, n in wanted for iv in _next_intervals(conn, bf, n)]
    claimed = {
        **_queued_values(now),
        "status": transitions.run_claim(RunStatus.QUEUED).value,
        "attempt": 1,
        "tries": 1,
        "lease_owner": owner,
        "lease_expires_at": lease_until,
        "started_at": now,
    }
    made: dict[int, list[Row]] = {bf["id"]: [] for bf, _ in wanted}
    for run in _insert_runs(conn, new, claimed):
        made[run["backfill_id"]].append(run)
    for bf, _ in wanted:
        made[bf["id"]].sort(key=lambda r: r["interval_start"], reverse=_newest_first(bf))
    return made


def _next_intervals(conn: Connection, bf: dict[str, Any], size: int) -> list[Interval]:
    """The next ``size`` intervals of a backfill to create runs for, after its cursor, in
    run order; moves the cursor (to the last interval looked at), ``exhausted`` and
    ``runs_created`` in ``bf``.

    Intervals skipped by ``reprocess`` advance the cursor without a run; they are looked
    up ``done_lookup_window`` intervals at a time."""
    if size <= 0:
        return []
    series = series_of(bf)
    descending = _newest_first(bf)
    checks_done = Reprocess(bf["reprocess"]) is not Reprocess.ALL
    picked: list[Interval] = []
    cursor = bf["cursor"]
    exhausted = False
    while len(picked) < size and not exhausted:
        window = max(done_lookup_window(bf), size) if checks_done else size - len(picked)
        # one look-ahead interval tells whether the series ends with this window
        chunk = list(islice(series.iter_from(cursor, descending=descending), window + 1))
        exhausted = len(chunk) <= window
        chunk = chunk[:window]
        if not chunk:
            break
        done = done_intervals(conn, bf, [iv.start for iv in chunk]) if checks_done else set()
        for i, iv in enumerate(chunk):
            cursor = iv.start
            if iv.start not in done:
                picked.append(iv)
                if len(picked) == size:
                    exhausted = exhausted and i == len(chunk) - 1  # no interval left after it
                    break
    bf["cursor"] = cursor
    bf["exhausted"] = exhausted
    bf["runs_created"] += len(picked)
    return picked


def _queued_values(now: datetime) -> dict[str, Any]:
    """What a new queued run holds besides its backfill and interval."""
    return {
        "status": RunStatus.QUEUED.value,
        "attempt": 0,
        "tries": 0,
        "lease_owner": None,
        "lease_expires_at": None,
        "started_at": None,
        "created_at": now,
        "queued_at": now,
    }


def _insert_runs(conn: Connection, new: Sequence[tuple[Row, Interval]], values: Mapping[str, Any]) -> Sequence[Row]:
    """Insert a run for each (backfill, interval), all holding ``values`` (every column of
    ``_NEW_RUN_SHARED``), in one statement; their ``_NEW_RUN_RETURNING``. The backfills
    and intervals travel as one array per column on PostgreSQL and as one JSON document
    on SQLite; ``values`` once."""
    if not new:
        return []
    if conn.dialect.name != "postgresql":
        return _sqlite_insert_runs(conn, new, values)
    params = {
        "p_backfill_id": [bf["id"] for bf, _ in new],
        "p_pipeline_id": [bf["pipeline_id"] for bf, _ in new],
        "p_interval_start": [iv.start for _, iv in new],
        "p_interval_end": [iv.end for _, iv in new],
        **{f"p_{name}": values[name] for name in _NEW_RUN_SHARED},
    }
    return conn.execute(_pg_insert_runs_statement(), params).mappings().all()


def _sqlite_insert_runs(
    conn: Connection, new: Sequence[tuple[Row, Interval]], values: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """SQLite: the new runs as ONE JSON array of ``[backfill, pipeline, start, end]``
    (``json_each``), the timestamps as the text SQLAlchemy stores, so the statement binds
    a handful of values whatever the batch size (one parameter set per row cost more than
    the insert itself). It returns each run's id, matched back to its interval by the
    stored start text; what all new runs hold alike is known without reading it back."""
    stored = _sqlite_timestamp(conn.dialect)
    intervals: dict[tuple[int, str], Interval] = {}
    rows = []
    for bf, iv in new:
        start = stored(iv.start)
        intervals[(bf["id"], start)] = iv
        rows.append((bf["id"], bf["pipeline_id"], start, stored(iv.end)))
    params = {"p_rows": json.dumps(rows), **{f"p_{name}": values[name] for name in _NEW_RUN_SHARED}}
    made = []
    for run_id, backfill_id, start in conn.execute(_sqlite_insert_runs_statement(), params):
        iv = intervals[(backfill_id, start)]
        made.append(
            {
                "id": run_id,
                "backfill_id": backfill_id,
                "status": values["status"],
                "attempt": values["attempt"],
                "tries": values["tries"],
                "interval_start": iv.start,
                "interval_end": iv.end,
            }
        )
    return made


@lru_cache(maxsize=4)
def _sqlite_timestamp(dialect: Dialect) -> Any:
    """The text SQLite stores for an aware datetime (``UTCDateTime`` through the dialect)."""
    return UTCDateTime().dialect_impl(dialect).bind_processor(dialect)


def _json_rows(name: str) -> Any:
    """SQLite: ``json_each(:name) AS j``, a bound JSON array read one element per row."""
    return func.json_each(bindparam(name, type_=Text())).table_valued("value").alias("j")


def _json_item(rows: Any, index: int, type_: Any, *, as_json: bool = False) -> Any:
    """SQLite: item ``index`` of a ``_json_rows`` element: its SQL value (``->>``), or with
    ``as_json`` its JSON text (``->``, for a nested document stored as JSON)."""
    return type_coerce(rows.c.value.op("->" if as_json else "->>")(literal_column(str(index))), type_)


@lru_cache(maxsize=1)
def _sqlite_insert_runs_statement() -> Any:
    j = _json_rows("p_rows")
    # timestamps arrive as the text SQLite stores (``_sqlite_timestamp``): no conversion
    varying = [
        _json_item(j, i, Text() if isinstance(type_, UTCDateTime) else type_)
        for i, type_ in enumerate(_NEW_RUN_ARRAYS.values())
    ]
    shared: list[Any] = [bindparam(f"p_{name}", type_=type_) for name, type_ in _NEW_RUN_SHARED.items()]
    columns = [*_NEW_RUN_ARRAYS, *_NEW_RUN_SHARED]
    return (
        insert(interval_runs)
        .from_select(columns, select(*varying, *shared).select_from(j))
        .returning(interval_runs.c.id, interval_runs.c.backfill_id, type_coerce(interval_runs.c.interval_start, Text()))
    )


def _newest_first(bf: Row) -> bool:
    """Whether the backfill runs its intervals newest first (its ``run_order``)."""
    return RunOrder(bf["run_order"]) is RunOrder.NEWEST_FIRST


_NEW_RUN_RETURNING = (
    interval_runs.c.id,
    interval_runs.c.backfill_id,
    interval_runs.c.status,
    interval_runs.c.attempt,
    interval_runs.c.tries,
    interval_runs.c.interval_start,
    interval_runs.c.interval_end,
)


_NEW_RUN_ARRAYS: dict[str, Any] = {  # what differs from one new run to the next
    "backfill_id": BigInteger(),
    "pipeline_id": BigInteger(),
    "interval_start": UTCDateTime(),
    "interval_end": UTCDateTime(),
}
_NEW_RUN_SHARED: dict[str, Any] = {  # what all runs of one insert hold alike
    "status": String(),
    "attempt": Integer(),
    "tries": Integer(),
    "lease_owner": String(),
    "lease_expires_at": UTCDateTime(),
    "started_at": UTCDateTime(),
    "created_at": UTCDateTime(),
    "queued_at": UTCDateTime(),
}


@lru_cache(maxsize=1)
def _pg_insert_runs_statement() -> Any:
    """PostgreSQL: new runs of any backfills in one INSERT … SELECT from one array per
    varying column (``_unnest``): one short statement text for every batch."""
    v = _unnest("v", **_NEW_RUN_ARRAYS)
    shared: list[Any] = [bindparam(f"p_{name}", type_=type_) for name, type_ in _NEW_RUN_SHARED.items()]
    source = select(*(v.c[name] for name in _NEW_RUN_ARRAYS), *shared)
    columns = [*_NEW_RUN_ARRAYS, *_NEW_RUN_SHARED]
    return insert(interval_runs).from_select(columns, source).returning(*_NEW_RUN_RETURNING)


# ---- claiming ------------------------------------------------------------------------

CLAIMABLE = [s.value for s in transitions.CLAIMABLE_BACKFILL_STATUSES]
_QUEUED = (
    backfills.c.runs_created
    - backfills.c.runs_completed
    - backfills.c.runs_failed
    - backfills.c.runs_cancelled
    - backfills.c.runs_running
)


def _claimable_status() -> Any:
    """``status IN (?, ?)`` with one fixed parameter per claimable status: a list given to
    ``in_`` is an "expanding" parameter, which SQLAlchemy re-renders into the statement on
    every execution (a third of the claim candidates' read on SQLite)."""
    return backfills.c.status.in_([literal(s) for s in CLAIMABLE])


def _served() -> list[Any]:
    """Backfills a claim may serve at all: claimable status, not paused."""
    return [
        _claimable_status(),
        backfills.c.paused.is_(False),
    ]


def _room_and_work() -> list[Any]:
    """... with a free slot and work (as its counters read before this step)."""
    return [
        backfills.c.runs_running < backfills.c.max_active_runs,
        or_(backfills.c.exhausted.is_(False), _QUEUED > 0),
    ]


def _claimable() -> list[Any]:
    """Backfills a claim may serve now: claimable status, not paused, a free slot, work."""
    return [*_served(), *_room_and_work()]


_LOCK_MINE = (
    select(backfills.c.id)
    .where(backfills.c.id == any_(bindparam("p_mine", type_=ARRAY(BigInteger()))))
    .order_by(backfills.c.id)
    .with_for_update()
)


# What a claim reads of a backfill (its series, counters, cursor and what a claimed run
# carries): every column a result has costs the driver a description object per statement.
_CLAIM_COLUMNS = tuple(
    backfills.c[name]
    for name in (
        "id",
        "pipeline_id",
        "start",
        "end",
        "interval_type",
        "interval_units",
        "cron",
        "timezone",
        "block_uuids",
        "variables",
        "max_active_runs",
        "run_order",
        "reprocess",
        "retries",
        "timeout_seconds",
        "status",
        "runs_created",
        "runs_completed",
        "runs_failed",
        "runs_cancelled",
        "runs_running",
        "cursor",
        "exhausted",
    )
)


@lru_cache(maxsize=2)
def _candidates_statement(postgres: bool) -> Any:
    """Backfills with room and work, least recently claimed first, each with the newest
    claim stamp of all. On PostgreSQL the backfill rows of the runs this step records
    (``p_mine``) are locked first, waiting, in id order (a one-time InitPlan), then the
    candidates, skipping rows another claimer holds (not our own)."""
    newest = select(func.max(backfills.c.last_claimed_at)).where(_claimable_status()).scalar_subquery()
    # the backfills of the recorded runs may have room again once they are recorded:
    # candidates by status alone (``_room`` decides with the counters the step leaves)
    mine = (
        backfills.c.id == any_(bindparam("p_mine", type_=ARRAY(BigInteger())))
        if postgres
        else backfills.c.id.in_(select(_json_rows("p_mine").c.value))  # a JSON array: no expanding IN
    )
    q = (
        select(*_CLAIM_COLUMNS, newest.label("newest_claim"))
        .where(*_served(), or_(mine, and_(*_room_and_work())))
        .order_by(backfills.c.last_claimed_at.asc().nulls_first(), backfills.c.id)
        .limit(bindparam("p_limit"))
    )
    if postgres:
        locked_first = select(func.count()).select_from(_LOCK_MINE.cte("mine")).scalar_subquery()
        q = q.where(locked_first >= 0).with_for_update(of=backfills, skip_locked=True)
    return q


def _claim_candidates(conn: Connection, limit: int, mine: Sequence[int] = ()) -> list[RowMapping]:
    postgres = conn.dialect.name == "postgresql"
    params = {"p_limit": limit, "p_mine": list(mine) if postgres else json.dumps(list(mine))}
    return list(conn.execute(_candidates_statement(postgres), params).mappings())


def _lock_backfills(conn: Connection, ids: Sequence[int]) -> None:
    """PostgreSQL: lock these backfill rows, waiting, in id order: a step takes backfill
    rows before run rows, as a user's action on a backfill does (no lock-order cycle)."""
    if ids and conn.dialect.name == "postgresql":
        conn.execute(_LOCK_MINE, {"p_mine": list(ids)}).all()


_SKIPPED = (
    select(backfills.c.id)
    .where(*_claimable(), backfills.c.id != all_(bindparam("p_locked", type_=ARRAY(BigInteger()))))
    .order_by(backfills.c.id)
    .limit(4)
)


def _skipped(conn: Connection, locked: Sequence[int]) -> tuple[int, ...]:
    """PostgreSQL: backfills with room and work that were skipped because another claimer
    held their row (a plain read sees the rows the locking read skipped); a few at most."""
    return tuple(int(i) for i in conn.execute(_SKIPPED, {"p_locked": list(locked)}).scalars())


def _claim_values() -> dict[str, Any]:
    """What claiming a queued run sets: a new attempt, leased to ``p_owner`` until ``p_lease``."""
    return {
        "status": transitions.run_claim(RunStatus.QUEUED).value,
        "attempt": interval_runs.c.attempt + 1,
        "tries": interval_runs.c.tries + 1,
        "lease_owner": bindparam("p_owner"),
        "lease_expires_at": bindparam("p_lease", type_=UTCDateTime()),
        "started_at": bindparam("p_now", type_=UTCDateTime()),
        "ended_at": None,
        "duration": None,
        "not_before": None,
    }


_TAKEN = (
    interval_runs.c.id,
    interval_runs.c.backfill_id,
    interval_runs.c.attempt,
    interval_runs.c.tries,
    interval_runs.c.interval_start,
    interval_runs.c.interval_end,
)


def _ready() -> list[Any]:
    """A queued run whose retry delay (if any) has passed."""
    return [
        interval_runs.c.status == RunStatus.QUEUED.value,
        or_(interval_runs.c.not_before.is_(None), interval_runs.c.not_before <= bindparam("p_now")),
    ]


@lru_cache(maxsize=8)
def _take_statement(descending: bool, postgres: bool) -> Any:
    """Claim up to ``p_limit`` ready queued runs of one backfill in one statement."""
    order = interval_runs.c.interval_start.desc() if descending else interval_runs.c.interval_start.asc()
    pick = (
        select(interval_runs.c.id)
        .where(interval_runs.c.backfill_id == bindparam("p_backfill"), *_ready())
        .order_by(order)
        .limit(bindparam("p_limit"))
    )
    if postgres:
        pick = pick.with_for_update(skip_locked=True)
    picked = pick.cte("picked")  # evaluated once: never more than p_limit rows
    return (
        update(interval_runs)
        .where(interval_runs.c.id.in_(select(picked.c.id)))
        .values(**_claim_values())
        .returning(*_TAKEN)
    )


@lru_cache(maxsize=1)
def _pg_take_many_statement() -> Any:
    """PostgreSQL: claim each backfill's share (``p_backfill[i]`` takes up to ``p_k[i]``
    ready queued runs, newest first where ``p_desc[i]``) in ONE statement: a lateral,
    index-ordered pick per backfill, locked ``SKIP LOCKED``."""
    want = _unnest("w", backfill=BigInteger(), k=Integer(), desc=Boolean())

    def pick(descending: bool) -> Any:
        order = interval_runs.c.interval_start.desc() if descending else interval_runs.c.interval_start.asc()
        per_backfill = (
            select(interval_runs.c.id)
            .where(interval_runs.c.backfill_id == want.c.backfill, *_ready())
            .order_by(order)
            .limit(want.c.k)
            .with_for_update(skip_locked=True)
            .lateral()
        )
        chosen = want.c.desc if descending else not_(want.c.desc)
        return select(per_backfill.c.id).select_from(want.join(per_backfill, true())).where(chosen)

    picked = union_all(pick(True), pick(False)).cte("picked")  # evaluated once
    return (
        update(interval_runs)
        .where(interval_runs.c.id.in_(select(picked.c.id)))
        .values(**_claim_values())
        .returning(*_TAKEN)
    )


def _take(conn: Connection, bf: Row, k: int, owner: str, lease_until: datetime, now: datetime) -> Sequence[RowMapping]:
    descending = _newest_first(bf)
    stmt = _take_statement(descending, conn.dialect.name == "postgresql")
    params = {"p_backfill": bf["id"], "p_now": now, "p_owner": owner, "p_lease": lease_until, "p_limit": k}
    runs = conn.execute(stmt, params).mappings().all()
    return sorted(runs, key=lambda r: r["interval_start"], reverse=descending)


def _take_many(
    conn: Connection, shares: Sequence[tuple[dict[str, Any], int]], owner: str, lease_until: datetime, now: datetime
) -> dict[int, list[RowMapping]]:
    """Each backfill's share of its ready queued runs, in run order: one statement on
    PostgreSQL whatever the number of backfills, one per backfill on SQLite (local calls)."""
    if conn.dialect.name != "postgresql" or len(shares) == 1:
        return {bf["id"]: list(_take(conn, bf, k, owner, lease_until, now)) for bf, k in shares}
    params = {
        "p_backfill": [bf["id"] for bf, _ in shares],
        "p_k": [k for _, k in shares],
        "p_desc": [_newest_first(bf) for bf, _ in shares],
        "p_now": now,
        "p_owner": owner,
        "p_lease": lease_until,
    }
    taken: dict[int, list[RowMapping]] = {bf["id"]: [] for bf, _ in shares}
    for run in conn.execute(_pg_take_many_statement(), params).mappings():
        taken[run["backfill_id"]].append(run)
    for bf, _ in shares:
        taken[bf["id"]].sort(key=lambda r: r["interval_start"], reverse=_newest_first(bf))
    return taken


def _room(bf: Row) -> int:
    """Runs this backfill may still start now: its free active slots, and for a fully
    materialized one no more than it has queued."""
    room = int(bf["max_active_runs"]) - int(bf["runs_running"])
    if bf["exhausted"]:
        room = min(room, counts_of(bf).queued)
    return max(0, room)


def _shares(slots: int, rooms: Sequence[int]) -> list[int]:
    """Deal ``slots`` one at a time over the backfills in order, each up to its room."""
    shares = [0] * len(rooms)
    while slots > 0:
        dealt = False
        for i, room in enumerate(rooms):
            if slots > 0 and shares[i] < room:
                shares[i] += 1
                slots -= 1
                dealt = True
        if not dealt:
            break
    return shares


def _claim_round(
    conn: Connection, shares: Sequence[tuple[dict[str, Any], int]], owner: str, lease_until: datetime, now: datetime
) -> dict[int, list[Row]]:
    """One dealing round: up to ``k`` runs of each backfill, queued ones first (all
    backfills' in one statement on PostgreSQL), then new ones (all in one INSERT)."""
    queued = [(bf, k) for bf, k in shares if counts_of(bf).queued > 0]
    taken = _take_many(conn, queued, owner, lease_until, now) if queued else {}
    short = [(bf, n) for bf, k in shares if not bf["exhausted"] and (n := k - len(taken.get(bf["id"], []))) > 0]
    made = _materialize(conn, short, owner, lease_until, now) if short else {}
    out: dict[int, list[Row]] = {}
    for bf, _ in shares:
        runs = [*taken.get(bf["id"], []), *made.get(bf["id"], [])]
        bf["runs_running"] += len(runs)
        out[bf["id"]] = runs
    return out


@dataclass(frozen=True)
class Claim:
    runs: list[ClaimedRun]
    skipped: tuple[int, ...] = ()
    """On a short claim (PostgreSQL), backfills with room and work skipped because another
    claimer held their row (a few): an idle worker's next step waits for their rows
    (``step``'s ``wait_for``) instead of skipping them again, so it is not starved by busy
    workers that hold the hot row one step after another."""

    @property
    def contended(self) -> bool:
        """A backfill row was skipped: worth asking again soon, not after a poll."""
        return bool(self.skipped)


@dataclass(frozen=True)
class Finish:
    """An attempt a worker saw end: its fence, the backfill it belongs to, its result."""

    key: RunKey
    backfill_id: int
    result: AttemptResult


@dataclass(frozen=True)
class Step:
    recorded: set[RunKey]
    """The attempts recorded; the others were no longer held by the owner and wrote nothing."""
    claim: Claim


def claim(conn: Connection, owner: str, limit: int, *, lease_seconds: float, now: datetime) -> list[ClaimedRun]:
    """The runs of ``claim_runs``."""
    return claim_runs(conn, owner, limit, lease_seconds=lease_seconds, now=now).runs


def claim_runs(conn: Connection, owner: str, limit: int, *, lease_seconds: float, now: datetime) -> Claim:
    """A ``step`` that records nothing: claim up to ``limit`` runs for ``owner``."""
    return step(conn, owner, [], limit, lease_seconds=lease_seconds, now=now).claim


def step(
    conn: Connection,
    owner: str,
    finished: Sequence[Finish],
    limit: int,
    *,
    lease_seconds: float,
    now: datetime,
    wait_for: Sequence[int] = (),
) -> Step:
    """One worker step in one transaction: record the attempts ``owner`` saw end (fenced
    on run, attempt and lease owner) and claim up to ``limit`` runs into its free slots,
    sharing them fairly over competing backfills.

    Statements, in lock order (backfill rows, then run rows, as every user action on a
    backfill): the claim candidates, with the backfill rows of the recorded runs locked
    first (``_candidates_statement``); the successes in one fenced UPDATE, the failures in
    one fenced read and one batched UPDATE; per dealing round one statement that takes
    every served backfill's share of queued runs (one per backfill on SQLite), and one
    INSERT that creates the runs still short, already claimed, for all of them; then ONE
    counter update per backfill for everything the step changed in it (all in one
    statement on PostgreSQL).

    ``wait_for``: more backfill rows to lock first, waiting (those the previous claim
    skipped, ``Claim.skipped``). Safe: all waiting locks come first, in id order, while the
    transaction holds no other row.

    Backfills are served least-recently-claimed first, the slots dealt one per backfill
    per round, so a large backfill cannot starve the others; ``last_claimed_at`` carries
    that order to the next claim of any worker. The claim sees the counters as the
    recorded runs leave them: a slot freed by a run of a backfill at ``max_active_runs``
    can go to that backfill at once.
    """
    if len({f.key.run_id for f in finished}) != len(finished):
        raise ValueError("a run appears twice in one step")
    mine = sorted({f.backfill_id for f in finished} | set(wait_for))
    candidates: list[dict[str, Any]] = []
    if limit > 0:
        candidates = [dict(c) for c in _claim_candidates(conn, max(limit, 16), mine)]
    else:
        _lock_backfills(conn, mine)
    deltas: dict[int, _Deltas] = {}
    recorded = _record(conn, owner, [(f.key, f.result) for f in finished], now, deltas)
    if limit <= 0:
        _bump(conn, deltas, now)
        return Step(recorded, Claim([]))
    return Step(recorded, _claim(conn, owner, candidates, limit, lease_seconds, now, deltas))


def _claim(
    conn: Connection,
    owner: str,
    candidates: list[dict[str, Any]],
    limit: int,
    lease_seconds: float,
    now: datetime,
    deltas: dict[int, _Deltas],
) -> Claim:
    """Deal ``limit`` slots over the locked ``candidates``, then the one counter update
    of every backfill the step touched (``deltas``: what its recorded runs moved)."""
    for bf in candidates:  # as the recorded runs left them
        d = deltas.get(bf["id"])
        if d is not None:
            bf["runs_running"] += d.running
            bf["runs_completed"] += d.completed
            bf["runs_failed"] += d.failed
    lease_until = now + timedelta(seconds=lease_seconds)
    stamp = _claim_stamp_base(candidates, now)
    before = {bf["id"]: (bf["runs_running"], bf["runs_created"], bf["cursor"], bf["exhausted"]) for bf in candidates}
    taken: dict[int, list[Row]] = {}
    left = limit
    order = {bf["id"]: i for i, bf in enumerate(candidates)}
    pending = [bf for bf in candidates if _room(bf) > 0]
    while left > 0 and pending:
        shares = _shares(left, [_room(bf) for bf in pending])
        dealt = [(bf, k) for bf, k in zip(pending, shares, strict=True) if k > 0]
        got = _claim_round(conn, dealt, owner, lease_until, now)
        again = [bf for bf, k in zip(pending, shares, strict=True) if k == 0]  # not dealt: still in the running
        for bf, k in dealt:
            runs = got[bf["id"]]
            left -= len(runs)
            if runs:
                taken.setdefault(bf["id"], []).extend(runs)
            if len(runs) == k and _room(bf) > 0:
                again.append(bf)  # got its full share: may take more in the next round
        pending = sorted(again, key=lambda bf: order[bf["id"]])
    claimed: list[ClaimedRun] = []
    moved: dict[int, tuple[dict[str, Any], datetime | None]] = {}
    served = 0
    for bf in candidates:
        runs = taken.get(bf["id"], [])
        running, created, cursor, exhausted = before[bf["id"]]
        if not runs and (bf["runs_created"], bf["cursor"], bf["exhausted"]) == (created, cursor, exhausted):
            continue  # untouched by the claim
        claimed_at = None
        if runs:
            served += 1  # distinct, increasing stamps: this claim's order carries over
            claimed_at = stamp + timedelta(microseconds=served)
        d = deltas.setdefault(bf["id"], _Deltas())
        d.running += bf["runs_running"] - running
        d.created += bf["runs_created"] - created
        moved[bf["id"]] = (bf, claimed_at)
        claimed.extend(_claimed_run(bf, r) for r in runs)
    _bump(conn, deltas, now, moved=moved)
    skipped: tuple[int, ...] = ()
    if len(claimed) < limit and conn.dialect.name == "postgresql":
        skipped = _skipped(conn, [bf["id"] for bf in candidates])
    return Claim(claimed, skipped=skipped)


def _claimed_run(bf: Row, run: Row) -> ClaimedRun:
    return ClaimedRun(
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


def _claim_stamp_base(candidates: Sequence[Row], now: datetime) -> datetime:
    """Where this claim's ``last_claimed_at`` stamps start: after every stamp given so
    far, so the backfills served now go behind all others even when the clock reads the
    same (or, on another host, an earlier) time as at the previous claim."""
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
    remain, else failed with a clear error. Returns the runs it expired.

    A plain read finds them; their backfill rows are locked before the fenced read locks
    the runs (the lock order of every writer), which re-checks the lapsed lease."""
    q = (
        select(interval_runs.c.id, interval_runs.c.attempt, interval_runs.c.lease_owner, interval_runs.c.backfill_id)
        .where(interval_runs.c.status == RunStatus.RUNNING.value, interval_runs.c.lease_expires_at < now)
        .limit(limit)
    )
    rows = conn.execute(q).all()
    lapsed = [
        (
            RunKey(int(row.id), int(row.attempt)),
            AttemptResult(
                ok=False,
                error=f"worker {row.lease_owner} stopped renewing its lease (killed or lost); "
                f"attempt {row.attempt} abandoned",
            ),
        )
        for row in rows
    ]
    _lock_backfills(conn, sorted({int(row.backfill_id) for row in rows}))
    deltas: dict[int, _Deltas] = {}
    recorded = _finish_many(conn, None, lapsed, now, now, deltas)
    _bump(conn, deltas, now)
    return [key for key, _ in lapsed if key in recorded]


def running_owners(conn: Connection) -> dict[str, datetime]:
    """Lease owners of running runs, each with the earliest start of the runs it holds."""
    q = (
        select(interval_runs.c.lease_owner, func.min(interval_runs.c.started_at))
        .where(interval_runs.c.status == RunStatus.RUNNING.value, interval_runs.c.lease_owner.is_not(None))
        .group_by(interval_runs.c.lease_owner)
    )
    return {str(owner): started for owner, started in conn.execute(q).all()}


def expire_owners(conn: Connection, owners: Sequence[str], now: datetime, *, reason: str) -> list[RunKey]:
    """The runs held by ``owners`` (known to be gone), expired at once as ``expire_leases``
    would after their lease: re-queued as a new attempt while retries remain, else failed.
    Fenced on (run id, attempt, owner). Returns the runs it expired."""
    if not owners:
        return []
    q = select(
        interval_runs.c.id, interval_runs.c.attempt, interval_runs.c.lease_owner, interval_runs.c.backfill_id
    ).where(interval_runs.c.status == RunStatus.RUNNING.value, interval_runs.c.lease_owner.in_(list(owners)))
    rows = conn.execute(q).all()
    _lock_backfills(conn, sorted({int(row.backfill_id) for row in rows}))
    keys = [RunKey(int(row.id), int(row.attempt)) for row in rows]
    by_owner: dict[str, list[tuple[RunKey, AttemptResult]]] = {}
    for key, row in zip(keys, rows, strict=True):
        message = f"worker {row.lease_owner} {reason}; attempt {row.attempt} abandoned"
        by_owner.setdefault(row.lease_owner, []).append((key, AttemptResult(ok=False, error=message)))
    deltas: dict[int, _Deltas] = {}
    recorded: set[RunKey] = set()
    for owner, items in by_owner.items():
        recorded |= _finish_many(conn, owner, items, now, None, deltas)
    _bump(conn, deltas, now)
    return [key for key in keys if key in recorded]


# ---- finishing -----------------------------------------------------------------------

COMPLETE_BATCH = 64  # successes recorded per statement (a bounded JSON document each)


@dataclass
class _Deltas:
    """How one backfill's counters move with what this transaction changed in it."""

    running: int = 0
    completed: int = 0
    failed: int = 0
    rows: int = 0
    duration: float = 0.0
    created: int = 0

    def add(self, status: RunStatus, rows: int, duration: float) -> None:
        """An attempt ended with ``status``."""
        self.running -= 1
        if status is RunStatus.COMPLETED:
            self.completed += 1
            self.rows += rows
            self.duration += duration
        elif status is RunStatus.FAILED:
            self.failed += 1


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
    _lock_backfills_of(conn, [key.run_id])
    deltas: dict[int, _Deltas] = {}
    if result.ok and owner is not None and expired_before is None:
        recorded = _record(conn, owner, [(key, result)], now, deltas)
    else:
        recorded = _finish_many(conn, owner, [(key, result)], now, expired_before, deltas)
    _bump(conn, deltas, now)
    return key in recorded


def record_many(
    conn: Connection, owner: str, finished: Sequence[tuple[RunKey, AttemptResult]], now: datetime
) -> set[RunKey]:
    """A ``step`` that claims nothing, for callers that do not know the runs' backfills."""
    if len({key.run_id for key, _ in finished}) != len(finished):
        raise ValueError("record_many: a run appears twice in one batch")
    _lock_backfills_of(conn, [key.run_id for key, _ in finished])
    deltas: dict[int, _Deltas] = {}
    recorded = _record(conn, owner, finished, now, deltas)
    _bump(conn, deltas, now)
    return recorded


def _lock_backfills_of(conn: Connection, run_ids: Sequence[int]) -> None:
    """PostgreSQL: ``_lock_backfills`` for the backfills of these runs (one plain read first)."""
    if run_ids and conn.dialect.name == "postgresql":
        q = select(interval_runs.c.backfill_id).distinct().where(interval_runs.c.id.in_(list(run_ids)))
        _lock_backfills(conn, sorted(int(b) for b in conn.execute(q).scalars()))


def _record(
    conn: Connection,
    owner: str,
    finished: Sequence[tuple[RunKey, AttemptResult]],
    now: datetime,
    deltas: dict[int, _Deltas],
) -> set[RunKey]:
    """Record the attempts a worker saw end, fenced like ``record_attempt``: the successes
    in one UPDATE (per ``COMPLETE_BATCH``), the failures in one fenced read and one batched
    UPDATE (they need the retry decision). The counters' moves are left in ``deltas``.
    Returns the keys recorded; the others were no longer held by ``owner``."""
    recorded: set[RunKey] = set()
    successes = [(key, result) for key, result in finished if result.ok]
    for i in range(0, len(successes), COMPLETE_BATCH):
        recorded |= _complete(conn, owner, successes[i : i + COMPLETE_BATCH], now, deltas)
    failures = [(key, result) for key, result in finished if not result.ok]
    recorded |= _finish_many(conn, owner, failures, now, None, deltas)
    return recorded


@lru_cache(maxsize=1)
def _sqlite_complete_statement() -> Any:
    """SQLite: complete any number of running attempts in one UPDATE … FROM, each fenced
    on its own attempt and the common lease owner; the per-run values travel as ONE JSON
    array of ``[id, attempt, duration, rows, block results, version]`` (``json_each``),
    read once into a MATERIALIZED CTE: each element is parsed once and each run looked up
    by its key (without it SQLite scans the array again for every running run)."""
    j = _json_rows("p_batch")
    v = (
        select(
            _json_item(j, 0, BigInteger()).label("run_id"),
            _json_item(j, 1, Integer()).label("run_attempt"),
            _json_item(j, 2, Float()).label("run_duration"),
            _json_item(j, 3, BigInteger()).label("run_rows"),
            _json_item(j, 4, Text(), as_json=True).label("run_blocks"),
            _json_item(j, 5, Text()).label("run_version"),
        )
        .select_from(j)
        .cte("v")
        .prefix_with("MATERIALIZED")
    )
    return (
        update(interval_runs)
        .where(
            interval_runs.c.id == v.c.run_id,
            interval_runs.c.attempt == v.c.run_attempt,
            interval_runs.c.status == RunStatus.RUNNING.value,
            interval_runs.c.lease_owner == bindparam("p_owner"),
        )
        .values(
            status=transitions.run_succeed(RunStatus.RUNNING).value,
            ended_at=bindparam("p_now", type_=UTCDateTime()),
            duration=v.c.run_duration,
            rows=v.c.run_rows,
            error=None,
            block_results=v.c.run_blocks,
            pipeline_version=v.c.run_version,
            lease_owner=None,
            lease_expires_at=None,
            not_before=None,
        )
        .returning(interval_runs.c.id, interval_runs.c.backfill_id)
    )


def _unnest(name: str, **columns: Any) -> Any:
    """PostgreSQL: ``unnest(:p_<col>, ...) AS name(col, ...)`` — one array parameter per
    column, so a statement over any number of runs has one text, short enough for
    psycopg to cache and prepare it (it prepares none longer than 4,096 characters, and
    one VALUES row or CASE branch per run made each batch size a new, long text)."""
    arrays = [bindparam(f"p_{col}", type_=ARRAY(type_)) for col, type_ in columns.items()]
    return func.unnest(*arrays).table_valued(*columns).render_derived(name=name)


@lru_cache(maxsize=1)
def _pg_complete_statement() -> Any:
    """PostgreSQL: complete any number of running attempts in one UPDATE, each fenced on
    its own attempt and the common lease owner. The per-run values travel as ONE JSON
    document (``jsonb_to_recordset``): one ``json.dumps``, where arrays of JSON texts cost
    psycopg an escaping pass over every quote of every block result."""
    v = (
        func.jsonb_to_recordset(cast(bindparam("p_batch", type_=Text()), JSONB))
        .table_valued(
            column("id", BigInteger()),
            column("attempt", Integer()),
            column("duration", Float()),
            column("rows", BigInteger()),
            column("blocks", JSONB()),
            column("version", Text()),
        )
        .render_derived(name="v", with_types=True)
    )
    return (
        update(interval_runs)
        .where(
            interval_runs.c.id == v.c.id,
            interval_runs.c.attempt == v.c.attempt,
            interval_runs.c.status == RunStatus.RUNNING.value,
            interval_runs.c.lease_owner == bindparam("p_owner"),
        )
        .values(
            status=transitions.run_succeed(RunStatus.RUNNING).value,
            ended_at=bindparam("p_now", type_=UTCDateTime()),
            duration=v.c.duration,
            rows=v.c.rows,
            error=None,
            block_results=v.c.blocks,
            pipeline_version=v.c.version,
            lease_owner=None,
            lease_expires_at=None,
            not_before=None,
        )
        .returning(interval_runs.c.id, interval_runs.c.backfill_id)
    )


def _complete(
    conn: Connection,
    owner: str,
    successes: Sequence[tuple[RunKey, AttemptResult]],
    now: datetime,
    deltas: dict[int, _Deltas],
) -> set[RunKey]:
    if not successes:
        return set()
    params: dict[str, Any] = {"p_owner": owner, "p_now": now}
    if conn.dialect.name == "postgresql":
        batch: list[Any] = [
            {
                "id": key.run_id,
                "attempt": key.attempt,
                "duration": result.duration or 0.0,
                "rows": result.rows,
                "blocks": result.block_results,
                "version": result.pipeline_version,
            }
            for key, result in successes
        ]
        statement = _pg_complete_statement()
    else:
        batch = [
            [
                key.run_id,
                key.attempt,
                result.duration or 0.0,
                result.rows,
                result.block_results,
                result.pipeline_version,
            ]
            for key, result in successes
        ]
        statement = _sqlite_complete_statement()
    params["p_batch"] = json.dumps(batch)
    done = dict(conn.execute(statement, params).all())
    recorded: set[RunKey] = set()
    for key, result in successes:
        if key.run_id in done:
            recorded.add(key)
            deltas.setdefault(done[key.run_id], _Deltas()).add(RunStatus.COMPLETED, result.rows, result.duration or 0.0)
            _save_log(conn, key, result, now)
    return recorded


@lru_cache(maxsize=8)
def _fenced_attempts_statement(owner: bool, expiry: bool, postgres: bool) -> Any:
    """The running attempts among ``p_ids`` (with what the retry decision needs), held by
    ``p_owner`` if ``owner``, with a lease older than ``p_expired`` if ``expiry``; locked on
    PostgreSQL. One text per shape: an array on PostgreSQL, an expanding IN on SQLite."""
    ids = (
        interval_runs.c.id == any_(bindparam("p_ids", type_=ARRAY(BigInteger())))
        if postgres
        else interval_runs.c.id.in_(bindparam("p_ids", expanding=True))
    )
    fence = [ids, interval_runs.c.status == RunStatus.RUNNING.value]
    if owner:
        fence.append(interval_runs.c.lease_owner == bindparam("p_owner"))
    if expiry:
        fence.append(interval_runs.c.lease_expires_at < bindparam("p_expired", type_=UTCDateTime()))
    q = (
        select(
            interval_runs.c.id,
            interval_runs.c.attempt,
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
    if postgres:
        q = q.with_for_update(of=interval_runs)
    return q


_FINISH_ATTEMPT = (
    update(interval_runs)
    .where(interval_runs.c.id == bindparam("p_id"))
    .values(
        status=bindparam("p_status"),
        ended_at=bindparam("p_now", type_=UTCDateTime()),
        duration=bindparam("p_duration", type_=Float()),
        rows=bindparam("p_rows", type_=BigInteger()),
        error=bindparam("p_error", type_=Text()),
        block_results=bindparam("p_blocks", type_=json_type()),
        lease_owner=None,
        lease_expires_at=None,
        not_before=bindparam("p_not_before", type_=UTCDateTime()),
        queued_at=func.coalesce(bindparam("p_queued", type_=UTCDateTime()), interval_runs.c.queued_at),
        pipeline_version=func.coalesce(bindparam("p_version", type_=String()), interval_runs.c.pipeline_version),
    )
)


def _finish_many(
    conn: Connection,
    owner: str | None,
    items: Sequence[tuple[RunKey, AttemptResult]],
    now: datetime,
    expired_before: datetime | None,
    deltas: dict[int, _Deltas],
) -> set[RunKey]:
    """The end of attempts with the retry decision (failures, expiry), fenced on (run id,
    attempt[, lease owner][, lease expired before]): one read of the attempts still held
    (locked on PostgreSQL), the decisions (``domain.transitions``), one batched UPDATE
    (executemany: one round trip), then each attempt's log. Returns the keys recorded."""
    if not items:
        return set()
    postgres = conn.dialect.name == "postgresql"
    stmt = _fenced_attempts_statement(owner is not None, expired_before is not None, postgres)
    params: dict[str, Any] = {"p_ids": [key.run_id for key, _ in items]}
    if owner is not None:
        params["p_owner"] = owner
    if expired_before is not None:
        params["p_expired"] = expired_before
    held = {row.id: row for row in conn.execute(stmt, params)}
    writes: list[dict[str, Any]] = []
    recorded: list[tuple[RunKey, AttemptResult]] = []
    for key, result in items:
        row = held.get(key.run_id)
        if row is None or row.attempt != key.attempt:
            continue  # not held any more (or a newer attempt): the fence refuses it
        backfill_active = BackfillStatus(row.backfill_status) in ACTIVE_BACKFILL_STATUSES
        status = transitions.run_after_attempt(
            ok=result.ok, tries=row.tries, retries=row.retries if backfill_active else 0
        )
        duration = result.duration
        if duration is None and row.started_at is not None:
            duration = max(0.0, (now - row.started_at).total_seconds())
        retry = status is RunStatus.QUEUED
        writes.append(
            {
                "p_id": key.run_id,
                "p_status": status.value,
                "p_now": now,
                "p_duration": duration,
                "p_rows": result.rows,
                "p_error": result.error[:ERROR_LIMIT] if result.error else None,
                "p_blocks": result.block_results,
                "p_not_before": (
                    now + timedelta(seconds=transitions.retry_delay(row.retry_delay_seconds, row.tries))
                    if retry
                    else None
                ),
                "p_queued": now if retry else None,
                "p_version": result.pipeline_version,
            }
        )
        deltas.setdefault(row.backfill_id, _Deltas()).add(status, result.rows, duration or 0.0)
        recorded.append((key, result))
    if writes:
        conn.execute(_FINISH_ATTEMPT, writes)
    for key, result in recorded:
        _save_log(conn, key, result, now)
    return {key for key, _ in recorded}


def _save_log(conn: Connection, key: RunKey, result: AttemptResult, now: datetime) -> None:
    """The attempt's record: its output, the pipeline version it ran and, if it failed,
    its error (with the traceback). A silent success stores nothing (its version is on
    the run)."""
    if result.log or result.error:
        error = result.error[:ERROR_LIMIT] if result.error else None
        _upsert_log(conn, key, result.log or "", now, pipeline_version=result.pipeline_version, error=error)


def _upsert_log(
    conn: Connection,
    key: RunKey,
    content: str,
    now: datetime,
    *,
    pipeline_version: str | None = None,
    error: str | None = None,
) -> None:
    values: dict[str, Any] = {"content": content}
    if pipeline_version is not None:
        values["pipeline_version"] = pipeline_version
    if error is not None:
        values["error"] = error
    updated = conn.execute(
        update(run_logs).where(run_logs.c.run_id == key.run_id, run_logs.c.attempt == key.attempt).values(**values)
    ).rowcount
    if not updated:
        conn.execute(insert(run_logs).values(run_id=key.run_id, attempt=key.attempt, created_at=now, **values))


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


# ---- counters and status ---------------------------------------------------------------

_COUNTERS = (
    backfills.c.status,
    backfills.c.exhausted,
    backfills.c.runs_created,
    backfills.c.runs_completed,
    backfills.c.runs_failed,
    backfills.c.runs_cancelled,
    backfills.c.runs_running,
)

_FINISH_BUMP = (
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

_CLAIM_BUMP = _FINISH_BUMP.values(
    runs_created=backfills.c.runs_created + bindparam("d_created"),
    cursor=bindparam("p_cursor", type_=UTCDateTime()),
    exhausted=bindparam("p_exhausted"),
    started_at=func.coalesce(backfills.c.started_at, bindparam("p_started", type_=UTCDateTime())),
    last_claimed_at=func.coalesce(bindparam("p_claimed", type_=UTCDateTime()), backfills.c.last_claimed_at),
)


def _bump(
    conn: Connection,
    deltas: Mapping[int, _Deltas],
    now: datetime,
    *,
    moved: Mapping[int, tuple[dict[str, Any], datetime | None]] | None = None,
) -> None:
    """ONE counter update per backfill the transaction changed (in id order), then its
    status settles. ``moved``: the backfills a claim touched, with their new cursor and
    ``exhausted`` (in the row dict) and their claim stamp."""
    moved = moved or {}
    if len(deltas) > 1 and conn.dialect.name == "postgresql":
        _pg_bump_many(conn, deltas, now, moved)
        return
    for backfill_id in sorted(deltas):
        d = deltas[backfill_id]
        params: dict[str, Any] = {
            "p_backfill": backfill_id,
            "d_running": d.running,
            "d_completed": d.completed,
            "d_failed": d.failed,
            "d_rows": d.rows,
            "d_duration": d.duration,
            "p_now": now,
        }
        claimed = moved.get(backfill_id)
        if claimed is None:
            _apply_settle(conn, backfill_id, conn.execute(_FINISH_BUMP, params).mappings().one(), now)
            continue
        bf, claimed_at = claimed
        params.update(
            d_created=d.created,
            p_cursor=bf["cursor"],
            p_exhausted=bf["exhausted"],
            p_started=now if claimed_at is not None else None,
            p_claimed=claimed_at,
        )
        counters = conn.execute(_CLAIM_BUMP, params).mappings().one()
        bf["status"] = _apply_settle(conn, backfill_id, counters, now).value


@lru_cache(maxsize=1)
def _pg_bump_many_statement() -> Any:
    """PostgreSQL: every backfill's counter update of a step in ONE statement (one array
    per column; the claim's cursor, ``exhausted`` and stamp only where ``moved``)."""
    v = _unnest(
        "v",
        id=BigInteger(),
        running=Integer(),
        completed=Integer(),
        failed=Integer(),
        rows=BigInteger(),
        duration=Float(),
        created=Integer(),
        moved=Boolean(),
        cursor=UTCDateTime(),
        exhausted=Boolean(),
        started=UTCDateTime(),
        claimed=UTCDateTime(),
    )
    return (
        update(backfills)
        .where(backfills.c.id == v.c.id)
        .values(
            runs_running=backfills.c.runs_running + v.c.running,
            runs_completed=backfills.c.runs_completed + v.c.completed,
            runs_failed=backfills.c.runs_failed + v.c.failed,
            rows_total=backfills.c.rows_total + v.c.rows,
            duration_total=backfills.c.duration_total + v.c.duration,
            runs_created=backfills.c.runs_created + v.c.created,
            cursor=case((v.c.moved, v.c.cursor), else_=backfills.c.cursor),
            exhausted=case((v.c.moved, v.c.exhausted), else_=backfills.c.exhausted),
            started_at=func.coalesce(backfills.c.started_at, v.c.started),
            last_claimed_at=func.coalesce(v.c.claimed, backfills.c.last_claimed_at),
            updated_at=bindparam("p_now", type_=UTCDateTime()),
        )
        .returning(backfills.c.id, *_COUNTERS)
    )


def _pg_bump_many(
    conn: Connection,
    deltas: Mapping[int, _Deltas],
    now: datetime,
    moved: Mapping[int, tuple[dict[str, Any], datetime | None]],
) -> None:
    """``_bump`` of several backfills in one statement: their rows are already locked by
    this transaction (the step's first statement), so the order of the update is free."""
    ids = sorted(deltas)
    claims = [moved.get(i) for i in ids]
    params = {
        "p_id": ids,
        "p_running": [deltas[i].running for i in ids],
        "p_completed": [deltas[i].completed for i in ids],
        "p_failed": [deltas[i].failed for i in ids],
        "p_rows": [deltas[i].rows for i in ids],
        "p_duration": [deltas[i].duration for i in ids],
        "p_created": [deltas[i].created for i in ids],
        "p_moved": [c is not None for c in claims],
        "p_cursor": [c[0]["cursor"] if c is not None else None for c in claims],
        "p_exhausted": [bool(c[0]["exhausted"]) if c is not None else False for c in claims],
        "p_started": [now if c is not None and c[1] is not None else None for c in claims],
        "p_claimed": [c[1] if c is not None else None for c in claims],
        "p_now": now,
    }
    for counters in conn.execute(_pg_bump_many_statement(), params).mappings().all():
        status = _apply_settle(conn, counters["id"], counters, now)
        claimed = moved.get(counters["id"])
        if claimed is not None:
            claimed[0]["status"] = status.value


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
        notifications.enqueue(conn, backfill_id, new, now)  # the outbox, in this transaction
    return new


def _settle(conn: Connection, backfill_id: int, now: datetime) -> BackfillStatus:
    """Derive the backfill status from its counters (same transaction as the change)."""
    bf = conn.execute(select(*_COUNTERS).where(backfills.c.id == backfill_id)).mappings().one()
    return _apply_settle(conn, backfill_id, bf, now)


def settle(conn: Connection, backfill_id: int, now: datetime) -> BackfillStatus:
    return _settle(conn, backfill_id, now)


# ---- user actions on many runs ---------------------------------------------------------


def cancel_queued(conn: Connection, backfill_id: int, now: datetime) -> int:
    """Cancel every run that has not started; stop materializing. Running runs go on.

    The cancelled counter counts every interval that will not run because of the cancel:
    the queued runs, and the intervals never materialized as runs (docs/api.md), so that
    completed + failed + cancelled = total once the running runs have finished.
    Returns that number."""
    cancelled = conn.execute(
        update(interval_runs)
        .where(interval_runs.c.backfill_id == backfill_id, interval_runs.c.status == RunStatus.QUEUED.value)
        .values(status=transitions.run_cancel(RunStatus.QUEUED).value, ended_at=now, not_before=None)
    ).rowcount
    bf = conn.execute(
        select(backfills.c.runs_total, backfills.c.runs_created, backfills.c.exhausted).where(
            backfills.c.id == backfill_id
        )
    ).one()
    unmaterialized = 0 if bf.exhausted else max(0, int(bf.runs_total) - int(bf.runs_created))
    conn.execute(
        update(backfills)
        .where(backfills.c.id == backfill_id)
        .values(
            runs_cancelled=backfills.c.runs_cancelled + cancelled + int(unmaterialized),
            exhausted=True,
            updated_at=now,
        )
    )
    return int(cancelled) + int(unmaterialized)


def requeue_for_retry(conn: Connection, backfill_id: int, now: datetime) -> int:
    """Re-queue the failed and cancelled runs of a backfill (a manual retry); the
    completed ones are left alone. Their retry budget starts afresh."""
    retryable = [s.value for s in transitions.RETRYABLE_RUN_STATUSES]
    by_status: dict[str, int] = dict(
        conn.execute(
            select(interval_runs.c.status, func.count())
            .where(interval_runs.c.backfill_id == backfill_id, interval_runs.c.status.in_(retryable))
            .group_by(interval_runs.c.status)
        ).all()
    )
    for source in transitions.RETRYABLE_RUN_STATUSES:
        if not by_status.get(source.value):
            continue
        conn.execute(
            update(interval_runs)
            .where(interval_runs.c.backfill_id == backfill_id, interval_runs.c.status == source.value)
            .values(
                status=transitions.run_retry(source).value,
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


@dataclass(frozen=True)
class Rerun:
    requeued: int
    """Runs put back in the queue as new attempts."""
    running: int
    """Chosen runs left alone because they are running."""


_RERUN_CHUNK = 1000


def requeue_chosen(
    conn: Connection,
    backfill_id: int,
    now: datetime,
    *,
    run_ids: Sequence[int] | None = None,
    starts: Sequence[datetime] | None = None,
    statuses: Sequence[RunStatus] | None = None,
) -> Rerun:
    """Re-queue the chosen runs of a backfill (by id, by interval start or by status) as
    new attempts of the same runs, with a fresh retry budget; running ones are left to
    finish and queued ones wait already. The counters (and the rows and durations of
    re-queued completed runs) move with them. The caller holds the backfill row lock."""
    where = [interval_runs.c.backfill_id == backfill_id]
    if run_ids is not None:
        where.append(interval_runs.c.id.in_(list(run_ids)))
    if starts is not None:
        where.append(interval_runs.c.interval_start.in_(list(starts)))
    if statuses is not None:
        where.append(interval_runs.c.status.in_([s.value for s in statuses]))
    q = select(interval_runs.c.id, interval_runs.c.status, interval_runs.c.rows, interval_runs.c.duration).where(*where)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(of=interval_runs)
    chosen = conn.execute(q).all()
    by_status: dict[RunStatus, int] = {}
    rows = 0
    duration = 0.0
    ids: list[int] = []
    running = 0
    for run in chosen:
        status = RunStatus(run.status)
        if status not in transitions.RERUNNABLE_RUN_STATUSES:
            running += status is RunStatus.RUNNING
            continue
        transitions.run_rerun(status)
        by_status[status] = by_status.get(status, 0) + 1
        ids.append(int(run.id))
        if status is RunStatus.COMPLETED:
            rows += int(run.rows or 0)
            duration += float(run.duration or 0.0)
    for i in range(0, len(ids), _RERUN_CHUNK):
        conn.execute(
            update(interval_runs)
            .where(interval_runs.c.id.in_(ids[i : i + _RERUN_CHUNK]))
            .values(
                status=RunStatus.QUEUED.value,
                tries=0,
                not_before=None,
                error=None,
                ended_at=None,
                queued_at=now,
            )
        )
    if ids:
        conn.execute(
            update(backfills)
            .where(backfills.c.id == backfill_id)
            .values(
                runs_completed=backfills.c.runs_completed - by_status.get(RunStatus.COMPLETED, 0),
                runs_failed=backfills.c.runs_failed - by_status.get(RunStatus.FAILED, 0),
                runs_cancelled=backfills.c.runs_cancelled - by_status.get(RunStatus.CANCELLED, 0),
                rows_total=backfills.c.rows_total - rows,
                duration_total=backfills.c.duration_total - duration,
                updated_at=now,
            )
        )
    return Rerun(requeued=len(ids), running=running)


def run_ids_in(conn: Connection, backfill_id: int, run_ids: Sequence[int]) -> set[int]:
    """Which of ``run_ids`` are runs of the backfill."""
    found: set[int] = set()
    wanted = list(dict.fromkeys(run_ids))
    for i in range(0, len(wanted), _RERUN_CHUNK):
        found |= set(
            conn.execute(
                select(interval_runs.c.id).where(
                    interval_runs.c.backfill_id == backfill_id, interval_runs.c.id.in_(wanted[i : i + _RERUN_CHUNK])
                )
            ).scalars()
        )
    return found


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
