"""Response parts both HTTP dialects share (they render the same service results)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from backfill.api.rendering import ERROR_TEXT_LIMIT

# The error of a failed interval in an error report (``rendering.error_text``).
ErrorText = Annotated[str, Field(description=f"Error of its latest attempt (at most {ERROR_TEXT_LIMIT} characters).")]


class PipelineAttributes(BaseModel):
    """What both dialects show of a pipeline (a transfer in the team API) under one name."""

    id: int
    uuid: str
    name: str
    timezone: str | None
    variables: dict[str, Any]
    retries: int
    retry_delay_seconds: float
    timeout_seconds: float | None
    version: str | None = Field(description="Digest of pipeline.yaml and its block files, as synced.")
    load_error: str | None = Field(
        description="Why the files on disk do not load now; the last good version (this one) keeps running."
    )


class BackfillMetrics(BaseModel):
    progress: float = Field(
        description="Finished (completed + failed) intervals / intervals that will run (the total minus the "
        "cancelled ones), 0..1."
    )
    finished_runs: int = Field(description="Completed + failed intervals.")
    runs_to_run: int = Field(description="Intervals that will run: the total minus the cancelled ones.")
    duration_mean_seconds: float | None
    duration_p95_seconds: float | None
    duration_total_seconds: float
    rows: int
    remaining_runs: int = Field(description="Intervals still to finish; 0 once the backfill is final or failed.")
    runs_per_second: float | None = Field(description="Recent completion rate (the latest 50 finishes up to now).")
    estimated_seconds_remaining: float | None = Field(
        description="remaining_runs / runs_per_second; null while paused, not running, or before 3 runs finished."
    )
