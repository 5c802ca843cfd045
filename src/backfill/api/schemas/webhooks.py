"""The webhook of a backfill in request bodies of both dialects (docs/api.md)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EventName = Literal["completed", "failed", "cancelled"]


def _every_event() -> list[EventName]:
    return ["completed", "failed", "cancelled"]


class WebhookAction(BaseModel):
    """A webhook called when the backfill ends: ``POST url`` with a JSON summary."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, description="http or https URL.", examples=["https://hooks.example.com/x"])
    events: list[EventName] = Field(default_factory=_every_event, min_length=1, max_length=3)
    secret: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="When set, requests carry X-Backfill-Signature: sha256=<hex HMAC-SHA256 of the body>.",
    )


class Webhook(BaseModel):
    """A webhook of a backfill as responses show it: the secret is write-only."""

    url: str
    events: list[EventName]
    has_secret: bool = Field(description="Whether requests are signed (the secret itself is never shown).")


def webhooks_of(stored: list[dict[str, Any]] | None) -> list[Webhook]:
    """The webhooks of a backfill row's ``notify`` column, without their secrets."""
    return [Webhook(url=h["url"], events=h["events"], has_secret=bool(h.get("secret"))) for h in stored or []]


def webhooks_in(sent: list[WebhookAction] | None) -> list[dict[str, Any]]:
    """The webhooks of a request body as the services take them (``[]`` when none)."""
    return [h.model_dump(exclude_none=True) for h in sent or []]
