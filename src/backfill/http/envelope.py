"""The canonical response envelope (team API and web page, docs/api.md):
``{"meta":{"request_id"},"data":...}`` and ``{"meta":{"request_id"},"error":{...}}``."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"}, examples=["2024-02-01T09:00:00Z"])]


class Meta(BaseModel):
    """Metadata included in every API response."""

    request_id: str = Field(description="Unique identifier of the request, for tracking and debugging.")


class ErrorDetail(BaseModel):
    code: str = Field(
        description="Stable SCREAMING_SNAKE_CASE identifier: BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, "
        "PERMISSION_ERROR, NOT_FOUND, METHOD_NOT_ALLOWED, CONFLICT_ERROR, UNPROCESSABLE_ENTITY, "
        "PAYLOAD_TOO_LARGE, TOO_MANY_REQUESTS, INTERNAL_SERVER_ERROR, SERVICE_UNAVAILABLE.",
        examples=["NOT_FOUND"],
    )
    message: str = Field(description="Short, human-readable summary of the error.")
    description: str | None = Field(
        default=None, description="Optional longer explanation specific to this occurrence."
    )


class ErrorEnvelope(BaseModel):
    """Standard envelope returned by every error (4xx/5xx) response."""

    model_config = ConfigDict(extra="forbid")

    meta: Meta
    error: ErrorDetail
