"""The team API (``/v1/teams/{team_id}/...``, docs/api.md): the canonical HTTP dialect.

Routes are translation only: authenticate and authorize (``services.auth``), call one
service, render rows as the response models of ``schemas.team`` inside the
``{"meta":{"request_id"},"data":...}`` envelope. Rules live in services and domain.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime, time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.security import HTTPBearer
from pydantic import BaseModel
from sqlalchemy import RowMapping
from starlette.responses import Response

from backfill.api.calls import Call, call_with, query_parameters, read
from backfill.api.params import MAX_ID, MAX_OFFSET, BackfillId
from backfill.api.problems import ApiError, Problem, default_error_response
from backfill.api.rendering import (
    RUN_SETTINGS,
    columns,
    data_date,
    database,
    error_text,
    iso_z,
    json_response,
    pipeline_settings,
    run_counts,
)
from backfill.api.schemas import team as s
from backfill.api.schemas.webhooks import webhooks_in, webhooks_of
from backfill.domain.errors import DomainError, ValidationError, Wording
from backfill.domain.model import UNFINISHED_BACKFILL_STATUSES, BackfillStatus, RunStatus, is_calendar
from backfill.domain.spec import BackfillSpec
from backfill.domain.timeparse import format_iso_z
from backfill.http.request_ids import request_id_of
from backfill.services import auth, backfills, pipelines, runs
from backfill.services.backfills import BackfillDetail
from backfill.services.pages import Page
from backfill.services.row_memo import RowVersionMemo
from backfill.store.runs import RunQuery

# The run counters of a backfill object (transfer_runs_<state>).
TRANSFER_RUN_COUNTS = ("total", "created", "completed", "failed", "running", "cancelled")
# Field names of the services → names in this dialect.
FIELD_NAMES = {"start": "range_start", "end": "range_end", "pipeline_id": "transfer_id"}
WORDS = Wording(status=str.upper, fields=FIELD_NAMES, pipeline="transfer")


def _error(description: str) -> dict[str, Any]:
    return {"model": s.ErrorEnvelope, "description": description}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("Bad request: malformed JSON or an invalid query parameter (BAD_REQUEST)."),
    401: _error("Missing, invalid or expired token (UNAUTHORIZED)."),
    403: _error(
        "Token lacks the scope or not a member (FORBIDDEN); role lacks the permission (PERMISSION_ERROR).",
    ),
    404: _error("Absent, or in another team (NOT_FOUND)."),
    405: _error("Method not allowed (METHOD_NOT_ALLOWED)."),
    409: _error("Overlaps an unfinished backfill of the same transfer (CONFLICT_ERROR)."),
    413: _error("The request body is larger than the server accepts (PAYLOAD_TOO_LARGE)."),
    422: _error("Valid JSON with invalid values or an invalid transition (UNPROCESSABLE_ENTITY)."),
    429: _error("Rate limit exceeded; see Retry-After (TOO_MANY_REQUESTS)."),
    500: _error("Unexpected error (INTERNAL_SERVER_ERROR)."),
    503: _error("Database unavailable (SERVICE_UNAVAILABLE)."),
}


def team_in_path(team_id: TeamId) -> int:
    """Declares and validates the ``{team_id}`` of every route (authorization reads it too)."""
    return team_id


router = APIRouter(prefix="/v1", tags=["team API"], responses=ERROR_RESPONSES, dependencies=[Depends(team_in_path)])

# ---- errors in this dialect --------------------------------------------------------------


def _refine(problem: Problem) -> Problem:
    """Say it in this dialect's words: its field names, its UPPERCASE statuses, "transfer"."""
    cause = problem.cause
    if not isinstance(cause, DomainError):
        return problem
    message = cause.render(WORDS)
    if message == problem.message:
        return problem
    return Problem(problem.status, problem.code, message, problem.description, problem.headers, cause)


def render_error(problem: Problem, request_id: str) -> Response:
    return default_error_response(_refine(problem), request_id)


# ---- authentication ----------------------------------------------------------------------


def _path_team_id(request: Request) -> int | None:
    raw = request.path_params.get("team_id")
    try:
        value = int(str(raw))
    except (TypeError, ValueError):
        return None
    return value if 1 <= value <= MAX_ID else None


class BearerAuth(HTTPBearer):
    """Dependency: authenticate the bearer token, then scope → membership → permission
    (in that order; ``access`` None: any valid token). An ``HTTPBearer``, so OpenAPI declares the scheme on every route;
    one dependency rather than two (FastAPI solves each per request).

    A resolution is reused for at most a second (``app.state.principal_cache``); on a miss
    the one read transaction runs inline on SQLite, in the thread pool on PostgreSQL.
    """

    def __init__(self, access: auth.Access | None) -> None:
        super().__init__(
            auto_error=False,
            scheme_name="BearerToken",
            description="An API token: `Authorization: Bearer <token>` (scopes dwh_transfers_read, "
            "dwh_transfers_write, admin).",
        )
        self.access = access

    async def __call__(self, request: Request) -> auth.Principal:  # type: ignore[override]
        principal = await authenticate(request)
        return principal if self.access is None else auth.authorize(principal, self.access)


async def authenticate(request: Request) -> auth.Principal:
    """The principal of the bearer token (any valid token; the path's team, if any)."""
    secret = auth.bearer_secret(request.headers.get("authorization"))
    if not secret:
        raise auth.TokenMissing("authentication is required: send Authorization: Bearer <token>")
    team_id = _path_team_id(request)
    cache: auth.PrincipalCache = request.app.state.principal_cache
    principal = cache.get(secret, team_id)
    if principal is None:
        principal = await read(request, auth.resolve, database(request), secret, team_id=team_id)
        cache.put(secret, team_id, principal)
    return principal


# A route's request with its principal (read or write access), one parameter.
ReadCall = Annotated[Call, call_with(BearerAuth(auth.READ))]
WriteCall = Annotated[Call, call_with(BearerAuth(auth.WRITE))]

TeamId = Annotated[int, Path(ge=1, le=MAX_ID, description="ID of the team.")]
TransferId = Annotated[int, Path(ge=1, le=MAX_ID, description="ID of the transfer (pipeline).")]
RunId = Annotated[int, Path(ge=1, le=MAX_ID, description="ID of the transfer run.")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
Limit = Annotated[int, Query(ge=1, le=1000)]  # a page of backfills or transfers


# ---- rendering ---------------------------------------------------------------------------


def _ok_json(meta: BaseModel, data: bytes) -> Response:
    """The envelope around ``data``, already JSON (what ``_ok`` writes for the same models)."""
    body = b'{"meta":' + meta.model_dump_json().encode() + b',"data":' + data + b"}"
    return Response(body, media_type="application/json")


def _meta(request: Request) -> s.Meta:
    return s.Meta(request_id=request_id_of(request))


def ok(call: Call, envelope: type[BaseModel], data: Any) -> Response:
    """``data`` in the envelope ``{"meta": {"request_id"}, "data": ...}`` of this dialect."""
    return json_response(envelope(meta=_meta(call.request), data=data))


def _page_meta(request: Request, total: int, limit: int, offset: int) -> s.PageMeta:
    return s.PageMeta(request_id=request_id_of(request), total=total, limit=limit, offset=offset)


def _range_value(value: datetime, timezone: str, calendar: bool) -> str:
    """A date for calendar intervals starting at local midnight, else the exact instant."""
    if calendar:
        local = value.astimezone(ZoneInfo(timezone))
        if local.time() == time(0):
            return local.date().isoformat()
    return format_iso_z(value)


def _data_date(start: datetime, timezone: str, calendar: bool) -> str:
    return data_date(start, timezone, calendar, format_iso_z)


def _backfill(d: BackfillDetail) -> s.Backfill:
    row = d.row
    tz = row["timezone"]
    calendar = is_calendar(row["interval_type"], row["cron"])
    return s.Backfill(
        transfer_backfill_id=row["id"],
        transfer_id=row["pipeline_id"],
        range_start_date=_range_value(row["start"], tz, calendar),
        range_end_date=_range_value(row["end"], tz, calendar),
        created_time=format_iso_z(row["created_at"]),
        created_user_id=row["created_user_id"],
        created_user_email=row.get("created_user_email"),
        removed_time=iso_z(row["removed_at"]),
        removed_user_id=row["removed_user_id"],
        removed_user_email=row.get("removed_user_email"),
        start_time=iso_z(row["started_at"]),
        end_time=iso_z(row["completed_at"]),
        status=row["status"].upper(),
        **{f"transfer_runs_{state}": n for state, n in run_counts(row).items() if state in TRANSFER_RUN_COUNTS},
        error_report=[
            s.ErrorReportEntry(
                transfer_run_date=_data_date(e["interval_start"], tz, calendar),
                error=error_text(e["error"]),
            )
            for e in d.error_report
        ],
        transfer_uuid=row["pipeline_uuid"],
        timezone=tz,
        **columns(row, "name", "interval_type", "interval_units", "variables", "block_uuids", *RUN_SETTINGS),
        paused=bool(row["paused"]),
        metrics=s.BackfillMetrics(**d.metrics),
        updated_time=format_iso_z(row["updated_at"]),
        allowed_actions=list(d.allowed_actions),
        notify=webhooks_of(row["notify"]),
    )


# A backfill's JSON is a function of its row version (services.row_memo): polling
# clients re-read the row and get the JSON rendered the first time.
# The rendering carries the ETA, which moves with the clock: re-rendered every 2 s at most.
_rendered: RowVersionMemo[bytes] = RowVersionMemo(max_age_seconds=2.0)


def _render_backfill(d: BackfillDetail) -> bytes:
    return _backfill(d).model_dump_json().encode()


def _backfill_json(request: Request, d: BackfillDetail) -> bytes:
    """For read routes only (see ``services.row_memo``)."""
    return _rendered.get(database(request).engine, d.row, lambda: _render_backfill(d))


def _run_fields(row: RowMapping) -> dict[str, Any]:
    calendar = is_calendar(row["interval_type"], row["cron"])
    return {
        "id": row["id"],
        "transfer_id": row["pipeline_id"],
        "transfer_backfill_id": row["backfill_id"],
        "status": row["status"].upper(),
        "type": "Backfill",
        "data_date": _data_date(row["interval_start"], row["timezone"], calendar),
        "interval_start": format_iso_z(row["interval_start"]),
        "interval_end": format_iso_z(row["interval_end"]),
        "attempt": row["attempt"],
        "created_time": format_iso_z(row["created_at"]),
        "queued_time": format_iso_z(row["queued_at"]),
        "started_time": iso_z(row["started_at"]),
        "ended_time": iso_z(row["ended_at"]),
        "total_duration": row["duration"],
        "total_rows": row["rows"],
        "message": row["error"],
        "pipeline_version": row["pipeline_version"],
    }


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _query_detail(block: Mapping[str, Any]) -> s.QueryDetail:
    started = _parse_time(block.get("started_at"))
    ended = _parse_time(block.get("ended_at"))
    duration = (ended - started).total_seconds() if started and ended else None
    rows = block.get("rows")
    return s.QueryDetail(
        block_uuid=str(block.get("uuid", "")),
        status=str(block.get("status", "")).upper(),
        started_time=iso_z(started),
        ended_time=iso_z(ended),
        duration_seconds=duration,
        rows=rows if isinstance(rows, int) and not isinstance(rows, bool) else None,
        error=block.get("error"),
        output=block.get("output"),
    )


def _run_detail(row: RowMapping) -> s.RunDetail:
    details = [_query_detail(b) for b in (row["block_results"] or []) if isinstance(b, Mapping)]
    return s.RunDetail(**_run_fields(row), query_details=details)


def _transfer(row: RowMapping) -> s.Transfer:
    definition = row["definition"] or {}
    return s.Transfer(
        **pipeline_settings(row),
        blocks=[
            s.TransferBlock(
                uuid=b["uuid"],
                type=b["type"],
                upstream=list(b.get("upstream") or []),
                connection=b.get("connection"),
            )
            for b in definition.get("blocks", [])
        ],
        created_time=format_iso_z(row["created_at"]),
        updated_time=format_iso_z(row["updated_at"]),
    )


# ---- query parameters ----------------------------------------------------------------------


def status_list_pattern(names: tuple[str, ...]) -> str:
    """The document's pattern of ``?status=A,B``: names in either case, comma-separated."""
    one = "(" + "|".join([*names, *(n.lower() for n in names)]) + ")"
    return f"^ *{one}( *, *{one})* *$"


def status_list_query(names: tuple[str, ...], description: str) -> Any:
    """The ``Query`` of a ``?status=A,B`` parameter (one or more of ``names``)."""
    return Query(max_length=200, description=description, json_schema_extra={"pattern": status_list_pattern(names)})


def _statuses(value: str | None, names: tuple[str, ...], default: tuple[str, ...] | None) -> list[str] | None:
    """``?status=A,B`` (case-insensitive) as canonical lowercase values; 400 if unknown."""
    if value is None:
        return [n.lower() for n in default] if default is not None else None
    parts = [p.strip().upper() for p in value.split(",") if p.strip()]
    bad = [p for p in parts if p not in names]
    if bad or not parts:
        raise ApiError(
            400,
            f"invalid query parameter status: {', '.join(bad) or 'empty'}; use one or more "
            f"(comma-separated) of {', '.join(names)}",
            field="status",
        )
    return [p.lower() for p in dict.fromkeys(parts)]


BACKFILL_STATUS_NAMES = tuple(st.value.upper() for st in BackfillStatus)
UNFINISHED_NAMES = tuple(st.value.upper() for st in UNFINISHED_BACKFILL_STATUSES)
RUN_STATUS_NAMES = tuple(st.value.upper() for st in RunStatus)

SortField = Literal["data_date", "created_time", "ended_time"]
SortDirection = Literal["asc", "desc"]


BackfillStatusQuery = Annotated[
    str | None,
    status_list_query(
        BACKFILL_STATUS_NAMES,
        "One or more (comma-separated) of CREATED, SCHEDULED, RUNNING, COMPLETED, FAILED, CANCELLED; default the "
        "unfinished ones (CREATED, SCHEDULED, RUNNING, FAILED).",
    ),
]
RunStatusQuery = Annotated[
    str | None,
    status_list_query(
        RUN_STATUS_NAMES, "One or more (comma-separated) of QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED."
    ),
]
IssuesOnly = Annotated[bool, Query(description="Only FAILED and CANCELLED runs.")]
SortFieldQuery = Annotated[SortField, Query()]
SortDirectionQuery = Annotated[SortDirection, Query()]
RunLimit = Annotated[int, Query(ge=1, le=10_000)]


def _run_query(
    status: RunStatusQuery = None,
    filter_issues_only: IssuesOnly = False,
    sort_field: SortFieldQuery = "data_date",
    sort_direction: SortDirectionQuery = "asc",
    limit: RunLimit = 100,
    offset: Offset = 0,
) -> RunQuery:
    """The query parameters of both run listings."""
    return RunQuery(
        statuses=_statuses(status, RUN_STATUS_NAMES, None),
        issues_only=filter_issues_only,
        sort_field=sort_field,
        descending=sort_direction == "desc",
        limit=limit,
        offset=offset,
    )


RunFilters = Annotated[RunQuery, Depends(_run_query)]


def data_date_bound(date: str, side: Literal["after", "before"]) -> Any:
    """The ``Query`` of ``start_date`` / ``end_date``: a data date, or an instant the runs'
    interval starts are at or ``side`` of."""
    return Query(
        max_length=64, description=f"{date}; or an ISO 8601 instant: runs whose interval starts at or {side} it."
    )


FirstDataDate = Annotated[str, data_date_bound("First data date (inclusive), in the transfer's timezone", "after")]
LastDataDate = Annotated[str, data_date_bound("Last data date (inclusive: its whole day)", "before")]
# A chunk of a run's logs
LogOffset = Annotated[int, Query(ge=0, le=10**12, description="Character offset to read from.")]
LogLimit = Annotated[int, Query(ge=1, le=runs.MAX_LOG_CHUNK, description="Characters at most.")]
AttemptNumber = Annotated[int | None, Query(ge=1, le=1_000_000, description="Attempt number; default the latest.")]


def _runs_page(call: Call, page: Page, query: RunQuery) -> Response:
    return json_response(
        s.RunListResponse(
            meta=_page_meta(call.request, page.total, query.limit, query.offset),
            data=[s.Run(**_run_fields(r)) for r in page.items],
        ),
    )


def _spec(body: s.CreateBackfillAction) -> BackfillSpec:
    """The spec of a create action: ``range_*`` renamed, the other fields as they are."""
    return BackfillSpec(
        start=body.range_start,
        end=body.range_end,
        name=body.name or None,  # an empty name: the default one
        notify=webhooks_in(body.notify) or None,
        naive="local",
        block_uuids=body.block_uuids,
        **{name: getattr(body, name) for name in backfills.SPEC_SETTINGS},
    )


# ---- backfills -------------------------------------------------------------------------------


@router.post(
    "/teams/{team_id}/transfers/{transfer_id}/backfills",
    response_model=s.BackfillResponse,
    summary="Create a backfill and start it",
    description="Saves the backfill and starts it at once. An `Idempotency-Key` header makes a retried "
    "request return the same backfill. Overlapping an unfinished backfill of the transfer is a 409.",
)
def create_backfill(
    call: WriteCall,
    transfer_id: TransferId,
    body: s.CreateBackfillAction,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)] = None,
) -> Response:
    spec = _spec(body)
    backfill_id = backfills.create(call.db, call.actor, transfer_id, spec, start=True, idempotency_key=idempotency_key)
    return _backfill_now(call, backfill_id)


def _backfill_now(call: Call, backfill_id: int) -> Response:
    """The backfill as a write route leaves it (read again, rendered afresh)."""
    return ok(call, s.BackfillResponse, _backfill(backfills.get(call.db, call.actor, backfill_id)))


@router.post(
    "/teams/{team_id}/transfers/{transfer_id}/backfills:dry_run",
    response_model=s.DryRunResponse,
    summary="Preview the intervals of a backfill without saving it",
)
def dry_run_backfill(call: ReadCall, transfer_id: TransferId, body: s.CreateBackfillAction) -> Response:
    result = backfills.dry_run(call.db, call.actor, transfer_id, _spec(body))
    values = result["values"]
    tz = values["timezone"]
    calendar = is_calendar(values["interval_type"], values["cron"])
    data = s.DryRun(
        transfer_id=values["pipeline_id"],
        name=values["name"],
        range_start_date=_range_value(values["start"], tz, calendar),
        range_end_date=_range_value(values["end"], tz, calendar),
        interval_type=values["interval_type"],
        interval_units=values["interval_units"],
        cron=values["cron"],
        timezone=tz,
        run_order=values["run_order"],
        reprocess=values["reprocess"],
        transfer_runs_total=result["total"],
        transfer_runs_to_run=result["to_run"],
        transfer_runs_skipped=result["skipped_count"],
        intervals=[
            s.DryRunInterval(
                interval_start=format_iso_z(iv.start),
                interval_end=format_iso_z(iv.end),
                data_date=_data_date(iv.start, tz, calendar),
            )
            for iv in result["intervals"]
        ],
        skipped_intervals=[
            s.SkippedInterval(interval_start=format_iso_z(t), data_date=_data_date(t, tz, calendar))
            for t in result["skipped"]
        ],
    )
    return ok(call, s.DryRunResponse, data)


@router.get(
    "/teams/{team_id}/backfills",
    response_model=s.BackfillListResponse,
    summary="List backfills of the team (unfinished ones by default), newest first",
)
async def list_backfills(
    call: ReadCall,
    status: BackfillStatusQuery = None,
    transfer_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Response:
    statuses = _statuses(status, BACKFILL_STATUS_NAMES, UNFINISHED_NAMES)
    page = await call.read(
        backfills.list_backfills, statuses=statuses, pipeline_id=transfer_id, limit=limit, offset=offset
    )
    data = b"[" + b",".join(_backfill_json(call.request, d) for d in page.items) + b"]"
    return _ok_json(_page_meta(call.request, page.total, limit, offset), data)


@router.get(
    "/teams/{team_id}/backfills/{backfill_id}",
    response_model=s.BackfillResponse,
    summary="A backfill with its live progress",
)
async def get_backfill(call: ReadCall, backfill_id: BackfillId) -> Response:
    data = await call.read(backfills.rendered, backfill_id, _rendered, _render_backfill)
    return _ok_json(_meta(call.request), data)


@router.get(
    "/teams/{team_id}/transfers/{transfer_id}/backfills/latest",
    response_model=s.BackfillResponse,
    summary="The latest backfill of a transfer, any status",
)
async def latest_backfill(call: ReadCall, transfer_id: TransferId) -> Response:
    detail = await call.read(backfills.latest_backfill, transfer_id)
    return _ok_json(_meta(call.request), _backfill_json(call.request, detail))


@router.patch(
    "/teams/{team_id}/backfills/{backfill_id}",
    response_model=s.BackfillResponse,
    summary="Cancel, retry, pause/resume, or change max_active_runs / name",
    description='`{"status":"CANCELLED"}` cancels: the status becomes CANCELLED, queued runs are cancelled, '
    "running ones complete, `end_time`, `removed_time` and `removed_user_id` are set and the backfill "
    'stays readable. `{"status":"SCHEDULED"}` retries the failed intervals of a FAILED backfill. '
    "A final backfill cannot change (422).",
)
def update_backfill(call: WriteCall, backfill_id: BackfillId, body: s.UpdateBackfillAction) -> Response:
    fields = body.model_fields_set
    if not fields:
        raise ValidationError("set at least one of: status, paused, max_active_runs, name, notify", field="body")
    settings: dict[str, Any] = {k: getattr(body, k) for k in ("name", "max_active_runs") if k in fields}
    if "notify" in fields:
        settings["notify"] = webhooks_in(body.notify)
    if "status" in fields and body.status is None:
        raise ValidationError("status must not be null", field="status")
    if "paused" in fields and body.paused is None:
        raise ValidationError("paused must be true or false", field="paused")
    backfills.update(
        call.db,
        call.actor,
        backfill_id,
        settings=settings,
        paused=body.paused if "paused" in fields else None,
        status=BackfillStatus(body.status.lower()) if "status" in fields and body.status else None,
    )
    return _backfill_now(call, backfill_id)


@router.post(
    "/teams/{team_id}/backfills/{backfill_id}/runs:rerun",
    response_model=s.RerunResponse,
    summary="Re-run chosen intervals of a backfill",
    description="Body: exactly one of `run_ids`, `data_dates`, `statuses`. The chosen intervals that are not "
    "running are re-queued as new attempts of the same runs (a completed one too). Allowed on CREATED, "
    "SCHEDULED, RUNNING and FAILED backfills (a FAILED one becomes SCHEDULED); 422 on a final backfill or "
    "an id / date that is not this backfill's.",
)
def rerun_backfill_runs(call: WriteCall, backfill_id: BackfillId, body: s.RerunAction) -> Response:
    result = backfills.rerun(
        call.db, call.actor, backfill_id, run_ids=body.run_ids, data_dates=body.data_dates, statuses=body.statuses
    )
    detail = backfills.get(call.db, call.actor, backfill_id)
    data = s.Rerun(requeued=result.requeued, running=result.running, backfill=_backfill(detail))
    return ok(call, s.RerunResponse, data)


# ---- runs ----------------------------------------------------------------------------------------


@router.get(
    "/teams/{team_id}/backfills/{backfill_id}/runs",
    response_model=s.RunListResponse,
    summary="Interval runs of a backfill",
)
async def list_backfill_runs(call: ReadCall, backfill_id: BackfillId, query: RunFilters) -> Response:
    return _runs_page(call, await call.read(runs.list_backfill_runs, backfill_id, query), query)


@router.get(
    "/teams/{team_id}/transfers/{transfer_id}/runs",
    response_model=s.RunListResponse,
    summary="Interval runs of a transfer (every backfill) whose data date is within [start_date, end_date]",
)
async def list_transfer_runs(
    call: ReadCall, transfer_id: TransferId, start_date: FirstDataDate, end_date: LastDataDate, query: RunFilters
) -> Response:
    with query_parameters("start_date", "end_date"):
        page = await call.read(runs.list_pipeline_runs, transfer_id, query, start=start_date, end=end_date)
    return _runs_page(call, page, query)


@router.get(
    "/teams/{team_id}/transfer_runs/{run_id}",
    response_model=s.RunResponse,
    summary="One transfer run with per-block query details",
)
async def get_transfer_run(call: ReadCall, run_id: RunId) -> Response:
    return ok(call, s.RunResponse, _run_detail(await call.read(runs.get_run, run_id)))


@router.get(
    "/teams/{team_id}/transfer_runs/{run_id}/logs",
    response_model=s.RunLogsResponse,
    summary="Captured output of a transfer run; pass `offset` = previous `next_offset` to tail",
)
async def get_transfer_run_logs(
    call: ReadCall, run_id: RunId, offset: LogOffset = 0, limit: LogLimit = 1_000_000, attempt: AttemptNumber = None
) -> Response:
    chunk = await call.read(runs.read_logs, run_id, attempt=attempt, offset=offset, limit=limit)
    # the chunk under its own names; only the status is in this dialect's UPPERCASE
    fields = {**dataclasses.asdict(chunk), "status": chunk.status.upper() if chunk.status else None}
    return ok(call, s.RunLogsResponse, s.RunLogs(transfer_run_id=run_id, **fields))


# ---- transfers --------------------------------------------------------------------------------------


@router.get("/teams/{team_id}/transfers", response_model=s.TransferListResponse, summary="Transfers of the team")
async def list_transfers(call: ReadCall, limit: Limit = 100, offset: Offset = 0) -> Response:
    page = await call.read(pipelines.list_pipelines, limit=limit, offset=offset)
    meta = _page_meta(call.request, page.total, limit, offset)
    return json_response(s.TransferListResponse(meta=meta, data=[_transfer(r) for r in page.items]))


@router.get("/teams/{team_id}/transfers/{transfer_id}", response_model=s.TransferResponse, summary="One transfer")
async def get_transfer(call: ReadCall, transfer_id: TransferId) -> Response:
    return ok(call, s.TransferResponse, _transfer(await call.read(pipelines.get_pipeline, transfer_id)))
