"""Field types both dialects' schemas declare alike: the values and bounds of a backfill's
settings (one declaration of each) and what a run reports of its code."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

# The values of a backfill's enumerated settings (the same names in both dialects).
IntervalTypeName = Literal["second", "minute", "hour", "day", "week", "month", "year", "custom"]
RunOrderName = Literal["newest_first", "oldest_first"]
ReprocessName = Literal["all", "failed", "missing"]

# The bounds of a backfill's settings in a request body: one declaration for both dialects.
IntervalUnits = Annotated[int, Field(ge=1, le=1_000_000)]
MaxActiveRuns = Annotated[int, Field(ge=1, le=1000)]
Retries = Annotated[int, Field(ge=0, le=100)]
RetryDelaySeconds = Annotated[float, Field(ge=0, le=86_400)]
TimeoutSeconds = Annotated[float, Field(gt=0, le=7 * 86_400)]
CronInput = Annotated[
    Annotated[str, Field(max_length=200)] | None, Field(description="Cron expression (interval_type custom).")
]
# What an interval run reports of the code it ran (both dialects' run objects).
PipelineVersion = Annotated[str | None, Field(description="Digest of the pipeline files the latest attempt ran.")]
