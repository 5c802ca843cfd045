"""The pipeline API (``/api/...``, docs/api.md): the Mage-style pipeline backfill API.

Routes are translation only, over the same services as the team API: authenticate
(``X-API-KEY`` client key + the user's token), authorize with ``services.auth`` (same scopes,
roles and permissions as ``/v1``), call the services, render rows as
``{"backfill": {...}}`` objects with lowercase statuses and ``"YYYY-MM-DD HH:MM:SS"`` UTC
datetimes. Errors are rendered by :mod:`backfill.api.pipeline_errors` (the router's
route class).

Dialect rules that live here (and nowhere else):

- status names: created → ``null``, scheduled → ``"initial"``, the others as they are;
  ``"initial"``/``"running"`` requests a start (from null) or a retry (from failed);
- a datetime with a time but no offset is UTC (``naive="utc"``);
- ``block_uuid: X`` selects X and everything downstream of X; ``add_upstream_for_block_uuid:
  X`` adds X and its ancestors (a null selection becomes exactly X and its ancestors). The
  object shows ``block_uuid`` = the first block of the selection when the selection is
  exactly that block and everything downstream of it, else ``null``; the exact selection
  is always in ``settings.block_uuids`` (null = every block);
- PUT changes only what differs from the current values, so a GET → edit → PUT round trip
  of a started backfill does not trip the "only before the start" rule.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy import RowMapping
from starlette.responses import Response

from backfill.api.calls import Call, call_with
from backfill.api.params import MAX_ID, MAX_OFFSET, BackfillId, BackfillIdQuery
from backfill.api.pipeline_errors import ERROR_RESPONSES, PipelineRoute
from backfill.api.rendering import (
    RUN_SETTINGS,
    columns,
    data_date,
    database,
    error_text,
    json_response,
    pipeline_settings,
    run_counts,
)
from backfill.api.schemas import pipeline as s
from backfill.api.schemas.webhooks import webhooks_in
from backfill.config import Settings
from backfill.domain import transitions
from backfill.domain.errors import InvalidTransition, NotFound, ValidationError
from backfill.domain.intervals import Interval, IntervalSeries
from backfill.domain.model import BackfillStatus, is_calendar
from backfill.domain.pipeline import (
    PipelineDefinition,
    add_upstream_for_block,
    select_from_block,
    validate_selection,
)
from backfill.domain.spec import DEFAULT_UNITS, BackfillSpec
from backfill.domain.timeparse import format_pipeline, parse_instant
from backfill.services import auth, backfills, pipelines, runs
from backfill.services.actor import Actor
from backfill.services.backfills import BackfillDetail
from backfill.store import pipelines as pipeline_store
from backfill.store.db import Database
from backfill.store.runs import RunQuery

PREVIEW_RUNS = 100

router = APIRouter(prefix="/api", tags=["pipeline API"], route_class=PipelineRoute, responses=ERROR_RESPONSES)

# ---- credentials (documented as security schemes) ------------------------------------------------

api_key_scheme = APIKeyHeader(
    name="X-API-KEY",
    auto_error=False,
    scheme_name="PipelineApiKey",
    description="The client key of your team (`backfill admin create-api-key`); required once the server has "
    "any API key.",
)
cookie_scheme = APIKeyCookie(
    name="oauth_token",
    auto_error=False,
    scheme_name="OAuthTokenCookie",
    description="The session JWT returned by `POST /api/sessions` (or a raw API token).",
)
header_scheme = APIKeyHeader(
    name="OAUTH-TOKEN",
    auto_error=False,
    scheme_name="OAuthTokenHeader",
    description="The user token (raw, or the session JWT).",
)
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="OAuthBearer",
    description="The user token: `Authorization: Bearer <token>`.",
)

_STATUS_OUT: dict[str, str | None] = {
    BackfillStatus.CREATED.value: None,
    BackfillStatus.SCHEDULED.value: "initial",
    BackfillStatus.RUNNING.value: "running",
    BackfillStatus.COMPLETED.value: "completed",
    BackfillStatus.FAILED.value: "failed",
    BackfillStatus.CANCELLED.value: "cancelled",
}
# Requested status (this dialect) → canonical target.
_STATUS_IN = {
    "initial": BackfillStatus.SCHEDULED,
    "running": BackfillStatus.SCHEDULED,
    "cancelled": BackfillStatus.CANCELLED,
}
# Names of the targets a status request may reach, in this dialect.
_TARGET_NAMES = {BackfillStatus.SCHEDULED: ("initial", "running"), BackfillStatus.CANCELLED: ("cancelled",)}


def dialect_status(canonical: str) -> str | None:
    return _STATUS_OUT[canonical]


# ---- plumbing --------------------------------------------------------------------------------------


def _signing_secret(request: Request) -> str:
    """The server secret that signs session JWTs (resolved once per app)."""
    state = request.app.state
    secret = getattr(state, "pipeline_session_secret", None)
    if not isinstance(secret, str):
        settings: Settings = state.settings
        secret = settings.resolved_secret()
        state.pipeline_session_secret = secret
    return secret


def _principal_cache(request: Request) -> auth.PrincipalCache:
    """This dialect's own cache: its key ``(secret, None)`` means "the default team"."""
    state = request.app.state
    cache = getattr(state, "pipeline_principal_cache", None)
    if not isinstance(cache, auth.PrincipalCache):
        shared = getattr(state, "principal_cache", None)
        ttl = shared.ttl_seconds if isinstance(shared, auth.PrincipalCache) else 1.0
        cache = auth.PrincipalCache(ttl_seconds=ttl)
        state.pipeline_principal_cache = cache
    return cache


def check_api_key(db: Database, key: str | None) -> int | None:
    """The team of the client key; None when the server has no API key at all (then no
    key is required). Missing or unknown while keys exist → ``ApiKeyInvalid``."""
    if key:
        try:
            return auth.resolve_api_key(db, key)
        except auth.ApiKeyInvalid:
            if not auth.server_has_api_keys(db):
                return None
            raise
    if auth.server_has_api_keys(db):
        raise auth.ApiKeyInvalid("the X-API-KEY header is required: send your team's client key")
    return None


def user_secret(request: Request, bearer: str | None, header: str | None, cookie: str | None) -> str | None:
    """The raw user token from ``Authorization: Bearer``, ``OAUTH-TOKEN`` or the
    ``oauth_token`` cookie (first present wins); a session JWT is verified and unwrapped."""
    value = next((v.strip() for v in (bearer, header, cookie) if v and v.strip()), None)
    if value is None:
        return None
    if len(value) > 4096:
        raise auth.TokenInvalid("the token is not valid")
    if value.count(".") == 2:
        return auth.token_from_session(value, _signing_secret(request))
    return value


@dataclass(frozen=True)
class Credentials:
    """What a request sent to authenticate: the client key, and the user token as sent in
    each of the three places a user token may be (``user_secret`` picks one)."""

    api_key: str | None
    bearer: str | None
    header: str | None
    cookie: str | None

    def user_secret(self, request: Request) -> str | None:
        return user_secret(request, self.bearer, self.header, self.cookie)


async def credentials(
    api_key: Annotated[str | None, Depends(api_key_scheme)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    header: Annotated[str | None, Depends(header_scheme)],
    cookie: Annotated[str | None, Depends(cookie_scheme)],
) -> Credentials:
    """Dependency: the credentials of the request (each documented as a security scheme)."""
    return Credentials(api_key, bearer.credentials if bearer else None, header, cookie)


Sent = Annotated[Credentials, Depends(credentials)]

TeamQuery = Annotated[
    int | None,
    Query(ge=1, le=MAX_ID, description="Act in this team (you must be a member); default your default team."),
]


def require(access: auth.Access) -> Callable[..., auth.Principal]:
    """Dependency: client key, then user token, then scope → membership → permission."""

    def dependency(request: Request, sent: Sent, team_id: TeamQuery = None) -> auth.Principal:
        db = database(request)
        key_team = check_api_key(db, sent.api_key)
        secret = sent.user_secret(request)
        if not secret:
            raise auth.TokenMissing(
                "authentication is required: sign in with POST /api/sessions and send the oauth_token cookie, "
                "the OAUTH-TOKEN header or Authorization: Bearer <token>"
            )
        cache = _principal_cache(request)
        principal = cache.get(secret, team_id)
        if principal is None:
            principal = auth.resolve(db, secret, team_id=team_id, default_team=True)
            cache.put(secret, team_id, principal)
        if principal.team_id is None:
            raise auth.NotMember("you have no default team: choose one with ?team_id=")
        if key_team is not None and key_team != principal.team_id:
            raise auth.ApiKeyInvalid(f"the X-API-KEY is not a key of team {principal.team_id}")
        return auth.authorize(principal, access)

    return dependency


# A route's request with its principal (read or write access), one parameter.
ReadCall = Annotated[Call, call_with(require(auth.READ))]
WriteCall = Annotated[Call, call_with(require(auth.WRITE))]

NO_NUL = r"^[^\x00]+$"  # PostgreSQL cannot compare text with NUL characters
PipelineUuid = Annotated[str, Path(min_length=1, max_length=200, pattern=NO_NUL, description="UUID of the pipeline.")]
Limit = Annotated[int, Query(alias="_limit", ge=1, le=1000, description="Page size.")]
Offset = Annotated[int, Query(alias="_offset", ge=0, le=MAX_OFFSET, description="Records to skip.")]
IncludeRunCount = Annotated[bool, Query(description="Add total_run_count and run_status_counts to each backfill.")]
IncludePreviewRuns = Annotated[
    bool, Query(description="Add preview_runs: the first 100 intervals of the backfill, in run order.")
]


def _dt(value: datetime | None) -> str | None:
    return format_pipeline(value) if value is not None else None


def _times(row: RowMapping, *names: str) -> dict[str, Any]:
    """Timestamp columns of ``row`` under their own names, in this dialect's format (null stays null)."""
    return {name: _dt(row[name]) for name in names}


def _data_date(start: datetime, timezone: str, calendar: bool) -> str:
    return data_date(start, timezone, calendar, format_pipeline)


def _metadata(total: int, offset: int, shown: int) -> s.PipelineListMetadata:
    return s.PipelineListMetadata(count=total, next=offset + shown < total)


# ---- pipelines --------------------------------------------------------------------------------------


@dataclass
class _Definitions:
    """Pipeline definitions needed to render ``block_uuid``, loaded at most once each."""

    db: Database
    actor: Actor
    loaded: dict[int, PipelineDefinition] = field(default_factory=dict)

    def add(self, row: RowMapping) -> PipelineDefinition:
        definition = pipeline_store.definition(row)
        self.loaded[int(row["id"])] = definition
        return definition

    def get(self, pipeline_id: int) -> PipelineDefinition:
        found = self.loaded.get(pipeline_id)
        if found is None:
            found = self.add(pipelines.get_pipeline(self.db, self.actor, pipeline_id))
        return found


def _pipeline(row: RowMapping) -> s.Pipeline:
    definition = pipeline_store.definition(row)
    return s.Pipeline(
        **pipeline_settings(row),
        blocks=[
            s.PipelineBlock(
                uuid=b.uuid,
                name=b.uuid,
                type=b.type.value,
                upstream_blocks=list(b.upstream),
                downstream_blocks=[d.uuid for d in definition.blocks if b.uuid in d.upstream],
            )
            for b in definition.blocks
        ],
        **_times(row, "created_at", "updated_at"),
    )


# ---- backfill objects ------------------------------------------------------------------------------


def block_uuid_of(selection: Iterable[str] | None, definition: PipelineDefinition) -> str | None:
    """The block a selection was made from: its first block when the selection is exactly
    that block and everything downstream of it; else None (every block, or another shape)."""
    if selection is None:
        return None
    chosen = tuple(selection)
    if not chosen:
        return None
    try:
        return chosen[0] if chosen == select_from_block(definition, chosen[0]) else None
    except ValidationError:  # the pipeline no longer has that block
        return None


def _same_selection(a: Iterable[str] | None, b: Iterable[str] | None, definition: PipelineDefinition) -> bool:
    """Equal as sets of blocks that run (null = every block)."""
    every = set(definition.block_uuids)
    return (set(a) if a is not None else every) == (set(b) if b is not None else every)


def _preview(row: RowMapping, definitions: _Definitions) -> list[s.PipelinePreviewRun]:
    """The first intervals in run order. Before the start, those ``reprocess`` would skip
    are left out (the services' dry run); once started, the backfill's own intervals."""
    intervals: Iterable[Interval]
    if row["status"] == BackfillStatus.CREATED.value and row["reprocess"] != "all":
        result = backfills.dry_run(
            definitions.db, definitions.actor, int(row["pipeline_id"]), backfills.spec_of_row(row), limit=PREVIEW_RUNS
        )
        intervals = result["intervals"]
    else:
        series = IntervalSeries(
            row["start"],
            row["end"],
            row["interval_type"],
            row["interval_units"],
            timezone=row["timezone"],
            cron=row["cron"],
        )
        intervals = islice(series.iter_from(None, descending=row["run_order"] == "newest_first"), PREVIEW_RUNS)
    calendar = is_calendar(row["interval_type"], row["cron"])
    return [
        s.PipelinePreviewRun(
            start=format_pipeline(iv.start),
            end=format_pipeline(iv.end),
            data_date=_data_date(iv.start, row["timezone"], calendar),
        )
        for iv in intervals
    ]


# The states of ``run_status_counts`` (with ?include_run_count=true).
RUN_STATUS_COUNTS = ("queued", "running", "completed", "failed", "cancelled", "pending")


def render_backfill(
    d: BackfillDetail,
    definitions: _Definitions,
    *,
    run_count: bool = False,
    preview: bool = False,
) -> tuple[s.PipelineBackfill, set[str]]:
    """The object and the optional keys to leave out of it."""
    row = d.row
    tz = row["timezone"]
    calendar = is_calendar(row["interval_type"], row["cron"])
    counts = run_counts(row)
    selection = row["block_uuids"]
    block_uuid = block_uuid_of(selection, definitions.get(int(row["pipeline_id"]))) if selection else None
    metrics = s.PipelineBackfillMetrics(
        **{f"{state}_runs": n for state, n in counts.items() if state != "pending"},
        **d.metrics,
        error_report=[
            s.PipelineErrorReportEntry(
                data_date=_data_date(e["interval_start"], tz, calendar),
                execution_date=format_pipeline(e["interval_start"]),
                error=error_text(e["error"]),
            )
            for e in d.error_report
        ],
    )
    obj = s.PipelineBackfill(
        id=row["id"],
        block_uuid=block_uuid,
        **_times(row, "completed_at", "created_at", "failed_at", "started_at", "updated_at"),
        end_datetime=format_pipeline(row["end"]),
        **columns(row, "interval_type", "interval_units", "name"),
        metrics=metrics,
        pipeline_schedule_id=None,
        pipeline_uuid=row["pipeline_uuid"],
        start_datetime=format_pipeline(row["start"]),
        status=dialect_status(row["status"]),
        variables=row["variables"] or None,
        settings=s.PipelineBackfillSettings(
            **columns(row, *RUN_SETTINGS, "retry_delay_seconds", "timeout_seconds"),
            timezone=tz,
            paused=bool(row["paused"]),
            block_uuids=list(selection) if selection is not None else None,
        ),
        allowed_actions=list(d.allowed_actions),
        total_run_count=row["runs_total"] if run_count else None,
        run_status_counts={state: counts[state] for state in RUN_STATUS_COUNTS} if run_count else None,
        preview_runs=_preview(row, definitions) if preview else None,
    )
    exclude = set()
    if not run_count:
        exclude |= {"total_run_count", "run_status_counts"}
    if not preview:
        exclude.add("preview_runs")
    return obj, exclude


def _one(d: BackfillDetail, definitions: _Definitions, *, run_count: bool = False, preview: bool = False) -> Response:
    obj, exclude = render_backfill(d, definitions, run_count=run_count, preview=preview)
    return json_response(s.PipelineBackfillResponse(backfill=obj), exclude={"backfill": exclude})


def _addressed(call: Call, pipeline_uuid: str | None, backfill_id: int) -> BackfillDetail:
    """The backfill a route addresses; nested routes address a backfill of that pipeline only."""
    d = backfills.get(call.db, call.actor, backfill_id)
    if pipeline_uuid is not None and d.row["pipeline_uuid"] != pipeline_uuid:
        raise NotFound(f"backfill {d.row['id']} not found in pipeline {pipeline_uuid!r}")
    return d


# ---- input --------------------------------------------------------------------------------------

READ_ONLY = (
    "id",
    "pipeline_uuid",
    "pipeline_schedule_id",
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
    "failed_at",
    "metrics",
    "total_run_count",
    "run_status_counts",
    "preview_runs",
    "allowed_actions",
)
NULLABLE_SETTINGS = frozenset({"cron", "timeout_seconds", "block_uuids"})


def _settings_sent(body: s.PipelineBackfillAction) -> tuple[s.PipelineBackfillSettingsAction, set[str]]:
    if "settings" not in body.model_fields_set:
        return s.PipelineBackfillSettingsAction(), set()
    if body.settings is None:
        raise ValidationError("settings must be an object", field="settings")
    sent = set(body.settings.model_fields_set)
    for key in sent - NULLABLE_SETTINGS:
        if getattr(body.settings, key) is None:
            raise ValidationError(f"settings.{key} must not be null", field=f"settings.{key}")
    return body.settings, sent


def _checked(field_name: str, fn: Callable[[], Any]) -> Any:
    """Run a DAG selection helper; its unknown-block error names ``field_name``."""
    try:
        return fn()
    except ValidationError as exc:
        raise ValidationError(f"{field_name}: {exc.message}", field=field_name) from exc


def _selection(
    body: s.PipelineBackfillAction,
    settings: s.PipelineBackfillSettingsAction,
    settings_sent: set[str],
    definition: PipelineDefinition,
    current: tuple[str, ...] | None,
) -> tuple[str, ...] | None:
    """The block selection after ``settings.block_uuids``, ``block_uuid`` and
    ``add_upstream_for_block_uuid`` (in that order) are applied to ``current``."""
    sent = body.model_fields_set
    selection = current
    if "block_uuids" in settings_sent:
        chosen = settings.block_uuids
        selection = _checked("settings.block_uuids", lambda: validate_selection(definition, chosen))
    if "block_uuid" in sent and body.block_uuid != block_uuid_of(current, definition):
        x = body.block_uuid
        selection = None if x is None else _checked("block_uuid", lambda: select_from_block(definition, x))
    if "add_upstream_for_block_uuid" in sent and body.add_upstream_for_block_uuid is not None:
        up = body.add_upstream_for_block_uuid
        base = selection
        selection = _checked("add_upstream_for_block_uuid", lambda: add_upstream_for_block(definition, base, up))
    return selection


def _refuse_status(current: BackfillStatus, requested: object) -> InvalidTransition:
    """A status this dialect cannot reach from ``current``; ``allowed`` in this dialect's names."""
    allowed = tuple(name for target in transitions.allowed_targets(current) for name in _TARGET_NAMES[target])
    if not allowed:
        return InvalidTransition(
            "status: the backfill is {current}, a final status; it can no longer change", current=current.value
        )
    return InvalidTransition(
        "status: cannot change from {current} to {requested}; allowed: {allowed}",
        current=current.value,
        requested=repr(requested),
        allowed=allowed,
    )


def requested_status(current: BackfillStatus, value: object) -> BackfillStatus | None:
    """The canonical target of a status in a PUT, or None when nothing is to change
    (the current status, or a start of a backfill that has already started)."""
    if value == dialect_status(current.value):
        return None
    target = _STATUS_IN.get(value) if isinstance(value, str) else None
    if target is BackfillStatus.SCHEDULED and current in (BackfillStatus.SCHEDULED, BackfillStatus.RUNNING):
        return None  # "initial"/"running" of a started backfill: it already is
    if target is None or target not in transitions.allowed_targets(current):
        raise _refuse_status(current, value)
    return target


@dataclass
class Edit:
    """What a PUT changes, validated before anything is applied."""

    changes: dict[str, Any] = field(default_factory=dict)
    paused: bool | None = None
    status: BackfillStatus | None = None


def plan_edit(body: s.PipelineBackfillAction, row: RowMapping, definition: PipelineDefinition) -> Edit:
    sent = body.model_fields_set
    current = BackfillStatus(row["status"])
    settings, settings_sent = _settings_sent(body)
    edit = Edit()
    if "id" in sent and body.id != row["id"]:
        raise ValidationError(f"id is read-only: this is backfill {row['id']}", field="id")
    if "pipeline_uuid" in sent and body.pipeline_uuid != row["pipeline_uuid"]:
        raise ValidationError(
            f"pipeline_uuid is read-only: this backfill belongs to pipeline {row['pipeline_uuid']!r}",
            field="pipeline_uuid",
        )
    changes = edit.changes
    if "name" in sent:
        if body.name is None:
            raise ValidationError("name must not be null", field="name")
        if body.name != row["name"]:
            changes["name"] = body.name
    tz = settings.timezone if "timezone" in settings_sent and settings.timezone else row["timezone"]
    for api_name, canonical in (("start_datetime", "start"), ("end_datetime", "end")):
        if api_name in sent:
            value = getattr(body, api_name)
            if value is None:
                raise ValidationError(f"{api_name} must not be null", field=api_name)
            instant = parse_instant(value, field=api_name, timezone=tz, naive="utc")
            if instant != row[canonical]:
                changes[canonical] = instant
    if "interval_type" in sent:
        if body.interval_type is None:
            raise ValidationError("interval_type must not be null", field="interval_type")
        if body.interval_type != row["interval_type"]:
            changes["interval_type"] = body.interval_type
    if "interval_units" in sent and body.interval_units != row["interval_units"]:
        changes["interval_units"] = body.interval_units
    if "variables" in sent and (body.variables or None) != (row["variables"] or None):
        changes["variables"] = body.variables or None
    for key in (
        "max_active_runs",
        "run_order",
        "reprocess",
        "timezone",
        "cron",
        "retries",
        "retry_delay_seconds",
        "timeout_seconds",
    ):
        if key in settings_sent and getattr(settings, key) != row[key]:
            changes[key] = getattr(settings, key)
    if "notify" in settings_sent:  # replaces the webhooks; secrets are write-only, so sent again
        changes["notify"] = webhooks_in(settings.notify)
    current_selection = tuple(row["block_uuids"]) if row["block_uuids"] is not None else None
    selection = _selection(body, settings, settings_sent, definition, current_selection)
    # An equivalent selection (say block_uuid = the only root) is not an edit of a started
    # backfill; before the start it is stored as sent, so the object shows it.
    if selection != current_selection and (
        current is BackfillStatus.CREATED or not _same_selection(selection, current_selection, definition)
    ):
        changes["block_uuids"] = list(selection) if selection is not None else None
    if "paused" in settings_sent and settings.paused is not None and settings.paused != bool(row["paused"]):
        edit.paused = settings.paused
    if "status" in sent:
        edit.status = requested_status(current, body.status)
    # What a started or final backfill cannot take is refused by services.update, in the
    # transaction that applies the rest: a refused PUT changes nothing.
    return edit


def apply_edit(db: Database, actor: Actor, backfill_id: int, edit: Edit) -> None:
    """Settings first, then pause, then the status (so "edit the range + start" is one PUT),
    in one transaction: a refusal (say an overlap found by the start) changes nothing."""
    backfills.update(
        db,
        actor,
        backfill_id,
        settings={**edit.changes, "naive": "utc"} if edit.changes else None,
        paused=edit.paused,
        status=edit.status,
    )


def _reject_read_only(body: s.PipelineBackfillAction, pipeline_uuid: str) -> None:
    sent = body.model_fields_set
    bad = [
        k
        for k in READ_ONLY
        if k in sent
        and getattr(body, k) is not None
        and not (k == "pipeline_uuid" and body.pipeline_uuid == pipeline_uuid)
    ]
    if bad:
        raise ValidationError(
            f"read-only field{'s' if len(bad) > 1 else ''} of a backfill: {', '.join(bad)}", field=bad[0]
        )


def spec_from_body(body: s.PipelineBackfillAction, pipeline: RowMapping) -> tuple[BackfillSpec, bool]:
    """The services' spec of a new backfill, and whether to start it at once."""
    _reject_read_only(body, pipeline["uuid"])
    sent = body.model_fields_set
    settings, settings_sent = _settings_sent(body)
    missing = [f for f in ("start_datetime", "end_datetime") if getattr(body, f) is None]
    if missing:
        raise ValidationError(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required", field=missing[0]
        )
    definition = pipeline_store.definition(pipeline)
    selection = _selection(body, settings, settings_sent, definition, None)
    start_now = False
    if "status" in sent and body.status is not None:
        if body.status not in ("initial", "running"):
            raise InvalidTransition(
                "status: a new backfill is null (not started) or starts at once with {allowed}, not {requested}",
                requested=repr(body.status),
                allowed=("initial", "running"),
            )
        start_now = True
    assert body.start_datetime is not None and body.end_datetime is not None
    spec = BackfillSpec(
        start=body.start_datetime,
        end=body.end_datetime,
        interval_type=body.interval_type,
        interval_units=body.interval_units if "interval_units" in sent else DEFAULT_UNITS,
        cron=settings.cron,
        timezone=settings.timezone,
        name=body.name,
        variables=body.variables or None,
        block_uuids=list(selection) if selection is not None else None,
        retries=settings.retries,
        retry_delay_seconds=settings.retry_delay_seconds,
        timeout_seconds=settings.timeout_seconds,
        notify=webhooks_in(settings.notify) or None,
        naive="utc",
    )
    if settings.max_active_runs is not None:
        spec.max_active_runs = settings.max_active_runs
    if settings.run_order is not None:
        spec.run_order = settings.run_order
    if settings.reprocess is not None:
        spec.reprocess = settings.reprocess
    return spec, start_now


# ---- backfills -------------------------------------------------------------------------------------


Handler = Callable[..., Response]


def _twin_routes(
    method: str,
    path: str,
    summaries: tuple[str, str],
    *,
    response_model: type[BaseModel] = s.PipelineBackfillResponse,
    pipeline_query: Any = None,
    **route: Any,
) -> Callable[[Handler], Handler]:
    """Registers one operation at the two paths the pipeline API gives it: ``{path}`` for
    any backfill of the team and ``/pipelines/{pipeline_uuid}{path}`` for one of that
    pipeline (404 otherwise). The handler takes ``pipeline_uuid``; the team-wide route calls
    it with None, or takes it as an optional query parameter of type ``pipeline_query``.
    The nested route is named after the handler (``get_pipeline_backfill``), the team-wide
    one without ``pipeline_`` (``get_backfill``); ``summaries`` are (team-wide, nested)."""

    def register(handler: Handler) -> Handler:
        signature = inspect.signature(handler, eval_str=True)
        parameters = [
            p.replace(annotation=pipeline_query, default=None) if p.name == "pipeline_uuid" else p
            for p in signature.parameters.values()
            if p.name != "pipeline_uuid" or pipeline_query is not None
        ]

        def everywhere(**kwargs: Any) -> Response:
            return handler(**{"pipeline_uuid": None, **kwargs})

        everywhere.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        names = (handler.__name__.replace("pipeline_", "", 1), handler.__name__)
        endpoints = ((path, everywhere), (f"/pipelines/{{pipeline_uuid}}{path}", handler))
        for (where, endpoint), name, summary in zip(endpoints, names, summaries, strict=True):
            route_options = {"name": name, "summary": summary, "response_model": response_model, **route}
            router.add_api_route(where, endpoint, methods=[method], **route_options)
        return handler

    return register


def _list(call: Call, pipeline_uuid: str | None, limit: int, offset: int, run_count: bool) -> Response:
    definitions = _Definitions(call.db, call.actor)
    pipeline_id = None
    if pipeline_uuid is not None:
        pipeline_id = int(definitions_row(definitions, pipeline_uuid)["id"])
    page = backfills.list_backfills(
        call.db, call.actor, statuses=None, pipeline_id=pipeline_id, limit=limit, offset=offset
    )
    rendered = [render_backfill(d, definitions, run_count=run_count) for d in page.items]
    body = s.PipelineBackfillListResponse(
        backfills=[obj for obj, _ in rendered], metadata=_metadata(page.total, offset, len(rendered))
    )
    exclude = {"backfills": {"__all__": rendered[0][1]}} if rendered else None
    return json_response(body, exclude=exclude)


def definitions_row(definitions: _Definitions, pipeline_uuid: str) -> RowMapping:
    row = pipelines.get_pipeline(definitions.db, definitions.actor, uuid=pipeline_uuid)
    definitions.add(row)
    return row


@_twin_routes(
    "GET",
    "/backfills",
    ("Backfills of the team (optionally of one pipeline), newest first", "Backfills of a pipeline, newest first"),
    response_model=s.PipelineBackfillListResponse,
    pipeline_query=Annotated[str | None, Query(min_length=1, max_length=200, pattern=NO_NUL)],
)
def list_pipeline_backfills(
    call: ReadCall,
    pipeline_uuid: PipelineUuid,
    limit: Limit = 50,
    offset: Offset = 0,
    include_run_count: IncludeRunCount = False,
) -> Response:
    return _list(call, pipeline_uuid, limit, offset, include_run_count)


@router.post(
    "/pipelines/{pipeline_uuid}/backfills",
    response_model=s.PipelineBackfillResponse,
    summary="Create a backfill (not started: status null)",
    description='Body `{"backfill": {...}}`: `start_datetime` and `end_datetime` are required (both inclusive); '
    "`interval_type` (default day), `interval_units` (default 1), `name`, `variables`, `block_uuid`, "
    "`add_upstream_for_block_uuid` and `settings` are optional. The backfill is saved, not started: start it "
    'with `PUT {"backfill": {"status": "initial"}}` (or send `status: "initial"` here to start at once).',
)
def create_backfill(call: WriteCall, pipeline_uuid: PipelineUuid, body: s.PipelineBackfillCreateBody) -> Response:
    definitions = _Definitions(call.db, call.actor)
    pipeline = definitions_row(definitions, pipeline_uuid)
    spec, start_now = spec_from_body(body.backfill, pipeline)
    backfill_id = backfills.create(call.db, call.actor, int(pipeline["id"]), spec, start=start_now)
    return _one(backfills.get(call.db, call.actor, backfill_id), definitions)


@_twin_routes("GET", "/backfills/{backfill_id}", ("One backfill", "One backfill of a pipeline"))
def get_pipeline_backfill(
    call: ReadCall,
    pipeline_uuid: PipelineUuid,
    backfill_id: BackfillId,
    include_run_count: IncludeRunCount = False,
    include_preview_runs: IncludePreviewRuns = False,
) -> Response:
    d = _addressed(call, pipeline_uuid, backfill_id)
    return _one(d, _Definitions(call.db, call.actor), run_count=include_run_count, preview=include_preview_runs)


PUT_DESCRIPTION = """\
Any attribute of the backfill, in `{"backfill": {...}}`; only what differs from the current value changes.

- `start_datetime`, `end_datetime`, `interval_type`, `interval_units`, `variables`, `block_uuid`,
  `add_upstream_for_block_uuid` and `settings` other than `max_active_runs` / `paused`: only while
  the backfill is not started (`status` null), else 422.
- `block_uuid: X` runs X and everything downstream of X; `add_upstream_for_block_uuid: X` adds X and all
  its ancestors to the selection (a null selection becomes exactly X and its ancestors).
- `status: "initial"` (or `"running"`) starts a not-started backfill or retries the failed intervals of a
  failed one; `"cancelled"` cancels it (queued runs are cancelled, running ones finish, the record stays).
  Anything else is a 422 that lists the allowed values.
- Settings are applied first, then the status: editing the range and starting is one request.
"""


UPDATE_SUMMARIES = (
    "Update a backfill (edit, start, retry, cancel)",
    "Update a backfill of a pipeline (edit, start, retry, cancel)",
)


@_twin_routes("PUT", "/backfills/{backfill_id}", UPDATE_SUMMARIES, description=PUT_DESCRIPTION)
def update_pipeline_backfill(
    call: WriteCall, pipeline_uuid: PipelineUuid, backfill_id: BackfillId, body: s.PipelineBackfillBody
) -> Response:
    d = _addressed(call, pipeline_uuid, backfill_id)
    definitions = _Definitions(call.db, call.actor)
    edit = plan_edit(body.backfill, d.row, definitions.get(int(d.row["pipeline_id"])))
    apply_edit(call.db, call.actor, backfill_id, edit)
    return _one(backfills.get(call.db, call.actor, backfill_id), definitions)


DELETE_SUMMARIES = (
    "Delete a backfill that is not running (cancel it first); returns it as it was",
    "Delete a backfill of a pipeline that is not running (cancel it first)",
)


@_twin_routes("DELETE", "/backfills/{backfill_id}", DELETE_SUMMARIES)
def delete_pipeline_backfill(call: WriteCall, pipeline_uuid: PipelineUuid, backfill_id: BackfillId) -> Response:
    response = _one(_addressed(call, pipeline_uuid, backfill_id), _Definitions(call.db, call.actor))
    backfills.delete(call.db, call.actor, backfill_id)
    return response


# ---- pipelines ---------------------------------------------------------------------------------------


@router.get("/pipelines", response_model=s.PipelineListResponse, summary="Pipelines of the team")
def list_pipelines(call: ReadCall, limit: Limit = 50, offset: Offset = 0) -> Response:
    page = pipelines.list_pipelines(call.db, call.actor, limit=limit, offset=offset)
    items = [_pipeline(r) for r in page.items]
    return json_response(s.PipelineListResponse(pipelines=items, metadata=_metadata(page.total, offset, len(items))))


@router.get("/pipelines/{pipeline_uuid}", response_model=s.PipelineResponse, summary="One pipeline with its blocks")
def get_pipeline(call: ReadCall, pipeline_uuid: PipelineUuid) -> Response:
    row = pipelines.get_pipeline(call.db, call.actor, uuid=pipeline_uuid)
    return json_response(s.PipelineResponse(pipeline=_pipeline(row)))


# ---- interval runs -------------------------------------------------------------------------------------


def _run(row: RowMapping, pipeline_uuid: str, variables: dict[str, Any]) -> s.PipelineRun:
    calendar = is_calendar(row["interval_type"], row["cron"])
    status = row["status"]
    return s.PipelineRun(
        id=row["id"],
        backfill_id=row["backfill_id"],
        pipeline_uuid=pipeline_uuid,
        pipeline_schedule_id=None,
        status=status,
        execution_date=format_pipeline(row["interval_start"]),
        interval_end_datetime=format_pipeline(row["interval_end"]),
        data_date=_data_date(row["interval_start"], row["timezone"], calendar),
        attempt=row["attempt"],
        **_times(row, "created_at", "started_at", "ended_at"),
        completed_at=_dt(row["ended_at"]) if status == "completed" else None,
        failed_at=_dt(row["ended_at"]) if status == "failed" else None,
        duration_seconds=row["duration"],
        rows=row["rows"],
        error=row["error"],
        pipeline_version=row["pipeline_version"],
        variables=variables,
    )


@router.get(
    "/pipeline_runs",
    response_model=s.PipelineRunListResponse,
    summary="Interval runs of a backfill, newest execution date first",
)
def list_pipeline_runs(call: ReadCall, backfill_id: BackfillIdQuery, limit: Limit = 50, offset: Offset = 0) -> Response:
    d = backfills.get(call.db, call.actor, backfill_id)
    pipeline = pipelines.get_pipeline(call.db, call.actor, int(d.row["pipeline_id"]))
    variables = {**(pipeline["variables"] or {}), **(d.row["variables"] or {})}
    query = RunQuery(sort_field="data_date", descending=True, limit=limit, offset=offset)
    page = runs.list_backfill_runs(call.db, call.actor, backfill_id, query)
    items = [_run(r, d.row["pipeline_uuid"], variables) for r in page.items]
    return json_response(
        s.PipelineRunListResponse(pipeline_runs=items, metadata=_metadata(page.total, offset, len(items)))
    )
