"""Test data builders shared by the suites."""

from __future__ import annotations

from backfill.domain.model import BlockType
from backfill.domain.pipeline import Block, PipelineDefinition
from backfill.services.actor import Actor
from backfill.store import pipelines as pipeline_store
from backfill.store.db import Database


def python_pipeline(
    uuid_: str = "noop", source: str = "def run(context):\n    return {'rows': 1}\n", **kw: object
) -> PipelineDefinition:
    return PipelineDefinition(
        uuid=uuid_,
        name=uuid_,
        blocks=(Block(uuid="main", type=BlockType.PYTHON, source=source),),
        **kw,  # type: ignore[arg-type]
    )


def add_pipeline(db: Database, actor: Actor, definition: PipelineDefinition) -> int:
    with db.write() as conn:
        pipeline_store.sync(conn, [definition], default_team_id=actor.team_id)
        return int(pipeline_store.get_in_team(conn, actor.team_id, uuid=definition.uuid)["id"])
