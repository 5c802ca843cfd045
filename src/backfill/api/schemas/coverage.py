"""Pydantic models of the coverage route of the team API (docs/api.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from backfill.api.schemas.team import Meta, Timestamp

CoverageStatusName = Literal["COMPLETED", "FAILED", "RUNNING", "QUEUED", "CANCELLED", "MISSING"]


class CoverageSpan(BaseModel):
    start: Timestamp = Field(description="Start of the span's first interval.")
    end: Timestamp = Field(description="End (exclusive) of the span's last interval.")
    last_start: Timestamp = Field(
        description="Start of the span's last interval: a backfill from `start` to `last_start` covers the span."
    )
    status: CoverageStatusName = Field(
        description="Status of the latest run of every interval of the span (queued last, over all backfills of "
        "the transfer); MISSING when an interval never had a run."
    )
    count: int = Field(description="Number of intervals in the span.")
    backfill_id: int | None = Field(
        description="The backfill whose runs gave the status to the most intervals of the span (a tie: the "
        "newest backfill); null for MISSING."
    )


class Coverage(BaseModel):
    transfer_id: int
    start: Timestamp = Field(description="Start of the first interval of the series.")
    end: Timestamp = Field(description="End (exclusive) of the last interval of the series.")
    interval_type: str
    interval_units: int | None
    cron: str | None
    timezone: str
    total: int = Field(description="Number of intervals of the series.")
    counts: dict[CoverageStatusName, int] = Field(description="Intervals per status (the spans' counts summed).")
    spans: list[CoverageSpan]


class CoverageResponse(BaseModel):
    meta: Meta
    data: Coverage
