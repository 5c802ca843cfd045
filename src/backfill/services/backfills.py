"""Backfill use cases shared by every adapter (team API, pipeline API, CLI, web).

Each function is one transaction and asks ``domain.transitions`` before changing a
status; run-level SQL is delegated to ``store.queue``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any, TypeVar

from sqlalchemy import Connection, RowMapping

from backfill.domain import transitions
from backfill.domain.errors import OverlappingBackfill, ValidationError
from backfill.domain.model import BackfillStatus, Reprocess, RunOrder, RunStatus
from backfill.domain.notifications import parse_webhooks
from backfill.domain.progress import RATE_WINDOW, backfill_progress
from backfill.domain.spec import (
    EDITABLE_BEFORE_START,
    MAX_MAX_ACTIVE_RUNS,
    PipelineDefaults,
    check_int,
    check_name,
    validate,
)
from backfill.domain.spec import BackfillSpec as BackfillSpec  # the services' input (re-exported)
from backfill.domain.timeparse import parse_instant
from backfill.services.actor import Actor
from backfill.services.pages import Page
from backfill.services.row_memo import RowVersionMemo
from backfill.store import backfills as store
from backfill.store import notifications as notification_store
from backfill.store import pipelines as pipeline_store
from backfill.store import queue
from backfill.store.clock import utcnow
from backfill.store.db import Database

T = TypeVar("T")


@dataclass(frozen=True)
class BackfillDetail:
    row: RowMapping
    error_report: list[RowMapping]
    metrics: dict[str, Any]

    @property
    def allowed_actions(self) -> tuple[transitions.UserAction, ...]:
        """What a user may do to it now (``domain.transitions``)."""
        return transitions.allowed_actions(BackfillStatus(self.row["status"]), paused=bool(self.row["paused"]))


# What a backfill takes from its pipeline: the pipeline's columns of the same names.
PIPELINE_DEFAULTS = ("uuid", "timezone", "retries", "retry_delay_seconds", "timeout_seconds")
# Settings of a backfill under the same name in a BackfillSpec, a backfill row and the
# team dialect's create body.
SPEC_SETTINGS = (
    *("interval_type", "interval_units", "cron", "timezone", "variables", "max_active_runs"),
    *("run_order", "reprocess", "retries", "retry_delay_seconds", "timeout_seconds"),
)


def _pipeline_defaults(pipeline: RowMapping) -> PipelineDefaults:
    columns = {name: pipeline[name] for name in PIPELINE_DEFAULTS}
    return PipelineDefaults(**columns, definition=pipeline_store.definition(pipeline))


def _values_from_spec(spec: BackfillSpec, pipeline: RowMapping) -> dict[str, Any]:
    """The row values of a backfill of ``pipeline`` (``domain.spec.validate``: the one validation)."""
    return {"pipeline_id": pipeline["id"], **validate(spec, _pipeline_defaults(pipeline)).values()}


def spec_of_row(row: RowMapping) -> BackfillSpec:
    """The spec a saved backfill was made from (its datetimes already aware UTC)."""
    return BackfillSpec(
        start=row["start"],
        end=row["end"],
        name=row["name"],
        block_uuids=list(row["block_uuids"]) if row["block_uuids"] is not None else None,
        notify=list(row["notify"]) if row["notify"] else None,
        **{name: row[name] for name in SPEC_SETTINGS},
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
        valid = validate(spec, _pipeline_defaults(pipeline))
        values = {"pipeline_id": pipeline["id"], **valid.values()}
        series = valid.series
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
        raise OverlappingBackfill(int(other["id"]), str(other["name"]), str(other["status"]))


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
    """docs/api.md cancel: queued runs cancelled in this transaction, running ones finish."""
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
    notification_store.enqueue(conn, bf["id"], status, now)  # the outbox, in this transaction


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
            ids = [check_int(v, "run_ids") for v in values]
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
    """Name / max_active_runs / notify any time (unless final); the shape of the backfill (range,
    interval, variables, blocks, run settings) only before it starts."""
    status = BackfillStatus(bf["status"])
    values: dict[str, Any] = {}
    if "name" in changes:
        values["name"] = check_name(changes["name"])
    if "max_active_runs" in changes:
        transitions.check_live_setting(status, ("max_active_runs",))
        values["max_active_runs"] = check_int(
            changes["max_active_runs"], "max_active_runs", maximum=MAX_MAX_ACTIVE_RUNS
        )
    shape = {k: v for k, v in changes.items() if k in EDITABLE_BEFORE_START}
    if shape:
        transitions.check_settings_editable(status, tuple(k for k in EDITABLE_BEFORE_START if k in shape))
        current = spec_of_row(bf)
        current.name = values.get("name", bf["name"])
        current.max_active_runs = values.get("max_active_runs", bf["max_active_runs"])
        current.naive = changes.get("naive", "local")
        for key, value in shape.items():
            setattr(current, key, value)
        values.update(_values_from_spec(current, pipeline_store.get(conn, bf["pipeline_id"])))
    if "notify" in changes:
        # the webhooks of a running backfill may change (say "tell me when it ends"):
        # the new list replaces the old one; secrets are write-only, so send them again
        transitions.check_live_setting(status, ("notify",))
        hooks = parse_webhooks(changes["notify"])
        values["notify"] = [h.to_json() for h in hooks] if hooks else None
    unknown = set(changes) - {"name", "max_active_runs", "notify", "naive", *EDITABLE_BEFORE_START}
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
    """docs/api.md cancel: queued runs cancelled in this transaction, running ones finish."""
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


# ---- backfills (reads) -----------------------------------------------------------------


def list_backfills(
    db: Database,
    actor: Actor,
    *,
    statuses: list[str] | None,
    pipeline_id: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Page:
    """Backfills of the team, newest first, each with its live progress."""
    with db.read() as conn:
        rows, total = store.list_backfills(
            conn, actor.team_id, statuses=statuses, pipeline_id=pipeline_id, limit=limit, offset=offset
        )
        return Page([detail(conn, row) for row in rows], total)


def latest_backfill(db: Database, actor: Actor, pipeline_id: int) -> BackfillDetail:
    """The most recent backfill of a pipeline, any status (NotFound if none)."""
    with db.read() as conn:
        pipeline_store.get_in_team(conn, actor.team_id, pipeline_id=pipeline_id)
        row = store.latest_for_pipeline(conn, actor.team_id, pipeline_id)
        return detail(conn, row)


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
