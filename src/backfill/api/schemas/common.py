"""Response parts both HTTP dialects share (they render the same service results)."""

from __future__ import annotations

from pydantic import BaseModel, Field


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
