"""Read use cases of pipelines (their definitions are synced from the project directory
by ``services.bootstrap``). Each is one read transaction."""

from __future__ import annotations

from sqlalchemy import RowMapping

from backfill.services.actor import Actor
from backfill.services.pages import Page
from backfill.store import pipelines as store
from backfill.store.db import Database


def list_pipelines(db: Database, actor: Actor, *, limit: int = 100, offset: int = 0) -> Page:
    with db.read() as conn:
        rows = store.list_for_team(conn, actor.team_id, limit=limit, offset=offset)
        return Page(rows, store.count_for_team(conn, actor.team_id))


def get_pipeline(db: Database, actor: Actor, pipeline_id: int | None = None, *, uuid: str | None = None) -> RowMapping:
    """The team's pipeline by id or by uuid; ``NotFound`` when absent or in another team."""
    with db.read() as conn:
        return store.get_in_team(conn, actor.team_id, pipeline_id=pipeline_id, uuid=uuid)
