"""The notification outbox (docs/api.md): rows written in the transaction of a backfill's
status change, claimed and delivered by the notifier (``engine.notifier``).

A row is ``pending`` until a delivery succeeds (``delivered``) or 24 hours of retries are
over (``failed``). A notifier holds a row it is delivering with a short lease, so a
notifier killed in the middle leaves it to the next one once the lease expires: delivery
is at least once. Every attempt is kept in ``notification_attempts``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, RowMapping, insert, or_, select, update

from backfill.domain import notifications as domain
from backfill.domain.model import BackfillStatus, is_calendar
from backfill.domain.timeparse import format_iso_z
from backfill.store.backfills import error_report
from backfill.store.tables import backfills, notification_attempts, notifications, pipelines

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


def webhooks_of(backfill_notify: Any, pipeline_definition: Any) -> tuple[domain.Webhook, ...]:
    """The backfill's own webhooks, then its pipeline's (``notify:`` in pipeline.yaml)."""
    own = domain.parse_webhooks(backfill_notify)
    inherited = domain.parse_webhooks((pipeline_definition or {}).get("notify"))
    return own + inherited


def enqueue(conn: Connection, backfill_id: int, status: BackfillStatus, now: datetime) -> int:
    """Write the notifications of a backfill that just became ``status`` (in the caller's
    transaction); returns how many. Nothing for a status that is not an event."""
    event = domain.event_of(status)
    if event is None:
        return 0
    row = (
        conn.execute(
            select(backfills, pipelines.c.uuid.label("pipeline_uuid"), pipelines.c.definition.label("definition"))
            .join(pipelines, pipelines.c.id == backfills.c.pipeline_id)
            .where(backfills.c.id == backfill_id)
        )
        .mappings()
        .one()
    )
    hooks = [h for h in webhooks_of(row["notify"], row["definition"]) if event in h.events]
    if not hooks:
        return 0
    calendar = is_calendar(row["interval_type"], row["cron"])
    zone = ZoneInfo(row["timezone"])

    def data_date(start: datetime) -> str:
        return start.astimezone(zone).date().isoformat() if calendar else format_iso_z(start)

    head = [
        (data_date(e["interval_start"]), e["error"] or "")
        for e in error_report(conn, backfill_id, limit=domain.ERROR_REPORT_HEAD)
    ]
    counters = {**row, "status": status.value}
    body = domain.summary(event=event, backfill=counters, pipeline_uuid=row["pipeline_uuid"], error_report=head, at=now)
    text = json.dumps(body, separators=(",", ":"), sort_keys=True)
    conn.execute(
        insert(notifications),
        [
            {
                "team_id": row["team_id"],
                "backfill_id": backfill_id,
                "event": event,
                "url": hook.url,
                "secret": hook.secret,
                "body": text,
                "status": PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for hook in hooks
        ],
    )
    return len(hooks)


@dataclass(frozen=True)
class Due:
    id: int
    backfill_id: int
    url: str
    secret: str | None
    summary: str
    attempts: int
    created_at: datetime


def claim_due(conn: Connection, now: datetime, *, limit: int, lease_seconds: float) -> list[Due]:
    """Take up to ``limit`` pending notifications whose time has come, for ``lease_seconds``."""
    q = (
        select(
            notifications.c.id,
            notifications.c.backfill_id,
            notifications.c.url,
            notifications.c.secret,
            notifications.c.body,
            notifications.c.attempts,
            notifications.c.created_at,
        )
        .where(
            notifications.c.status == PENDING,
            notifications.c.next_attempt_at <= now,
            or_(notifications.c.lease_expires_at.is_(None), notifications.c.lease_expires_at < now),
        )
        .order_by(notifications.c.next_attempt_at, notifications.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    due = [
        Due(int(r.id), int(r.backfill_id), r.url, r.secret, r.body, int(r.attempts), r.created_at)
        for r in conn.execute(q)
    ]
    if due:
        conn.execute(
            update(notifications)
            .where(notifications.c.id.in_([d.id for d in due]))
            .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
        )
    return due


def record_attempt(
    conn: Connection,
    due: Due,
    *,
    started_at: datetime,
    duration: float,
    status_code: int | None,
    error: str | None,
    now: datetime,
) -> str:
    """Keep an attempt and decide what comes next; returns the notification's status."""
    attempt = due.attempts + 1
    delivered = error is None and status_code is not None and 200 <= status_code < 300
    conn.execute(
        insert(notification_attempts).values(
            notification_id=due.id,
            attempt=attempt,
            started_at=started_at,
            duration=duration,
            status_code=status_code,
            error=(error or None) and error[:1000],
        )
    )
    values: dict[str, Any] = {"attempts": attempt, "lease_expires_at": None}
    if delivered:
        values.update(status=DELIVERED, delivered_at=now, next_attempt_at=None)
    else:
        later = domain.next_attempt(due.created_at, attempt, now)
        values.update(status=PENDING if later is not None else FAILED, next_attempt_at=later)
    conn.execute(update(notifications).where(notifications.c.id == due.id).values(**values))
    return str(values["status"])


def of_backfill(conn: Connection, backfill_id: int) -> list[tuple[RowMapping, list[RowMapping]]]:
    """The notifications of a backfill (oldest first), each with its attempts."""
    rows = list(
        conn.execute(
            select(notifications).where(notifications.c.backfill_id == backfill_id).order_by(notifications.c.id)
        ).mappings()
    )
    if not rows:
        return []
    attempts: dict[int, list[RowMapping]] = {}
    q = (
        select(notification_attempts)
        .where(notification_attempts.c.notification_id.in_([r["id"] for r in rows]))
        .order_by(notification_attempts.c.notification_id, notification_attempts.c.attempt)
    )
    for a in conn.execute(q).mappings():
        attempts.setdefault(int(a["notification_id"]), []).append(a)
    return [(r, attempts.get(int(r["id"]), [])) for r in rows]
