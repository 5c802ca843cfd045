"""Notifications of a backfill (docs/api.md) as a use case: what was sent where, and how each
delivery attempt went."""

from __future__ import annotations

from sqlalchemy import RowMapping

from backfill.services.actor import Actor
from backfill.store import backfills as backfill_store
from backfill.store import notifications as outbox
from backfill.store.db import Database


def of_backfill(db: Database, actor: Actor, backfill_id: int) -> list[tuple[RowMapping, list[RowMapping]]]:
    """The notifications of a backfill of the actor's team (NotFound otherwise)."""
    with db.read() as conn:
        backfill_store.get(conn, backfill_id, team_id=actor.team_id)
        return outbox.of_backfill(conn, backfill_id)
