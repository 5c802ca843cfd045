"""Use cases of the commands that write the database directly (``backfill admin``,
``backfill pipelines``): open an existing database, manage teams, users, tokens and API
keys, store and list the project's pipelines."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from backfill.domain.errors import DomainError, PipelineFileError
from backfill.domain.model import Role, Scope
from backfill.services import bootstrap, pipeline_sync
from backfill.store import auth
from backfill.store import pipelines as pipeline_store
from backfill.store.db import Database, normalize_url
from backfill.store.migrate import schema_present


class DatabaseNotReady(DomainError):
    """The database is absent, unreachable or has no schema yet (one line, no traceback)."""


def shown_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(normalize_url(url)).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def open_existing(url: str) -> Database:
    """Open a database that a server (or ``backfill migrate``) has already created.

    Never creates anything: a missing SQLite file, an unreachable server or a database
    without the schema raise :class:`DatabaseNotReady` saying what to do."""
    try:
        parsed = make_url(normalize_url(url))
    except ArgumentError:
        example = "e.g. sqlite:///path.db or postgresql://host/db"
        raise DatabaseNotReady(f"{url!r} is not a database URL ({example})") from None
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        if not parsed.database or not path.is_file():
            raise DatabaseNotReady(
                f"no database at {path or url}: run `backfill serve` in this directory once, "
                "or pass --db URL (or set BACKFILL_DATABASE_URL) to use another one"
            )
    try:
        db = Database(url)
    except (ArgumentError, ValueError, ImportError) as exc:
        raise DatabaseNotReady(f"cannot open database {shown_url(url)}: {exc}") from None
    try:
        present = schema_present(db)
    except SQLAlchemyError as exc:
        db.dispose()
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
        raise DatabaseNotReady(f"cannot read database {shown_url(url)}: {reason}") from None
    if not present:
        db.dispose()
        raise DatabaseNotReady(
            f"database {shown_url(url)} has no backfill schema yet: run `backfill migrate` (or `backfill serve`)"
        )
    return db


def default_team(db: Database) -> int:
    team_id = bootstrap.default_team_id(db)
    if team_id is None:
        raise DatabaseNotReady("no team yet: run `backfill serve` once or `backfill admin create-team --name N`")
    return team_id


def create_team(db: Database, name: str) -> int:
    with db.write() as conn:
        return auth.create_team(conn, name)


def create_user(db: Database, email: str, *, team_id: int, role: Role, password: str | None) -> int:
    with db.write() as conn:
        return auth.create_user(conn, email, team_id=team_id, role=role, password=password)


def create_token(
    db: Database, user_id: int, *, scopes: Iterable[Scope] | None, expires_in: timedelta | None
) -> auth.IssuedSecret:
    with db.write() as conn:
        return auth.create_token(conn, user_id, scopes=scopes or auth.DEFAULT_SCOPES, expires_in=expires_in)


def create_api_key(db: Database, team_id: int, *, name: str | None) -> auth.IssuedSecret:
    with db.write() as conn:
        auth.get_team(conn, team_id)
        return auth.create_api_key(conn, team_id, name=name)


@dataclass(frozen=True)
class ProjectSync:
    created: tuple[str, ...]
    updated: tuple[str, ...]
    errors: tuple[PipelineFileError, ...]


def sync_pipelines(db: Database, project_dir: Path) -> ProjectSync:
    """Store the valid pipelines of ``project_dir`` (in the default team unless a
    pipeline names its own) and report the invalid files; a stored pipeline whose files no
    longer load keeps its last good version, marked with the reason (``pipeline_sync``)."""
    report = pipeline_sync.sync_project(db, project_dir, team_id=default_team(db))
    return ProjectSync(report.result.created, report.result.updated, report.loaded.errors)


def list_pipelines(db: Database, team_id: int | None) -> list[dict[str, Any]]:
    """The pipelines stored for ``team_id`` (default: the first team)."""
    team = team_id if team_id is not None else default_team(db)
    with db.read() as conn:
        auth.get_team(conn, team)
        rows = pipeline_store.list_for_team(conn, team, limit=1000)
    return [
        {"id": r["id"], "uuid": r["uuid"], "name": r["name"], "blocks": len(r["definition"]["blocks"])} for r in rows
    ]
