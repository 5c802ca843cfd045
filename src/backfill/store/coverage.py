"""Coverage reads: the latest run of every interval of a pipeline, over all its backfills.

Every query here walks ``ix_interval_runs_coverage`` (pipeline, interval_start, queued_at, id,
status, backfill_id) and never touch the table. The "latest" run of an interval is the
one queued last (``queued_at``, then ``id``): a retry or a re-run re-queues a run, so it
becomes the latest again.

A whole range is first read as *groups*: runs grouped by bucket (a UTC calendar unit:
minute, hour, day, month or year, chosen by the caller), backfill and status. Where
that is not enough to place every run, the caller reads the runs that are not in the
common status (``runs_not_in_status``) or, where backfills overlap, every latest run
(``latest_runs``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, String, func, select

from backfill.store.tables import backfills, interval_runs

BucketUnit = Literal["minute", "hour", "day", "month", "year"]
_SQLITE_PREFIX: dict[BucketUnit, int] = {"minute": 16, "hour": 13, "day": 10, "month": 7, "year": 4}


@dataclass(frozen=True, slots=True)
class Group:
    """The runs of one backfill with one status whose interval starts fall in one UTC
    calendar unit (the bucket)."""

    bucket: Any
    backfill_id: int
    status: str
    runs: int
    first_start: datetime
    last_start: datetime
    first_queued: datetime
    last_queued: datetime


@dataclass(frozen=True, slots=True)
class LatestRun:
    interval_start: datetime
    status: str
    backfill_id: int


def _bucket_key(conn: Connection, unit: BucketUnit) -> Any:
    start = interval_runs.c.interval_start
    if conn.dialect.name == "sqlite":  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC)
        return func.substr(start, 1, _SQLITE_PREFIX[unit], type_=String())
    return func.date_trunc(unit, func.timezone("UTC", start))


def _scope(pipeline_id: int, backfill_id: int | None) -> list[Any]:
    where = [interval_runs.c.pipeline_id == pipeline_id]
    if backfill_id is not None:
        where.append(interval_runs.c.backfill_id == backfill_id)
    return where


def groups(
    conn: Connection, pipeline_id: int, lo: datetime, hi: datetime, unit: BucketUnit, backfill_id: int | None = None
) -> list[Group]:
    """The runs with ``lo <= interval_start < hi`` (of one backfill if given) grouped by
    bucket, backfill and status, in bucket order."""
    key = _bucket_key(conn, unit).label("bucket")
    q = (
        select(
            key,
            interval_runs.c.backfill_id,
            interval_runs.c.status,
            func.count().label("runs"),
            func.min(interval_runs.c.interval_start).label("first_start"),
            func.max(interval_runs.c.interval_start).label("last_start"),
            func.min(interval_runs.c.queued_at).label("first_queued"),
            func.max(interval_runs.c.queued_at).label("last_queued"),
        )
        .where(
            *_scope(pipeline_id, backfill_id), interval_runs.c.interval_start >= lo, interval_runs.c.interval_start < hi
        )
        .group_by(key, interval_runs.c.backfill_id, interval_runs.c.status)
        .order_by(key)
    )
    return [
        Group(
            r.bucket,
            int(r.backfill_id),
            r.status,
            int(r.runs),
            r.first_start,
            r.last_start,
            r.first_queued,
            r.last_queued,
        )
        for r in conn.execute(q)
    ]


def runs_not_in_status(
    conn: Connection, pipeline_id: int, lo: datetime, hi: datetime, status: str, backfill_id: int | None = None
) -> Iterator[tuple[datetime, str, int]]:
    """(interval_start, status, backfill_id) of every run with ``lo <= interval_start <= hi``
    whose status is not ``status``, in interval order."""
    q = (
        select(interval_runs.c.interval_start, interval_runs.c.status, interval_runs.c.backfill_id)
        .where(
            *_scope(pipeline_id, backfill_id),
            interval_runs.c.interval_start >= lo,
            interval_runs.c.interval_start <= hi,
            interval_runs.c.status != status,
        )
        .order_by(interval_runs.c.interval_start)
    )
    for start, run_status, backfill_id in conn.execute(q):
        yield start, run_status, int(backfill_id)


def latest_runs(
    conn: Connection, pipeline_id: int, lo: datetime, hi: datetime, backfill_id: int | None = None
) -> Iterator[LatestRun]:
    """The latest run of every interval start in ``[lo, hi]`` (both inclusive), in order."""
    q = (
        select(interval_runs.c.interval_start, interval_runs.c.status, interval_runs.c.backfill_id)
        .where(
            *_scope(pipeline_id, backfill_id),
            interval_runs.c.interval_start >= lo,
            interval_runs.c.interval_start <= hi,
        )
        .order_by(interval_runs.c.interval_start, interval_runs.c.queued_at, interval_runs.c.id)
    )
    pending: LatestRun | None = None
    for start, status, backfill_id in conn.execute(q):
        if pending is not None and pending.interval_start != start:
            yield pending
        pending = LatestRun(start, status, int(backfill_id))  # a later run of the same start replaces it
    if pending is not None:
        yield pending


@dataclass(frozen=True, slots=True)
class SeriesShape:
    """What decides the interval boundaries of a backfill."""

    interval_type: str
    interval_units: int | None
    cron: str | None
    timezone: str


def shapes(conn: Connection, backfill_ids: Iterable[int]) -> dict[int, SeriesShape]:
    ids = sorted(set(backfill_ids))
    if not ids:
        return {}
    q = select(
        backfills.c.id, backfills.c.interval_type, backfills.c.interval_units, backfills.c.cron, backfills.c.timezone
    ).where(backfills.c.id.in_(ids))
    return {int(r.id): SeriesShape(r.interval_type, r.interval_units, r.cron, r.timezone) for r in conn.execute(q)}
