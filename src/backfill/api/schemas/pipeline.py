"""Pydantic models of the pipeline API (``/api``, docs/api.md, the Mage-style pipeline backfill API).

Objects are wrapped (``{"backfill": {...}}``), lists come with ``{"metadata": {"count",
"next"}}``, statuses are lowercase (``null`` = not started, ``initial`` = started, no run
begun yet), datetimes are ``"YYYY-MM-DD HH:MM:SS"`` in UTC. Request bodies ("actions")
are separate from response objects; the translation from rows lives in
``api.pipeline_api``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.config import JsonDict
from pydantic.json_schema import SkipJsonSchema

from backfill.api.schemas import fields
from backfill.api.schemas.common import (
    INSTANT_PATTERN,
    BackfillMetrics,
    ErrorText,
    JsonAction,
    PipelineAttributes,
    ZoneName,
    cron_needs_custom,
)
from backfill.api.schemas.fields import IntervalTypeName as IntervalTypeName
from backfill.api.schemas.fields import ReprocessName, RunOrderName
from backfill.api.schemas.webhooks import WebhookAction
from backfill.domain.limits import MAX_NAME_LENGTH
from backfill.domain.transitions import UserAction

PIPELINE_DATETIME_PATTERN = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"

PipelineDateTime = Annotated[
    str,
    Field(
        pattern=PIPELINE_DATETIME_PATTERN,
        description='UTC, "YYYY-MM-DD HH:MM:SS".',
        examples=["2023-07-17 23:56:05"],
    ),
]
DateTimeInput = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        json_schema_extra={"pattern": INSTANT_PATTERN},
        description='"YYYY-MM-DD HH:MM:SS", ISO 8601 or a plain date. A time without offset is UTC; '
        "a plain date is 00:00 in the backfill's timezone; an offset wins.",
        examples=["2023-07-17 23:56:05"],
    ),
]
BlockUuid = Annotated[str, Field(min_length=1, max_length=200)]
READ_ONLY: JsonDict = {"readOnly": True}

PipelineBackfillStatus = Literal["initial", "running", "completed", "failed", "cancelled"]
PipelineRunStatus = Literal["queued", "running", "completed", "failed", "cancelled"]

ErrorTypeName = Literal[
    "record_not_found",
    "unauthorized_access",
    "invalid_api_key",
    "invalid_oauth_token",
    "expired_oauth_token",
    "record_invalid",
    "conflict",
    "rate_limited",
    "payload_too_large",
    "server_error",
]
ERROR_TYPE_NAMES: tuple[str, ...] = get_args(ErrorTypeName)


# ---- errors ------------------------------------------------------------------------------------


class PipelineError(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: int = Field(description="The HTTP status code of the response.", examples=[404])
    message: str = Field(description="Human-readable; names the offending field or record.")
    type: ErrorTypeName = Field(description="Stable machine-readable kind of the error.")


class PipelineErrorEnvelope(BaseModel):
    """Every error (4xx/5xx) of the pipeline API."""

    model_config = ConfigDict(extra="forbid")

    error: PipelineError


# ---- actions (request bodies) ------------------------------------------------------------------


def reject_nul(value: Any, where: str) -> None:
    """Text with NUL characters cannot be stored (PostgreSQL refuses it in text and JSONB)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{where} must not contain the NUL character (\\u0000)")
    elif isinstance(value, dict):
        for key, item in value.items():
            reject_nul(key, where)
            reject_nul(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            reject_nul(item, f"{where}[{index}]")


class _Action(JsonAction):
    @model_validator(mode="after")
    def _no_nul_characters(self) -> Self:
        for name in type(self).model_fields:
            value = getattr(self, name)
            if not isinstance(value, BaseModel):
                reject_nul(value, name)
        return self


class PipelineBackfillSettingsAction(_Action):
    """``settings`` of a backfill. Everything but ``max_active_runs``, ``paused`` and
    ``notify`` (which replaces the webhooks; secrets sent again) may change only before
    the backfill starts. Only ``cron``, ``timeout_seconds`` and
    ``block_uuids`` may be null."""

    max_active_runs: fields.MaxActiveRuns | SkipJsonSchema[None] = None
    run_order: RunOrderName | SkipJsonSchema[None] = None
    reprocess: ReprocessName | SkipJsonSchema[None] = None
    timezone: ZoneName | SkipJsonSchema[None] = None
    cron: fields.CronInput = None
    retries: fields.Retries | SkipJsonSchema[None] = None
    retry_delay_seconds: fields.RetryDelaySeconds | SkipJsonSchema[None] = None
    timeout_seconds: fields.TimeoutSeconds | None = None
    paused: bool | SkipJsonSchema[None] = Field(default=None, description="A paused backfill starts no new runs.")
    block_uuids: list[BlockUuid] | None = Field(
        default=None, max_length=1000, description="The exact block selection; null = every block."
    )
    notify: Annotated[list[WebhookAction], Field(max_length=20)] | SkipJsonSchema[None] = Field(
        default=None, description="Webhooks called when the backfill completes, fails or is cancelled."
    )


class PipelineBackfillAction(_Action):
    """The attributes of a backfill a client may set (POST) or change (PUT).

    Read-only attributes of the object (``id``, ``pipeline_uuid``, timestamps, ``metrics``,
    counts…) are accepted so that a GET → edit → PUT round trip works; ``id`` and
    ``pipeline_uuid`` must then match the addressed backfill, the others are ignored.
    """

    schema_rules = cron_needs_custom("settings")

    name: Annotated[str, Field(max_length=MAX_NAME_LENGTH)] | SkipJsonSchema[None] = None
    start_datetime: DateTimeInput | SkipJsonSchema[None] = None
    end_datetime: DateTimeInput | SkipJsonSchema[None] = None
    interval_type: IntervalTypeName | SkipJsonSchema[None] = None
    interval_units: fields.IntervalUnits | SkipJsonSchema[None] = None
    variables: dict[str, Any] | None = Field(
        default=None,
        description="Overrides of the pipeline's global variables for every run: at most 64 KiB of JSON, "
        "32 levels deep, no NUL characters.",
    )
    settings: PipelineBackfillSettingsAction | SkipJsonSchema[None] = None
    block_uuid: BlockUuid | None = Field(
        default=None, description="Run this block and everything downstream of it (null = every block)."
    )
    add_upstream_for_block_uuid: BlockUuid | None = Field(
        default=None, description="Add this block and all its ancestors to the selection."
    )
    status: Annotated[str, Field(max_length=32)] | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra={"enum": ["initial", "running", "completed", "failed", "cancelled"]},
        description='"initial" or "running" starts a not-started backfill or retries the failed intervals of a '
        'failed one; "cancelled" cancels. Sending the current status changes nothing.',
    )
    # read-only attributes of the object, accepted for round trips (readOnly in the document)
    id: int | None = Field(default=None, json_schema_extra=READ_ONLY)
    pipeline_uuid: str | None = Field(default=None, max_length=200, json_schema_extra=READ_ONLY)
    pipeline_schedule_id: int | None = Field(default=None, json_schema_extra=READ_ONLY)
    created_at: str | None = Field(default=None, max_length=64, json_schema_extra=READ_ONLY)
    updated_at: str | None = Field(default=None, max_length=64, json_schema_extra=READ_ONLY)
    started_at: str | None = Field(default=None, max_length=64, json_schema_extra=READ_ONLY)
    completed_at: str | None = Field(default=None, max_length=64, json_schema_extra=READ_ONLY)
    failed_at: str | None = Field(default=None, max_length=64, json_schema_extra=READ_ONLY)
    metrics: dict[str, Any] | None = Field(default=None, json_schema_extra=READ_ONLY)
    total_run_count: int | None = Field(default=None, json_schema_extra=READ_ONLY)
    run_status_counts: dict[str, Any] | None = Field(default=None, json_schema_extra=READ_ONLY)
    preview_runs: list[Any] | None = Field(default=None, json_schema_extra=READ_ONLY)
    allowed_actions: list[Any] | None = Field(default=None, json_schema_extra=READ_ONLY)


class PipelineBackfillCreateAction(PipelineBackfillAction):
    """The attributes of a new backfill (POST): ``start_datetime`` and ``end_datetime``
    required, no read-only attribute (refused, except the addressed ``pipeline_uuid``)."""

    schema_rules = cron_needs_custom("settings", implied=True)

    start_datetime: DateTimeInput
    end_datetime: DateTimeInput
    status: str | None = Field(
        default=None,
        max_length=32,
        json_schema_extra={"enum": ["initial", "running"]},
        description='null: saved, not started; "initial" or "running": started at once.',
    )
    id: SkipJsonSchema[int | None] = None
    pipeline_uuid: SkipJsonSchema[str | None] = Field(default=None, max_length=200)
    pipeline_schedule_id: SkipJsonSchema[int | None] = None
    created_at: SkipJsonSchema[str | None] = None
    updated_at: SkipJsonSchema[str | None] = None
    started_at: SkipJsonSchema[str | None] = None
    completed_at: SkipJsonSchema[str | None] = None
    failed_at: SkipJsonSchema[str | None] = None
    metrics: SkipJsonSchema[dict[str, Any] | None] = None
    total_run_count: SkipJsonSchema[int | None] = None
    run_status_counts: SkipJsonSchema[dict[str, Any] | None] = None
    preview_runs: SkipJsonSchema[list[Any] | None] = None
    allowed_actions: SkipJsonSchema[list[Any] | None] = None


class PipelineBackfillBody(_Action):
    """``{"backfill": {...}}`` of a PUT."""

    backfill: PipelineBackfillAction


class PipelineBackfillCreateBody(_Action):
    """``{"backfill": {...}}`` of a POST."""

    backfill: PipelineBackfillCreateAction


class PipelineSessionAction(_Action):
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1000)


class PipelineSessionBody(_Action):
    """``{"session": {"email", "password"}}``."""

    session: PipelineSessionAction


# ---- responses ---------------------------------------------------------------------------------


class PipelineListMetadata(BaseModel):
    count: int = Field(description="Number of records matching the query (all pages).")
    next: bool = Field(description="Whether a further page exists.")


class PipelineErrorReportEntry(BaseModel):
    data_date: str = Field(description="Data date of the failed interval.")
    execution_date: PipelineDateTime
    error: ErrorText


class PipelineBackfillMetrics(BackfillMetrics):
    """The service metrics plus the run counts (this dialect has no counter fields)."""

    total_runs: int = Field(description="Interval runs this backfill runs (after reprocess skips).")
    created_runs: int = Field(description="Interval runs materialized so far.")
    queued_runs: int
    running_runs: int
    completed_runs: int
    failed_runs: int
    cancelled_runs: int
    error_report: list[PipelineErrorReportEntry] = Field(description="One entry per failed interval.")


class PipelineBackfillSettings(BaseModel):
    max_active_runs: int
    run_order: RunOrderName
    reprocess: ReprocessName
    timezone: str
    cron: str | None
    retries: int
    retry_delay_seconds: float
    timeout_seconds: float | None
    paused: bool
    block_uuids: list[str] | None = Field(description="The exact block selection; null = every block.")


class PipelinePreviewRun(BaseModel):
    start: PipelineDateTime
    end: PipelineDateTime
    data_date: str = Field(
        description='The local date "YYYY-MM-DD" for day-or-longer (and cron) intervals, else the start.'
    )


class PipelineBackfill(BaseModel):
    """A backfill as the seed document shows it, plus ``settings`` (and, on request,
    ``total_run_count``, ``run_status_counts`` and ``preview_runs``)."""

    id: int
    block_uuid: str | None = Field(
        description="The block the selection was made from (it and everything downstream); null when every "
        "block runs or the selection is not of that shape (see settings.block_uuids)."
    )
    completed_at: PipelineDateTime | None = Field(description="When it completed, or was cancelled.")
    created_at: PipelineDateTime
    end_datetime: PipelineDateTime
    failed_at: PipelineDateTime | None
    interval_type: IntervalTypeName
    interval_units: int | None
    metrics: PipelineBackfillMetrics
    name: str
    pipeline_schedule_id: int | None = Field(description="Always null: backfills are not tied to a schedule.")
    pipeline_uuid: str
    start_datetime: PipelineDateTime
    started_at: PipelineDateTime | None = Field(description="When the first interval run began.")
    status: PipelineBackfillStatus | None = Field(description="null = created, not started yet.")
    updated_at: PipelineDateTime
    variables: dict[str, Any] | None = Field(description="Overrides of global variables; null when none.")
    settings: PipelineBackfillSettings
    allowed_actions: list[UserAction] = Field(
        description="What may be done to the backfill now (start, retry, cancel, pause, resume, edit, delete)."
    )
    total_run_count: int | None = Field(default=None, description="With ?include_run_count=true.")
    run_status_counts: dict[str, int] | None = Field(
        default=None,
        description="With ?include_run_count=true: interval runs by status (queued, running, completed, failed, "
        "cancelled, and pending = not created yet); they add up to total_run_count.",
    )
    preview_runs: list[PipelinePreviewRun] | None = Field(
        default=None, description="With ?include_preview_runs=true: the first 100 intervals, in run order."
    )


class PipelineBackfillResponse(BaseModel):
    backfill: PipelineBackfill


class PipelineBackfillListResponse(BaseModel):
    backfills: list[PipelineBackfill]
    metadata: PipelineListMetadata


class PipelineBlock(BaseModel):
    uuid: str
    name: str
    type: Literal["python", "sql", "shell"]
    upstream_blocks: list[str]
    downstream_blocks: list[str]


class Pipeline(PipelineAttributes):
    type: Literal["python"] = "python"
    blocks: list[PipelineBlock]
    created_at: PipelineDateTime
    updated_at: PipelineDateTime


class PipelineResponse(BaseModel):
    pipeline: Pipeline


class PipelineListResponse(BaseModel):
    pipelines: list[Pipeline]
    metadata: PipelineListMetadata


class PipelineRun(BaseModel):
    id: int
    backfill_id: int
    pipeline_uuid: str
    pipeline_schedule_id: int | None
    status: PipelineRunStatus
    execution_date: PipelineDateTime = Field(description="Start of the interval.")
    interval_end_datetime: PipelineDateTime = Field(description="End of the interval (exclusive).")
    data_date: str
    attempt: int
    created_at: PipelineDateTime
    started_at: PipelineDateTime | None
    completed_at: PipelineDateTime | None = Field(description="Set when the run completed.")
    failed_at: PipelineDateTime | None = Field(description="Set when the run failed.")
    ended_at: PipelineDateTime | None
    duration_seconds: float | None
    rows: int | None
    error: str | None
    pipeline_version: fields.PipelineVersion
    variables: dict[str, Any] = Field(description="The variables the run sees: globals ← backfill overrides.")


class PipelineRunListResponse(BaseModel):
    pipeline_runs: list[PipelineRun]
    metadata: PipelineListMetadata


class PipelineSessionUser(BaseModel):
    id: int
    email: str
    default_team_id: int | None


class PipelineSession(BaseModel):
    token: str = Field(description='HS256 JWT {"expires", "token"}: send it as the cookie oauth_token.')
    expires: float = Field(description="Unix seconds.")
    user: PipelineSessionUser


class PipelineSessionResponse(BaseModel):
    session: PipelineSession


class PipelineSignOut(BaseModel):
    token_id: int = Field(description="The revoked token: requests with it (or its session JWT) now get 401.")
    revoked: bool = True


class PipelineSignOutResponse(BaseModel):
    session: PipelineSignOut
