"""Pipelines in the database: sync from a project directory, read back for workers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, RowMapping, func, select

from backfill.domain.errors import NotFound
from backfill.domain.model import BlockType
from backfill.domain.notifications import parse_webhooks
from backfill.domain.pipeline import Block, PipelineDefinition
from backfill.store.clock import utcnow
from backfill.store.tables import pipelines


def definition_to_json(p: PipelineDefinition) -> dict[str, Any]:
    return {
        "uuid": p.uuid,
        "name": p.name,
        "timezone": p.timezone,
        "variables": dict(p.variables),
        "retries": p.retries,
        "retry_delay_seconds": p.retry_delay_seconds,
        "timeout_seconds": p.timeout_seconds,
        "path": p.path,
        "notify": [h.to_json() for h in p.notify],
        "version": p.version,
        "blocks": [
            {
                "uuid": b.uuid,
                "type": b.type.value,
                "source": b.source,
                "upstream": list(b.upstream),
                "connection": b.connection,
                "path": b.path,
            }
            for b in p.blocks
        ],
    }


def definition_from_json(data: dict[str, Any], *, team_id: int | None = None) -> PipelineDefinition:
    return PipelineDefinition(
        uuid=data["uuid"],
        name=data["name"],
        team_id=team_id,
        timezone=data.get("timezone"),
        variables=data.get("variables") or {},
        retries=int(data.get("retries") or 0),
        retry_delay_seconds=float(data.get("retry_delay_seconds") or 0.0),
        timeout_seconds=data.get("timeout_seconds"),
        path=data.get("path"),
        notify=parse_webhooks(data.get("notify")),
        version=data.get("version"),
        blocks=tuple(
            Block(
                uuid=b["uuid"],
                type=BlockType(b["type"]),
                source=b["source"],
                upstream=tuple(b.get("upstream") or ()),
                connection=b.get("connection"),
                path=b.get("path"),
            )
            for b in data["blocks"]
        ),
    )


@dataclass(frozen=True)
class SyncResult:
    created: tuple[str, ...]
    updated: tuple[str, ...]


def sync(conn: Connection, definitions: Iterable[PipelineDefinition], *, default_team_id: int) -> SyncResult:
    """Insert or update each pipeline (keyed by team and uuid). Pipelines missing from
    disk are kept: their backfills and runs still refer to them."""
    created: list[str] = []
    updated: list[str] = []
    now = utcnow()
    for d in definitions:
        team_id = d.team_id or default_team_id
        values = {
            "name": d.name,
            "timezone": d.timezone,
            "variables": dict(d.variables),
            "retries": d.retries,
            "retry_delay_seconds": d.retry_delay_seconds,
            "timeout_seconds": d.timeout_seconds,
            "definition": definition_to_json(d),
            "path": d.path,
            "version": d.version,
            "updated_at": now,
        }
        existing = conn.execute(
            select(pipelines.c.id, pipelines.c.definition, pipelines.c.load_error).where(
                pipelines.c.team_id == team_id, pipelines.c.uuid == d.uuid
            )
        ).first()
        if existing is None:
            conn.execute(pipelines.insert().values(team_id=team_id, uuid=d.uuid, created_at=now, **values))
            created.append(d.uuid)
        elif existing.definition != values["definition"] or existing.load_error is not None:
            conn.execute(pipelines.update().where(pipelines.c.id == existing.id).values(load_error=None, **values))
            updated.append(d.uuid)
    return SyncResult(tuple(created), tuple(updated))


def record_load_errors(conn: Connection, errors: Mapping[str, str]) -> tuple[str, ...]:
    """Mark the stored pipelines whose ``pipeline.yaml`` (by path) no longer loads, with
    why; their definition — the last good version — is kept and keeps running. Returns
    the uuids marked now (those already marked with the same error are left alone)."""
    if not errors:
        return ()
    rows = conn.execute(
        select(pipelines.c.id, pipelines.c.uuid, pipelines.c.path, pipelines.c.load_error).where(
            pipelines.c.path.in_(list(errors))
        )
    ).all()
    marked: list[str] = []
    for row in rows:
        error = errors[row.path]
        if row.load_error != error:
            conn.execute(pipelines.update().where(pipelines.c.id == row.id).values(load_error=error))
            marked.append(row.uuid)
    return tuple(marked)


def get(conn: Connection, pipeline_id: int) -> RowMapping:
    row = conn.execute(select(pipelines).where(pipelines.c.id == pipeline_id)).mappings().first()
    if row is None:
        raise NotFound(f"pipeline {pipeline_id} not found")
    return row


def get_in_team(
    conn: Connection, team_id: int, *, pipeline_id: int | None = None, uuid: str | None = None
) -> RowMapping:
    q = select(pipelines).where(pipelines.c.team_id == team_id)
    if pipeline_id is not None:
        q = q.where(pipelines.c.id == pipeline_id)
    if uuid is not None:
        q = q.where(pipelines.c.uuid == uuid)
    row = conn.execute(q).mappings().first()
    if row is None:
        what = uuid if uuid is not None else pipeline_id
        raise NotFound(f"pipeline {what} not found")
    return row


def list_for_team(conn: Connection, team_id: int, *, limit: int = 100, offset: int = 0) -> list[RowMapping]:
    q = select(pipelines).where(pipelines.c.team_id == team_id).order_by(pipelines.c.uuid).limit(limit).offset(offset)
    return list(conn.execute(q).mappings())


def count_for_team(conn: Connection, team_id: int) -> int:
    return int(
        conn.execute(select(func.count()).select_from(pipelines).where(pipelines.c.team_id == team_id)).scalar_one()
    )


def definition(row: RowMapping) -> PipelineDefinition:
    return definition_from_json(row["definition"], team_id=row["team_id"])
