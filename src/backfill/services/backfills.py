"""Backfill use cases shared by every adapter (team API, pipeline API, CLI, web).

Each function is one transaction and asks ``domain.transitions`` before changing a
status; run-level SQL is delegated to ``store.queue``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, RowMapping

from backfill.domain import transitions
from backfill.domain.errors import Conflict, InvalidTransition, ValidationError
from backfill.domain.intervals import IntervalSeries
from backfill.domain.model import BackfillStatus, Reprocess, RunOrder, RunStatus, is_calendar
from backfill.domain.pipeline import PipelineDefinition, validate_selection
from backfill.domain.progress import RATE_WINDOW, backfill_progress
from backfill.domain.timeparse import parse_instant
from backfill.services.actor import Actor
from backfill.services.row_memo import RowVersionMemo
from backfill.store import backfills as store
from backfill.store import pipelines as pipeline_store
from backfill.store import queue
from backfill.store.clock import utcnow
from backfill.store.db import Database

DEFAULT_MAX_ACTIVE_RUNS = 4
MAX_MAX_ACTIVE_RUNS = 1000
Naive = Literal["utc", "local"]
T = TypeVar("T")

# Settings that shape the intervals or what a run does: editable only before the start.
SHAPE_FIELDS = (
    "start",
    "end",
    "interval_type",
    "interval_units",
    "cron",
    "timezone",
    "variables",
    "block_uuids",
)
EDITABLE_BEFORE_START = (*SHAPE_FIELDS, "run_order", "reprocess", "retries", "retry_delay_seconds", "timeout_seconds")


@dataclass
class BackfillSpec:
    """A backfill as requested by a user, before validation. Datetimes may be strings
    (parsed in the backfill's timezone, ``naive`` deciding what an offset-less time means)."""

    start: str | datetime
    end: str | datetime
    interval_type: str = "day"
    interval_units: int | None = 1
    cron: str | None = None
    timezone: str | None = None
    name: str | None = None
    variables: Mapping[str, Any] | None = None
    block_uuids: list[str] | None = None
    max_active_runs: int = DEFAULT_MAX_ACTIVE_RUNS
    run_order: str = RunOrder.NEWEST_FIRST.value
    reprocess: str = Reprocess.ALL.value
    retries: int | None = None
    retry_delay_seconds: float | None = None
    timeout_seconds: float | None = None
    naive: Naive = "local"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BackfillDetail:
    row: RowMapping
    error_report: list[RowMapping]
    metrics: dict[str, Any]


# ---- validation helpers --------------------------------------------------------------


def _timezone(name: str | None, pipeline: RowMapping) -> str:
    tz = name or pipeline["timezone"] or "UTC"
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(
            f"unknown time zone {tz!r}; use an IANA name such as Europe/Berlin", field="timezone"
        ) from exc
    return tz


def _positive_int(value: Any, field: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{field} must be an integer", field=field)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ValidationError(f"{field} must be {bound}", field=field)
    return value


def _non_negative(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValidationError(f"{field} must be a number ≥ 0", field=field)
    return float(value)


def _reject_nul(value: Any, field: str) -> None:
    """Text with NUL characters cannot be stored (PostgreSQL refuses it); refuse it on
    every database alike, naming the field, instead of failing at the INSERT."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationError(f"{field} must not contain NUL (\\u0000) characters", field=field)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _reject_nul(key, field)
            _reject_nul(item, field)
    elif isinstance(value, list | tuple):
        for item in value:
            _reject_nul(item, field)


def _enum(value: Any, enum: type[RunOrder] | type[Reprocess], field: str) -> str:
    try:
        return str(enum(value).value)
    except ValueError as exc:
        allowed = ", ".join(e.value for e in enum)
        raise ValidationError(f"{field} must be one of: {allowed}", field=field) from exc


def _series(spec: BackfillSpec, tz: str) -> tuple[IntervalSeries, datetime, datetime]:
    start = parse_instant(spec.start, field="start", timezone=tz, naive=spec.naive)
    end = parse_instant(spec.end, field="end", timezone=tz, naive=spec.naive)
    series = IntervalSeries(start, end, spec.interval_type, spec.interval_units, timezone=tz, cron=spec.cron)
    return series, start, end


def _default_name(pipeline_uuid: str, spec: BackfillSpec, start: datetime, end: datetime) -> str:
    fmt = "%Y-%m-%d" if is_calendar(spec.interval_type, spec.cron) else "%Y-%m-%d %H:%M:%S"
    return f"{pipeline_uuid} {start.strftime(fmt)} → {end.strftime(fmt)}"


def _values_from_spec(spec: BackfillSpec, pipeline: RowMapping) -> dict[str, Any]:
    definition = pipeline_store.definition(pipeline)
    tz = _timezone(spec.timezone, pipeline)
    series, start, end = _series(spec, tz)
    if spec.variables is not None and not isinstance(spec.variables, Mapping):
        raise ValidationError("variables must be an object", field="variables")
    _reject_nul(spec.variables, "variables")
    _reject_nul(spec.name, "name")
    selection = _selection(definition, spec.block_uuids)
    retries = (
        pipeline["retries"] if spec.retries is None else _positive_int(spec.retries, "retries", minimum=0, maximum=100)
    )
    delay = (
        pipeline["retry_delay_seconds"]
        if spec.retry_delay_seconds is None
        else _non_negative(spec.retry_delay_seconds, "retry_delay_seconds")
    )
    timeout = pipeline["timeout_seconds"] if spec.timeout_seconds is None else spec.timeout_seconds
    if timeout is not None and (_non_negative(timeout, "timeout_seconds") <= 0):
        raise ValidationError("timeout_seconds must be > 0", field="timeout_seconds")
    name = spec.name if spec.name else _default_name(pipeline["uuid"], spec, start, end)
    if len(name) > 500:
        raise ValidationError("name must be at most 500 characters", field="name")
    return {
        "pipeline_id": pipeline["id"],
        "name": name,
        "start": start,
        "end": end,
        "interval_type": spec.interval_type,
        "interval_units": spec.interval_units,
        "cron": spec.cron,
        "timezone": tz,
        "block_uuids": list(selection) if selection is not None else None,
        "variables": dict(spec.variables) if spec.variables is not None else None,
        "max_active_runs": _positive_int(spec.max_active_runs, "max_active_runs", maximum=MAX_MAX_ACTIVE_RUNS),
        "run_order": _enum(spec.run_order, RunOrder, "run_order"),
        "reprocess": _enum(spec.reprocess, Reprocess, "reprocess"),
        "retries": retries,
        "retry_delay_seconds": delay,
        "timeout_seconds": timeout,
        "range_end_exclusive": series.last_end,
        "runs_total": series.count,
    }


def _selection(definition: PipelineDefinition, block_uuids: list[str] | None) -> tuple[str, ...] | None:
    if block_uuids is None:
        return None
    if not isinstance(block_uuids, list) or not all(isinstance(b, str) for b in block_uuids):
        raise ValidationError("block_uuids must be a list of block uuids", field="block_uuids")
    try:
        return validate_selection(definition, block_uuids)
    except ValidationError as exc:
        raise ValidationError(exc.message, field="block_uuids") from exc


def spec_of_row(row: RowMapping) -> BackfillSpec:
    """The spec a saved backfill was made from (its datetimes already aware UTC)."""
    return BackfillSpec(
        start=row["start"],
        end=row["end"],
        interval_type=row["interval_type"],
        interval_units=row["interval_units"],
        cron=row["cron"],
        timezone=row["timezone"],
        name=row["name"],
        variables=row["variables"],
        block_uuids=list(row["block_uuids"]) if row["block_uuids"] is not None else None,
        max_active_runs=row["max_active_runs"],
        run_order=row["run_order"],
        reprocess=row["reprocess"],
        retries=row["retries"],
        retry_delay_seconds=row["retry_delay_seconds"],
        timeout_seconds=row["timeout_seconds"],
    )


# ---- use cases -----------------------------------------------------------------------


def create(
    db: Database,
    actor: Actor,
    pipeline_id: int,
    spec: BackfillSpec,
    *,
    start: bool,
    idempotency_key: str | None = None,
) -> int:
    """Validate and save a backfill; ``start=True`` also starts it (team API)."""
    with db.write() as conn:
        if idempotency_key:
            existing = store.find_by_idempotency_key(conn, actor.team_id, actor.user_id, idempotency_key)
            if existing is not None:
                return existing
        pipeline = pipeline_store.get_in_team(conn, actor.team_id, pipeline_id=pipeline_id)
        values = _values_from_spec(spec, pipeline)
        now = utcnow()
        backfill_id = store.insert_backfill(
            conn,
            {
                **values,
                "team_id": actor.team_id,
                "status": BackfillStatus.CREATED.value,
                "paused": False,
                "runs_created": 0,
                "runs_completed": 0,
                "runs_failed": 0,
                "runs_cancelled": 0,
                "runs_running": 0,
                "rows_total": 0,
                "duration_total": 0.0,
                "exhausted": False,
                "idempotency_key": idempotency_key,
                "created_at": now,
                "created_user_id": actor.user_id,
                "updated_at": now,
            },
        )
        if start:
            _start(conn, store.get(conn, backfill_id, lock=True), now)
        return backfill_id


def dry_run(db: Database, actor: Actor, pipeline_id: int, spec: BackfillSpec, *, limit: int = 1000) -> dict[str, Any]:
    """The intervals a backfill would run and those ``reprocess`` would skip; saves nothing."""
    with db.read() as conn:
        pipeline = pipeline_store.get_in_team(conn, actor.team_id, pipeline_id=pipeline_id)
        values = _values_from_spec(spec, pipeline)
        series = IntervalSeries(
            values["start"],
            values["end"],
            values["interval_type"],
            values["interval_units"],
            timezone=values["timezone"],
            cron=values["cron"],
        )
        probe = {**values, "id": -1}
        skipped = queue.done_intervals(conn, probe) if values["reprocess"] != Reprocess.ALL.value else set()
        descending = values["run_order"] == RunOrder.NEWEST_FIRST.value
        shown = list(
            islice((iv for iv in series.iter_from(None, descending=descending) if iv.start not in skipped), limit)
        )
        return {
            "values": values,
            "total": series.count,
            "to_run": series.count - len(skipped),
            "intervals": shown,
            "skipped": sorted(skipped)[:limit],
            "skipped_count": len(skipped),
        }


def _check_overlap(conn: Connection, bf: RowMapping) -> None:
    other = store.find_overlapping(conn, bf["pipeline_id"], bf["start"], bf["range_end_exclusive"], exclude_id=bf["id"])
    if other is not None:
        finished = other["status"] == BackfillStatus.FAILED.value
        advice = "retry or cancel it" if finished else "cancel it or wait for it to finish"
        raise Conflict(
            f"backfill {other['id']} ({other['name']!r}, {other['status']}) already covers intervals "
            f"of this range for the same pipeline; {advice}"
        )


def _start(conn: Connection, bf: RowMapping, now: datetime) -> None:
    status = transitions.start(BackfillStatus(bf["status"]))
    _check_overlap(conn, bf)
    series = queue.series_of(bf)
    skipped = len(queue.done_intervals(conn, bf))
    total = series.count - skipped
    store.update_backfill(
        conn,
        bf["id"],
        status=status.value,
        runs_total=total,
        exhausted=total == 0,
        cursor=None,
        updated_at=now,
    )
    queue.settle(conn, bf["id"], now)


def _cancel(conn: Connection, actor: Actor, bf: RowMapping, now: datetime) -> None:
    """SPEC §2 cancel: queued runs cancelled in this transaction, running ones finish."""
    status = transitions.cancel(BackfillStatus(bf["status"]))
    queue.cancel_queued(conn, bf["id"], now)
    store.update_backfill(
        conn,
        bf["id"],
        status=status.value,
        completed_at=now,
        removed_at=now,
        removed_user_id=actor.user_id,
        updated_at=now,
    )


def _retry(conn: Connection, bf: RowMapping, now: datetime) -> int:
    """failed → scheduled; re-queues only the failed and cancelled intervals."""
    status = transitions.retry(BackfillStatus(bf["status"]))
    _check_overlap(conn, bf)
    requeued = queue.requeue_for_retry(conn, bf["id"], now)
    store.update_backfill(conn, bf["id"], status=status.value, failed_at=None, completed_at=None, updated_at=now)
    queue.settle(conn, bf["id"], now)
    return requeued


MAX_RERUN_ITEMS = 10_000


def _rerun_starts(bf: RowMapping, data_dates: Sequence[Any]) -> list[datetime]:
    """The interval starts of ``data_dates`` (dates or datetimes in the backfill's
    timezone); each must start an interval of the backfill."""
    series = queue.series_of(bf)
    starts: list[datetime] = []
    for value in data_dates:
        if not isinstance(value, str):
            raise ValidationError(f"data_dates: {value!r} is not a date", field="data_dates")
        start = parse_instant(value, field="data_dates", timezone=bf["timezone"], naive="local")
        if series.index_of(start) is None:
            raise ValidationError(
                f"data_dates: {value!r} is not the data date of an interval of backfill {bf['id']}",
                field="data_dates",
            )
        starts.append(start)
    return starts


def _rerun_statuses(statuses: Sequence[Any]) -> list[RunStatus]:
    allowed = transitions.RERUNNABLE_RUN_STATUSES
    names = ", ".join(s.value.upper() for s in allowed)
    chosen: list[RunStatus] = []
    for value in statuses:
        try:
            status = RunStatus(str(value).lower())
        except ValueError:
            status = None
        if status not in allowed:
            raise ValidationError(f"statuses: {value!r} cannot be re-run; use {names}", field="statuses")
        chosen.append(status)
    return chosen


def _rerun_selection(given: Mapping[str, Sequence[Any] | None]) -> tuple[str, Sequence[Any]]:
    present = [(k, v) for k, v in given.items() if v is not None]
    if len(present) != 1:
        raise ValidationError("give exactly one of run_ids, data_dates, statuses", field="body")
    key, values = present[0]
    if not isinstance(values, list | tuple) or not values:
        raise ValidationError(f"{key} must be a non-empty list", field=key)
    if len(values) > MAX_RERUN_ITEMS:
        raise ValidationError(f"{key}: at most {MAX_RERUN_ITEMS} entries per request", field=key)
    return key, values


def rerun(
    db: Database,
    actor: Actor,
    backfill_id: int,
    *,
    run_ids: Sequence[int] | None = None,
    data_dates: Sequence[str] | None = None,
    statuses: Sequence[str] | None = None,
) -> queue.Rerun:
    """``runs:rerun``: re-queue chosen intervals of a backfill that is not final, as new
    attempts of the same runs (running ones are left to finish). A FAILED backfill is
    SCHEDULED again. An id or date that is not the backfill's is refused, naming it."""
    key, values = _rerun_selection({"run_ids": run_ids, "data_dates": data_dates, "statuses": statuses})
    with db.write() as conn:
        now = utcnow()
        bf = store.get(conn, backfill_id, team_id=actor.team_id, lock=True)
        current = BackfillStatus(bf["status"])
        new = transitions.rerun(current)
        if key == "run_ids":
            ids = [_positive_int(v, "run_ids") for v in values]
            missing = sorted(set(ids) - queue.run_ids_in(conn, backfill_id, ids))
            if missing:
                shown = ", ".join(str(i) for i in missing[:20]) + (" …" if len(missing) > 20 else "")
                raise ValidationError(f"run_ids: not runs of backfill {backfill_id}: {shown}", field="run_ids")
            result = queue.requeue_chosen(conn, backfill_id, now, run_ids=ids)
        elif key == "data_dates":
            result = queue.requeue_chosen(conn, backfill_id, now, starts=_rerun_starts(bf, values))
        else:
            result = queue.requeue_chosen(conn, backfill_id, now, statuses=_rerun_statuses(values))
        if new is not current:
            _check_overlap(conn, bf)
            store.update_backfill(
                conn, backfill_id, status=new.value, failed_at=None, completed_at=None, updated_at=now
            )
        queue.settle(conn, backfill_id, now)
        return result


def _set_paused(conn: Connection, bf: RowMapping, paused: Any) -> None:
    if not isinstance(paused, bool):
        raise ValidationError("paused must be true or false", field="paused")
    transitions.check_pause(BackfillStatus(bf["status"]))
    store.update_backfill(conn, bf["id"], paused=paused)


def _update_settings(conn: Connection, bf: RowMapping, changes: Mapping[str, Any]) -> None:
    """Name / max_active_runs any time (unless final); the shape of the backfill (range,
    interval, variables, blocks, run settings) only before it starts."""
    status = BackfillStatus(bf["status"])
    values: dict[str, Any] = {}
    if "name" in changes:
        name = changes["name"]
        if not isinstance(name, str) or not name.strip() or len(name) > 500:
            raise ValidationError("name must be a non-empty string of at most 500 characters", field="name")
        _reject_nul(name, "name")
        values["name"] = name
    if "max_active_runs" in changes:
        if status.is_final:
            raise InvalidTransition(f"the backfill is {status.value}; max_active_runs can no longer change")
        values["max_active_runs"] = _positive_int(
            changes["max_active_runs"], "max_active_runs", maximum=MAX_MAX_ACTIVE_RUNS
        )
    shape = {k: v for k, v in changes.items() if k in EDITABLE_BEFORE_START}
    if shape:
        transitions.check_settings_editable(status, ", ".join(sorted(shape)))
        current = spec_of_row(bf)
        current.name = values.get("name", bf["name"])
        current.max_active_runs = values.get("max_active_runs", bf["max_active_runs"])
        current.naive = changes.get("naive", "local")
        for key, value in shape.items():
            setattr(current, key, value)
        values.update(_values_from_spec(current, pipeline_store.get(conn, bf["pipeline_id"])))
    unknown = set(changes) - {"name", "max_active_runs", "naive", *EDITABLE_BEFORE_START}
    if unknown:
        raise ValidationError(f"unknown setting(s): {', '.join(sorted(unknown))}", field=sorted(unknown)[0])
    if values:
        store.update_backfill(conn, bf["id"], **values)


def update(
    db: Database,
    actor: Actor,
    backfill_id: int,
    *,
    settings: Mapping[str, Any] | None = None,
    paused: bool | None = None,
    status: BackfillStatus | None = None,
) -> None:
    """Everything a PATCH / PUT may ask for, as ONE transaction: settings first (so "edit
    the range and start" works in one request), then pause, then the status change. Any
    refusal rolls the whole request back — a 422 never leaves half of it applied."""
    with db.write() as conn:
        now = utcnow()
        if settings:
            _update_settings(conn, store.get(conn, backfill_id, team_id=actor.team_id, lock=True), settings)
        if paused is not None:
            _set_paused(conn, store.get(conn, backfill_id, team_id=actor.team_id, lock=True), paused)
        bf = store.get(conn, backfill_id, team_id=actor.team_id, lock=True)
        if status is not None:
            action = transitions.request(BackfillStatus(bf["status"]), status)
            if action is transitions.Action.CANCEL:
                _cancel(conn, actor, bf, now)
            elif action is transitions.Action.START:
                _start(conn, bf, now)
            else:
                _retry(conn, bf, now)


def start(db: Database, actor: Actor, backfill_id: int) -> None:
    with db.write() as conn:
        _start(conn, store.get(conn, backfill_id, team_id=actor.team_id, lock=True), utcnow())


def cancel(db: Database, actor: Actor, backfill_id: int) -> None:
    """SPEC §2 cancel: queued runs cancelled in this transaction, running ones finish."""
    with db.write() as conn:
        _cancel(conn, actor, store.get(conn, backfill_id, team_id=actor.team_id, lock=True), utcnow())


def retry(db: Database, actor: Actor, backfill_id: int) -> int:
    """failed → scheduled; re-queues only the failed and cancelled intervals."""
    with db.write() as conn:
        return _retry(conn, store.get(conn, backfill_id, team_id=actor.team_id, lock=True), utcnow())


def request_status(db: Database, actor: Actor, backfill_id: int, requested: BackfillStatus) -> None:
    """A status asked for by a user, mapped to start / retry / cancel, or refused."""
    update(db, actor, backfill_id, status=requested)


def set_paused(db: Database, actor: Actor, backfill_id: int, paused: bool) -> None:
    if not isinstance(paused, bool):
        raise ValidationError("paused must be true or false", field="paused")
    update(db, actor, backfill_id, paused=paused)


def update_settings(db: Database, actor: Actor, backfill_id: int, changes: Mapping[str, Any]) -> None:
    """Change name / max_active_runs any time (unless final), and the shape of the
    backfill (range, interval, variables, blocks, settings) only before it starts."""
    update(db, actor, backfill_id, settings=changes)


def delete(db: Database, actor: Actor, backfill_id: int) -> None:
    with db.write() as conn:
        bf = store.get(conn, backfill_id, team_id=actor.team_id, lock=True)
        transitions.check_deletable(BackfillStatus(bf["status"]))
        store.delete_backfill(conn, backfill_id)


def metrics(
    row: RowMapping, mean: float | None, p95: float | None, recent_ends: Sequence[datetime], now: datetime
) -> dict[str, Any]:
    """The metrics both dialects show; progress and ETA as ``domain.progress`` defines them."""
    progress = backfill_progress(
        total=int(row["runs_total"]),
        completed=int(row["runs_completed"]),
        failed=int(row["runs_failed"]),
        cancelled=int(row["runs_cancelled"]),
        status=BackfillStatus(row["status"]),
        paused=bool(row["paused"]),
        recent_ends=recent_ends,
        now=now,
    )
    return {
        "progress": round(progress.fraction, 4),
        "finished_runs": progress.finished,
        "runs_to_run": progress.to_run,
        "duration_mean_seconds": round(mean, 6) if mean is not None else None,
        "duration_p95_seconds": round(p95, 6) if p95 is not None else None,
        "duration_total_seconds": round(row["duration_total"], 6),
        "rows": int(row["rows_total"]),
        "remaining_runs": progress.remaining,
        "runs_per_second": round(progress.runs_per_second, 6) if progress.runs_per_second is not None else None,
        "estimated_seconds_remaining": round(progress.eta_seconds, 3) if progress.eta_seconds is not None else None,
    }


def get(db: Database, actor: Actor, backfill_id: int) -> BackfillDetail:
    with db.read() as conn:
        return detail(conn, store.get(conn, backfill_id, team_id=actor.team_id))


def rendered(
    db: Database, actor: Actor, backfill_id: int, memo: RowVersionMemo[T], render: Callable[[BackfillDetail], T]
) -> T:
    """What ``render`` makes of a backfill the actor can see, as it is now (NotFound
    otherwise). A backfill unchanged since ``memo`` last kept its rendering costs one
    single-statement version probe (a polling client); else it is read and rendered."""
    kept = memo.peek(db.engine, backfill_id, store.version_of(db, backfill_id, team_id=actor.team_id))
    if kept is not None:
        return kept
    fresh = get(db, actor, backfill_id)
    return memo.get(db.engine, fresh.row, lambda: render(fresh))


@dataclass(frozen=True)
class Derived:
    error_report: tuple[RowMapping, ...]
    p95: float | None
    recent_ends: tuple[datetime, ...]


def _derive(conn: Connection, row: RowMapping) -> Derived:
    """The counters spare the queries that cannot find anything (no failed run → no report,
    no completion rate for a backfill that is not running)."""
    error_report = tuple(store.error_report(conn, row["id"])) if row["runs_failed"] else ()
    running = row["status"] in (BackfillStatus.SCHEDULED.value, BackfillStatus.RUNNING.value)
    finished = int(row["runs_completed"]) + int(row["runs_failed"])
    recent = tuple(store.recent_finish_times(conn, row["id"], RATE_WINDOW)) if running and finished else ()
    return Derived(error_report, store.duration_p95(conn, row["id"], int(row["runs_completed"])), recent)


# Polling an unchanged backfill (the web page, create --wait, dashboards, lists) reads
# its row only.
_derived: RowVersionMemo[Derived] = RowVersionMemo()


def detail(conn: Connection, row: RowMapping) -> BackfillDetail:
    """The row plus its error report and metrics, in a read transaction. The mean
    duration is the completed runs' total over their count (no query)."""
    derived = _derived.get(conn.engine, row, lambda: _derive(conn, row))
    completed = int(row["runs_completed"])
    mean = row["duration_total"] / completed if completed else None
    return BackfillDetail(
        row=row,
        error_report=list(derived.error_report),
        metrics=metrics(row, mean, derived.p95, derived.recent_ends, utcnow()),
    )
