"""Field types both dialects' schemas declare alike: the bounds of a backfill's settings
in a request body (one declaration of each limit) and what a run reports of its code."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

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
