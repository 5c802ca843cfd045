"""Pydantic models of the team API (``/v1``, docs/api.md).

Request bodies ("actions") are separate from response objects, and both from the
database rows: the translation from rows lives in ``api.team_api``. Timestamps are
strings already formatted as ISO 8601 UTC with ``Z``; range dates are ``YYYY-MM-DD``
for day-or-longer intervals and ISO datetimes otherwise, so they are plain strings.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from backfill.api.schemas import fields
from backfill.api.schemas.common import (
    INSTANT_PATTERN,
    ErrorText,
    JsonAction,
    PipelineAttributes,
    ZoneName,
    cron_needs_custom,
)
from backfill.api.schemas.common import BackfillMetrics as BackfillMetrics
from backfill.api.schemas.fields import IntervalTypeName as IntervalTypeName
from backfill.api.schemas.fields import ReprocessName, RunOrderName
from backfill.api.schemas.webhooks import Webhook, WebhookAction
from backfill.domain.limits import MAX_NAME_LENGTH
from backfill.domain.transitions import UserAction
from backfill.http.envelope import ErrorDetail as ErrorDetail
from backfill.http.envelope import ErrorEnvelope as ErrorEnvelope
from backfill.http.envelope import Meta as Meta
from backfill.http.envelope import Timestamp as Timestamp

DateOrTimestamp = Annotated[
    str,
    Field(
        description='"YYYY-MM-DD" for day-or-longer intervals (and cron), else an ISO 8601 UTC datetime',
        examples=["2024-01-01"],
    ),
]

BackfillStatusName = Literal["CREATED", "SCHEDULED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"]
RunStatusName = Literal["QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"]


# ---- envelope ------------------------------------------------------------------------------


class PageMeta(Meta):
    total: int = Field(description="Number of items matching the filters.")
    limit: int
    offset: int


# ---- actions (request bodies) ----------------------------------------------------------------


class _Action(JsonAction):
    """Base of this dialect's request bodies."""


class CreateBackfillAction(_Action):
    """Body of ``POST .../transfers/{transfer_id}/backfills`` (and ``:dry_run``)."""

    schema_rules = cron_needs_custom()

    range_start: str = Field(
        max_length=64,
        json_schema_extra={"pattern": INSTANT_PATTERN},
        description="First interval start, inclusive: a date (00:00 in the backfill's timezone) or an ISO "
        "datetime (an offset wins; without one it is wall-clock time in the backfill's timezone).",
        examples=["2024-01-01"],
    )
    range_end: str = Field(
        max_length=64,
        json_schema_extra={"pattern": INSTANT_PATTERN},
        description="Last interval start, inclusive; same format.",
        examples=["2024-01-31"],
    )
    name: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    interval_type: IntervalTypeName = "day"
    interval_units: fields.IntervalUnits | None = Field(
        default=1, description="Units per interval; seconds for `custom` without cron."
    )
    cron: fields.CronInput = None
    timezone: ZoneName | None = Field(default=None, description="IANA name; default the transfer's.")
    variables: dict[str, Any] | None = Field(
        default=None, description="At most 64 KiB of JSON, 32 levels deep, no NUL characters."
    )
    max_active_runs: fields.MaxActiveRuns = 4
    run_order: RunOrderName = "newest_first"
    reprocess: ReprocessName = "all"
    retries: fields.Retries | None = None
    retry_delay_seconds: fields.RetryDelaySeconds | None = None
    timeout_seconds: fields.TimeoutSeconds | None = None
    block_uuids: list[Annotated[str, Field(max_length=200)]] | None = Field(
        default=None, max_length=1000, description="Blocks to run; null = all."
    )
    notify: Annotated[list[WebhookAction], Field(max_length=20)] | None = Field(
        default=None, description="Webhooks called when the backfill completes, fails or is cancelled."
    )


class UpdateBackfillAction(_Action):
    """Body of ``PATCH /v1/teams/{team_id}/backfills/{backfill_id}``: at least one field.

    ``status`` CANCELLED cancels (queued runs are cancelled, running ones finish);
    SCHEDULED starts a CREATED backfill or retries the failed intervals of a FAILED one.
    """

    schema_rules: ClassVar[dict[str, Any]] = {"minProperties": 1}

    status: BackfillStatusName | SkipJsonSchema[None] = None
    paused: bool | SkipJsonSchema[None] = None
    max_active_runs: fields.MaxActiveRuns | SkipJsonSchema[None] = None
    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)] | SkipJsonSchema[None] = None
    notify: Annotated[list[WebhookAction], Field(max_length=20)] | SkipJsonSchema[None] = Field(
        default=None,
        description="Replaces the backfill's webhooks (`[]` removes them) until it is final. Secrets are "
        "write-only: send them again with the list.",
    )


class RerunAction(_Action):
    """Body of ``POST /v1/teams/{team_id}/backfills/{backfill_id}/runs:rerun``: exactly one
    of the three selections."""

    schema_rules: ClassVar[dict[str, Any]] = {
        "oneOf": [{"required": ["run_ids"]}, {"required": ["data_dates"]}, {"required": ["statuses"]}]
    }

    run_ids: (
        Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1, max_length=10_000)] | SkipJsonSchema[None]
    ) = Field(default=None, description="Runs of this backfill.")
    data_dates: (
        Annotated[list[Annotated[str, Field(max_length=64)]], Field(min_length=1, max_length=10_000)]
        | SkipJsonSchema[None]
    ) = Field(
        default=None,
        description="Data dates of intervals of this backfill (dates, or ISO datetimes in its timezone).",
    )
    statuses: (
        Annotated[list[Literal["COMPLETED", "FAILED", "CANCELLED"]], Field(min_length=1, max_length=3)]
        | SkipJsonSchema[None]
    ) = Field(default=None, description="Every run of the backfill in these statuses.")


# ---- responses -------------------------------------------------------------------------------


class ErrorReportEntry(BaseModel):
    transfer_run_date: DateOrTimestamp = Field(description="Data date of the failed interval.")
    error: ErrorText


class Backfill(BaseModel):
    transfer_backfill_id: int = Field(description="Unique identifier of the backfill.")
    transfer_id: int = Field(description="ID of the transfer this backfill belongs to.")
    range_start_date: DateOrTimestamp
    range_end_date: DateOrTimestamp
    created_time: Timestamp
    created_user_id: int | None
    created_user_email: str | None = Field(default=None, description="E-mail of the user who created it.")
    removed_time: Timestamp | None = Field(description="When the backfill was cancelled.")
    removed_user_id: int | None = Field(description="Who cancelled the backfill.")
    removed_user_email: str | None = Field(default=None, description="E-mail of the user who cancelled it.")
    start_time: Timestamp | None = Field(description="When the first run began.")
    end_time: Timestamp | None = Field(description="When the backfill finished or was cancelled.")
    status: BackfillStatusName
    transfer_runs_total: int
    transfer_runs_created: int
    transfer_runs_completed: int
    transfer_runs_failed: int
    error_report: list[ErrorReportEntry]
    # extensions
    name: str
    transfer_uuid: str
    interval_type: IntervalTypeName
    interval_units: int | None
    cron: str | None
    timezone: str
    max_active_runs: int
    run_order: RunOrderName
    reprocess: ReprocessName
    retries: int
    variables: dict[str, Any] | None
    block_uuids: list[str] | None
    paused: bool
    transfer_runs_running: int
    transfer_runs_cancelled: int
    metrics: BackfillMetrics
    updated_time: Timestamp
    allowed_actions: list[UserAction] = Field(
        description="What may be done to the backfill now (start, retry, cancel, pause, resume, edit, delete): "
        "the server's transition rules, so a client need not keep its own copy."
    )
    notify: list[Webhook] = Field(
        default_factory=list, description="Webhooks of the backfill (its pipeline's own are in pipeline.yaml)."
    )


class BackfillResponse(BaseModel):
    meta: Meta
    data: Backfill


class Rerun(BaseModel):
    requeued: int = Field(description="Runs re-queued as new attempts.")
    running: int = Field(description="Chosen runs left alone because they are running.")
    backfill: Backfill


class RerunResponse(BaseModel):
    meta: Meta
    data: Rerun


class BackfillListResponse(BaseModel):
    meta: PageMeta
    data: list[Backfill]


class DryRunInterval(BaseModel):
    interval_start: Timestamp
    interval_end: Timestamp
    data_date: DateOrTimestamp


class SkippedInterval(BaseModel):
    interval_start: Timestamp
    data_date: DateOrTimestamp


class DryRun(BaseModel):
    transfer_id: int
    name: str
    range_start_date: DateOrTimestamp
    range_end_date: DateOrTimestamp
    interval_type: IntervalTypeName
    interval_units: int | None
    cron: str | None
    timezone: str
    run_order: RunOrderName
    reprocess: ReprocessName
    transfer_runs_total: int = Field(description="Intervals in the range.")
    transfer_runs_to_run: int = Field(description="Intervals that would run (not skipped by reprocess).")
    transfer_runs_skipped: int = Field(description="Intervals skipped by reprocess.")
    intervals: list[DryRunInterval] = Field(description="The first 1000 intervals that would run, in run order.")
    skipped_intervals: list[SkippedInterval] = Field(description="The first 1000 skipped intervals.")


class DryRunResponse(BaseModel):
    meta: Meta
    data: DryRun


class Run(BaseModel):
    id: int
    transfer_id: int
    transfer_backfill_id: int
    status: RunStatusName
    type: Literal["Backfill"]
    data_date: DateOrTimestamp
    interval_start: Timestamp
    interval_end: Timestamp
    attempt: int = Field(description="Attempts made so far (0 while the run waits for its first).")
    created_time: Timestamp
    queued_time: Timestamp
    started_time: Timestamp | None
    ended_time: Timestamp | None
    total_duration: float | None = Field(description="Seconds.")
    total_rows: int | None
    message: str | None = Field(description="The error of the latest attempt, if any.")
    pipeline_version: fields.PipelineVersion


class QueryDetail(BaseModel):
    block_uuid: str
    status: str
    started_time: Timestamp | None
    ended_time: Timestamp | None
    duration_seconds: float | None
    rows: int | None
    error: str | None
    output: str | None


class RunDetail(Run):
    query_details: list[QueryDetail]


class RunListResponse(BaseModel):
    meta: PageMeta
    data: list[Run]


class RunResponse(BaseModel):
    meta: Meta
    data: RunDetail


class RunLogs(BaseModel):
    transfer_run_id: int
    content: str = Field(description="Captured output from `offset` (characters).")
    offset: int
    next_offset: int = Field(description="Pass as `offset` to continue tailing.")
    complete: bool = Field(description="This attempt has ended and no more output will appear for it.")
    attempt: int = Field(description="The attempt these are the logs of (0: not started yet).")
    attempts: int = Field(description="Attempts the run has made so far.")
    status: Literal["RUNNING", "COMPLETED", "FAILED"] | None = Field(description="How the attempt ended, if it did.")
    pipeline_version: str | None = Field(description="Digest of the pipeline files the attempt ran.")
    error: str | None = Field(description="The attempt's error (with the traceback) if it failed.")
    run_final: bool = Field(description="The run has ended for good: no further attempt will come.")


class RunLogsResponse(BaseModel):
    meta: Meta
    data: RunLogs


class TransferBlock(BaseModel):
    uuid: str
    type: Literal["python", "sql", "shell"]
    upstream: list[str]
    connection: str | None


class Transfer(PipelineAttributes):
    blocks: list[TransferBlock]
    created_time: Timestamp
    updated_time: Timestamp


class TransferResponse(BaseModel):
    meta: Meta
    data: Transfer


class TransferListResponse(BaseModel):
    meta: PageMeta
    data: list[Transfer]


class Health(BaseModel):
    status: Literal["ok"]


class HealthResponse(BaseModel):
    meta: Meta
    data: Health
