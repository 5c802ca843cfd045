"""``GET /v1/teams/{team_id}/transfers/{transfer_id}/coverage`` (docs/api.md): which intervals of
a transfer are completed, failed, running, queued, cancelled or never ran, over all its
backfills, as spans of equal status. Translation only; see ``services.coverage``."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from backfill.api.calls import query_parameters
from backfill.api.params import BackfillId
from backfill.api.schemas import coverage as s
from backfill.api.schemas.team import IntervalTypeName
from backfill.api.team_api import ERROR_RESPONSES, ReadCall, TransferId, ok
from backfill.api.team_api import router as team_router
from backfill.domain.timeparse import format_iso_z
from backfill.services import coverage

# The team in the path is checked once, by the team API's router dependency.
router = APIRouter(prefix="/v1", tags=["team API"], responses=ERROR_RESPONSES, dependencies=team_router.dependencies)

QUERY_FIELDS = ("start", "end", "interval_type", "interval_units", "cron", "timezone", "split")

# ?split=day: spans cut at local midnight (services.coverage); any other value is a 400 naming it.
Split = Annotated[
    Literal["day"] | None,
    Query(
        description="`day`: cut spans at every local midnight of the series' timezone (23- and 25-hour days "
        "included), so that every interval of a span starts on one local day and the counts per day are exact "
        "whatever the spacing of the series (cron, DST). Default: spans cross days."
    ),
]


def render(result: coverage.Coverage) -> s.Coverage:
    series = result.series
    counts = result.totals()
    return s.Coverage(
        transfer_id=result.pipeline_id,
        start=format_iso_z(series.first_start),
        end=format_iso_z(series.last_end),
        interval_type=series.interval_type.value,
        interval_units=series.interval_units,
        cron=series.cron,
        timezone=series.timezone,
        total=series.count,
        counts={status.value.upper(): n for status, n in counts.items()},
        spans=[
            s.CoverageSpan(
                start=format_iso_z(span.start),
                end=format_iso_z(span.end),
                last_start=format_iso_z(span.last_start),
                status=span.status.value.upper(),
                count=span.count,
                backfill_id=span.backfill_id,
            )
            for span in result.spans
        ],
    )


@router.get(
    "/teams/{team_id}/transfers/{transfer_id}/coverage",
    response_model=s.CoverageResponse,
    summary="Coverage of a transfer: the status of every interval over all its backfills, as spans",
    description="For every interval of the series `[start, end]` (both inclusive; default daily in the "
    "transfer's timezone), the status of its latest run in any backfill of this transfer (the run queued "
    "last), or MISSING when it never ran, compressed into spans of equal status. A run counts for an "
    "interval when it starts exactly at the interval's start. `split=day` cuts the spans at local midnight.",
)
async def get_coverage(
    call: ReadCall,
    transfer_id: TransferId,
    start: Annotated[str, Query(max_length=64, description="First interval start (inclusive): a date or datetime.")],
    end: Annotated[str, Query(max_length=64, description="Last interval start (inclusive).")],
    interval_type: Annotated[IntervalTypeName, Query()] = "day",
    interval_units: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    cron: Annotated[str | None, Query(max_length=200, description="Cron expression (interval_type custom).")] = None,
    timezone: Annotated[str | None, Query(max_length=64, description="IANA name; default the transfer's.")] = None,
    split: Split = None,
) -> Response:
    with query_parameters(*QUERY_FIELDS):
        # A whole range is worth a worker thread on either database: the event loop stays free.
        result = await run_in_threadpool(
            coverage.coverage,
            call.db,
            call.actor,
            transfer_id,
            start,
            end,
            interval_type=interval_type,
            interval_units=interval_units,
            cron=cron,
            timezone=timezone,
            split=split,
        )
    return ok(call, s.CoverageResponse, render(result))


@router.get(
    "/teams/{team_id}/backfills/{backfill_id}/coverage",
    response_model=s.CoverageResponse,
    summary="The intervals of one backfill by the status of its own runs, as spans",
    description="Every interval of the backfill's series with the status of its run in this backfill, or "
    "MISSING when it has none yet (not queued yet, or skipped by `reprocess`), compressed into spans of equal "
    "status: what the web page draws for a large backfill. `transfer_id` is the backfill's transfer. `split=day` "
    "cuts the spans at local midnight in the backfill's timezone (the web page's days, weeks and months).",
)
async def get_backfill_coverage(call: ReadCall, backfill_id: BackfillId, split: Split = None) -> Response:
    with query_parameters("split"):
        result = await run_in_threadpool(coverage.of_backfill, call.db, call.actor, backfill_id, split=split)
    return ok(call, s.CoverageResponse, render(result))
