"""``GET /v1/teams/{team_id}/backfills/{backfill_id}/notifications`` (docs/api.md): the webhook
notifications of a backfill and their delivery attempts. Translation only."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter
from sqlalchemy import RowMapping
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from backfill.api.params import BackfillId
from backfill.api.rendering import iso_z
from backfill.api.schemas import notifications as s
from backfill.api.team_api import ERROR_RESPONSES, ReadCall, ok
from backfill.api.team_api import router as team_router
from backfill.domain.timeparse import format_iso_z
from backfill.services import notifications

# The team in the path is checked once, by the team API's router dependency.
router = APIRouter(prefix="/v1", tags=["team API"], responses=ERROR_RESPONSES, dependencies=team_router.dependencies)


@router.get(
    "/teams/{team_id}/backfills/{backfill_id}/notifications",
    response_model=s.NotificationListResponse,
    summary="Webhook notifications of a backfill with their delivery attempts",
    description="One entry per (webhook, event): COMPLETED, FAILED and CANCELLED backfills notify the webhooks "
    "of the backfill (`notify`) and of its transfer (`notify:` in pipeline.yaml) that asked for the event. "
    "Retried 5 s after a failed attempt, then doubling, for 24 hours. Secrets are never shown.",
)
async def list_notifications(call: ReadCall, backfill_id: BackfillId) -> Response:
    found = await run_in_threadpool(notifications.of_backfill, call.db, call.actor, backfill_id)
    return ok(call, s.NotificationListResponse, [render(row, attempts) for row, attempts in found])


def render(row: RowMapping, attempts: Sequence[RowMapping]) -> s.Notification:
    return s.Notification(
        id=row["id"],
        transfer_backfill_id=row["backfill_id"],
        event=row["event"],
        url=row["url"],
        status=row["status"].upper(),
        attempts=[
            s.NotificationAttempt(
                attempt=a["attempt"],
                started_time=format_iso_z(a["started_at"]),
                duration_seconds=round(a["duration"], 6),
                status_code=a["status_code"],
                error=a["error"],
            )
            for a in attempts
        ],
        created_time=format_iso_z(row["created_at"]),
        delivered_time=iso_z(row["delivered_at"]),
        next_attempt_time=iso_z(row["next_attempt_at"]) if row["status"] == "pending" else None,
    )
