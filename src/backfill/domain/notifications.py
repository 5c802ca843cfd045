"""Webhook notifications of a backfill's end (docs/api.md): what a webhook is, which status
change is which event, the summary body, its signature and the retry schedule. Pure.

A webhook is ``{url, events, secret?}``: ``url`` http or https, ``events`` a non-empty
subset of ``completed``, ``failed``, ``cancelled`` (default all three). When ``secret`` is
set, the POST carries ``X-Backfill-Signature: sha256=<hex HMAC-SHA256 of the body>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from backfill.domain.errors import ValidationError
from backfill.domain.model import BackfillStatus

EVENTS = ("completed", "failed", "cancelled")
SIGNATURE_HEADER = "X-Backfill-Signature"
MAX_WEBHOOKS = 20
MAX_URL_LENGTH = 2000
MAX_SECRET_LENGTH = 500
ERROR_REPORT_HEAD = 5
ERROR_TEXT_HEAD = 300

# Delivery: first retry 5 s after a failed attempt, then doubling (capped at an hour), given
# up once the notification is 24 hours old.
FIRST_RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 3600.0
GIVE_UP_AFTER = timedelta(hours=24)


@dataclass(frozen=True)
class Webhook:
    url: str
    events: tuple[str, ...] = EVENTS
    secret: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url, "events": list(self.events)}
        if self.secret is not None:
            out["secret"] = self.secret
        return out


def event_of(status: BackfillStatus) -> str | None:
    """The event a backfill status change to ``status`` is, if any."""
    return status.value if status.value in EVENTS else None


def parse_webhooks(value: Any, field: str = "notify") -> tuple[Webhook, ...]:
    """Validate a list of webhooks; ValidationError naming ``field[i].key`` otherwise."""
    if value is None:
        return ()
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise ValidationError(f"{field} must be a list of webhooks {{url, events, secret}}", field=field)
    if len(value) > MAX_WEBHOOKS:
        raise ValidationError(f"{field} may list at most {MAX_WEBHOOKS} webhooks", field=field)
    return tuple(_webhook(item, f"{field}[{i}]", field) for i, item in enumerate(value))


def _webhook(item: Any, where: str, field: str) -> Webhook:
    if isinstance(item, Webhook):
        return item
    if not isinstance(item, Mapping):
        raise ValidationError(f"{where} must be an object {{url, events, secret}}", field=field)
    unknown = sorted(set(item) - {"url", "events", "secret"})
    if unknown:
        raise ValidationError(f"{where}: unknown key {unknown[0]!r}; allowed: url, events, secret", field=field)
    url = item.get("url")
    if not isinstance(url, str) or not url.strip():
        raise ValidationError(f"{where}.url is required: an http or https URL", field=field)
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > MAX_URL_LENGTH:
        raise ValidationError(f"{where}.url must be an http or https URL with a host, got {url[:100]!r}", field=field)
    events = item.get("events", list(EVENTS))
    if not isinstance(events, Sequence) or isinstance(events, str) or not events:
        raise ValidationError(f"{where}.events must be a non-empty list of: {', '.join(EVENTS)}", field=field)
    for event in events:
        if event not in EVENTS:
            raise ValidationError(f"{where}.events: unknown event {event!r}; use {', '.join(EVENTS)}", field=field)
    secret = item.get("secret")
    if secret is not None and (not isinstance(secret, str) or not secret or len(secret) > MAX_SECRET_LENGTH):
        raise ValidationError(f"{where}.secret must be a non-empty string of at most 500 characters", field=field)
    return Webhook(url=url, events=tuple(dict.fromkeys(events)), secret=secret)


def sign(secret: str, body: bytes) -> str:
    """The signature header value of ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    return header is not None and hmac.compare_digest(sign(secret, body), header)


def summary(
    *,
    event: str,
    backfill: Mapping[str, Any],
    pipeline_uuid: str,
    error_report: Sequence[tuple[str, str]],
    at: datetime,
) -> dict[str, Any]:
    """What is known when the event happens (the link and the text are added at delivery)."""
    return {
        "event": event,
        "occurred_at": at.isoformat().replace("+00:00", "Z"),
        "backfill": {
            "id": backfill["id"],
            "name": backfill["name"],
            "status": event.upper(),
            "pipeline": {"id": backfill["pipeline_id"], "uuid": pipeline_uuid},
            "runs_total": backfill["runs_total"],
            "runs_completed": backfill["runs_completed"],
            "runs_failed": backfill["runs_failed"],
            "runs_cancelled": backfill["runs_cancelled"],
            "runs_running": backfill["runs_running"],
        },
        "error_report": [
            {"data_date": date, "error": error[:ERROR_TEXT_HEAD]} for date, error in error_report[:ERROR_REPORT_HEAD]
        ],
        "errors_total": backfill["runs_failed"],
    }


def body(summary_: Mapping[str, Any], link: str) -> bytes:
    """The exact bytes POSTed: the summary, the web page link and a Slack-compatible text."""
    bf = summary_["backfill"]
    counts = f"{bf['runs_completed']} completed, {bf['runs_failed']} failed, {bf['runs_cancelled']} cancelled"
    text = f"Backfill #{bf['id']} {bf['name']!r} of {bf['pipeline']['uuid']} {summary_['event']}: "
    text += f"{counts} of {bf['runs_total']} intervals"
    first = summary_["error_report"][:1]
    if first:
        lines = (first[0]["error"] or "").splitlines()
        text += f". First error ({first[0]['data_date']}): {lines[0][:200] if lines else 'no message'}"
    text += f" <{link}|open>"
    return json.dumps({**summary_, "url": link, "text": text}, separators=(",", ":"), sort_keys=True).encode()


def retry_delay(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: 5, 10, 20, ... ≤ an hour."""
    return min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * float(2 ** max(0, attempts - 1)))


def next_attempt(created_at: datetime, attempts: int, now: datetime) -> datetime | None:
    """When to try again after a failed attempt, or None once the 24 hours are over."""
    when = now + timedelta(seconds=retry_delay(attempts))
    return when if when - created_at <= GIVE_UP_AFTER else None
