"""Pydantic models of the notifications route of the team API (docs/api.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from backfill.api.schemas.team import Meta, Timestamp
from backfill.api.schemas.webhooks import EventName


class NotificationAttempt(BaseModel):
    attempt: int
    started_time: Timestamp
    duration_seconds: float
    status_code: int | None = Field(description="HTTP status of the answer; null when none came.")
    error: str | None


class Notification(BaseModel):
    id: int
    transfer_backfill_id: int
    event: EventName
    url: str
    status: Literal["PENDING", "DELIVERED", "FAILED"] = Field(
        description="PENDING until delivered; FAILED once 24 hours of retries are over."
    )
    attempts: list[NotificationAttempt]
    created_time: Timestamp
    delivered_time: Timestamp | None
    next_attempt_time: Timestamp | None


class NotificationListResponse(BaseModel):
    meta: Meta
    data: list[Notification]
