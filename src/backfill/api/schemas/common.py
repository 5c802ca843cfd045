"""Response parts both HTTP dialects share (they render the same service results)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class BackfillMetrics(BaseModel):
    progress: float = Field(description="Finished runs / total runs, 0..1.")
    duration_mean_seconds: float | None
    duration_p95_seconds: float | None
    duration_total_seconds: float
    rows: int
    remaining_runs: int
    estimated_seconds_remaining: float | None
