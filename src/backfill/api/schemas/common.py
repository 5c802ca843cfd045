"""Parts both HTTP dialects share: the base of request bodies, and response parts (they
render the same service results)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from backfill.domain.limits import non_finite_path


class JsonAction(BaseModel):
    """Base of every request body: unknown fields refused, strict types, and no ``NaN`` /
    ``Infinity`` anywhere (Python's JSON parser accepts them; JSON has no such numbers):
    typed numbers must be finite, and free-form values (``variables``) are searched."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _finite_json(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, dict | list):
            where = non_finite_path(value, info.field_name or "body")
            if where is not None:
                raise ValueError(f"NaN and Infinity are not valid JSON numbers (at {where})")
        return value


class BackfillMetrics(BaseModel):
    progress: float = Field(description="Finished runs / total runs, 0..1.")
    duration_mean_seconds: float | None
    duration_p95_seconds: float | None
    duration_total_seconds: float
    rows: int
    remaining_runs: int
    estimated_seconds_remaining: float | None
