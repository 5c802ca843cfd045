"""Pipeline and block value objects and the DAG rules over them (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from backfill.domain.errors import ValidationError
from backfill.domain.model import BlockType
from backfill.domain.notifications import Webhook


@dataclass(frozen=True)
class Block:
    """One step of a pipeline.

    ``source`` holds what the block runs: python source code (python), the SQL text
    (sql, possibly a Jinja2 template) or the command line (shell, a Jinja2 template).
    ``path`` is the file it came from, if any, for error messages and tracebacks.
    """

    uuid: str
    type: BlockType
    source: str
    upstream: tuple[str, ...] = ()
    connection: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class PipelineDefinition:
    uuid: str
    name: str
    blocks: tuple[Block, ...]
    team_id: int | None = None
    timezone: str | None = None
    variables: Mapping[str, Any] = field(default_factory=dict)
    retries: int = 0
    retry_delay_seconds: float = 30.0
    timeout_seconds: float | None = None
    path: str | None = None
    notify: tuple[Webhook, ...] = ()  # webhooks of every backfill of the pipeline (docs/api.md)
    version: str | None = None
    """Content digest of the pipeline's files (``pipeline_version`` on every attempt)."""

    def block(self, uuid: str) -> Block:
        for b in self.blocks:
            if b.uuid == uuid:
                return b
        raise ValidationError(f"unknown block {uuid!r} in pipeline {self.uuid!r}", field="block_uuid")

    @property
    def block_uuids(self) -> tuple[str, ...]:
        return tuple(b.uuid for b in self.blocks)


def check_dag(blocks: Iterable[Block]) -> None:
    """Raise ValidationError for duplicate uuids, unknown upstreams or a cycle."""
    order_blocks(tuple(blocks))


def order_blocks(blocks: tuple[Block, ...]) -> tuple[Block, ...]:
    """Topological order (Kahn), stable in declaration order among ready blocks."""
    by_uuid: dict[str, Block] = {}
    for b in blocks:
        if b.uuid in by_uuid:
            raise ValidationError(f"duplicate block uuid {b.uuid!r}", field="blocks")
        by_uuid[b.uuid] = b
    for b in blocks:
        for up in b.upstream:
            if up not in by_uuid:
                raise ValidationError(f"block {b.uuid!r} has unknown upstream {up!r}", field="upstream")
    indegree = {b.uuid: len(set(b.upstream)) for b in blocks}
    ordered: list[Block] = []
    ready = [b for b in blocks if indegree[b.uuid] == 0]
    while ready:
        current = ready.pop(0)
        ordered.append(current)
        for b in blocks:
            if current.uuid in b.upstream:
                indegree[b.uuid] -= 1
                if indegree[b.uuid] == 0:
                    ready.append(b)
    if len(ordered) != len(blocks):
        stuck = sorted(u for u, d in indegree.items() if d > 0)
        raise ValidationError(f"blocks form a cycle: {', '.join(stuck)}", field="upstream")
    return tuple(ordered)


def ancestors(pipeline: PipelineDefinition, uuid: str) -> set[str]:
    """All blocks upstream of ``uuid`` (transitively), excluding itself."""
    pipeline.block(uuid)
    seen: set[str] = set()
    stack = list(pipeline.block(uuid).upstream)
    while stack:
        u = stack.pop()
        if u not in seen:
            seen.add(u)
            stack.extend(pipeline.block(u).upstream)
    return seen


def descendants(pipeline: PipelineDefinition, uuid: str) -> set[str]:
    """All blocks downstream of ``uuid`` (transitively), excluding itself."""
    pipeline.block(uuid)
    seen: set[str] = set()
    stack = [uuid]
    while stack:
        u = stack.pop()
        for b in pipeline.blocks:
            if u in b.upstream and b.uuid not in seen:
                seen.add(b.uuid)
                stack.append(b.uuid)
    return seen


def select_from_block(pipeline: PipelineDefinition, uuid: str) -> tuple[str, ...]:
    """``block_uuid: X`` → X and everything downstream of X, in topological order."""
    wanted = {uuid} | descendants(pipeline, uuid)
    return tuple(b.uuid for b in order_blocks(pipeline.blocks) if b.uuid in wanted)


def add_upstream_for_block(
    pipeline: PipelineDefinition, selection: tuple[str, ...] | None, uuid: str
) -> tuple[str, ...]:
    """``add_upstream_for_block_uuid: X`` → selection ∪ {X} ∪ ancestors(X).

    A null selection (all blocks) becomes exactly X and its ancestors.
    """
    wanted = {uuid} | ancestors(pipeline, uuid)
    if selection is not None:
        for u in selection:
            pipeline.block(u)
        wanted |= set(selection)
    return tuple(b.uuid for b in order_blocks(pipeline.blocks) if b.uuid in wanted)


def validate_selection(pipeline: PipelineDefinition, selection: Iterable[str] | None) -> tuple[str, ...] | None:
    """Check that every selected block exists; return the selection in topological order."""
    if selection is None:
        return None
    wanted = set(selection)
    for u in wanted:
        pipeline.block(u)
    return tuple(b.uuid for b in order_blocks(pipeline.blocks) if b.uuid in wanted)


def selected_blocks(pipeline: PipelineDefinition, selection: Iterable[str] | None) -> tuple[Block, ...]:
    """The blocks a run executes, in topological order (None = all)."""
    ordered = order_blocks(pipeline.blocks)
    if selection is None:
        return ordered
    wanted = set(selection)
    for u in wanted:
        pipeline.block(u)
    return tuple(b for b in ordered if b.uuid in wanted)
