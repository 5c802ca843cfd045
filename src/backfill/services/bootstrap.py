"""First start of a server: schema, default team, owner, token, pipelines."""

from __future__ import annotations

import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from backfill.domain.model import Role, Scope
from backfill.pipelines.loader import ProjectLoad
from backfill.services import pipeline_sync
from backfill.store import auth
from backfill.store.db import Database
from backfill.store.tables import teams

log = logging.getLogger("backfill.bootstrap")

DEFAULT_EMAIL = "owner@localhost"


@dataclass(frozen=True)
class Credentials:
    url: str
    team_id: int
    user_id: int
    email: str
    token: str
    password: str | None = None


def default_team_id(db: Database) -> int | None:
    with db.read() as conn:
        found = conn.execute(select(func.min(teams.c.id))).scalar()
    return int(found) if found is not None else None


def ensure_default_team(db: Database, credentials_path: Path, url: str) -> Credentials | None:
    """On first start (no team yet): create a team, an owner and a token, and write
    them to ``credentials_path`` (mode 0600). Returns the new credentials, else None."""
    if default_team_id(db) is not None:
        return None
    password = secrets.token_urlsafe(12)
    with db.write() as conn:
        team_id = auth.create_team(conn, "default")
        user_id = auth.create_user(conn, DEFAULT_EMAIL, team_id=team_id, role=Role.OWNER, password=password)
        token = auth.create_token(conn, user_id, scopes=(Scope.READ, Scope.WRITE, Scope.ADMIN))
    creds = Credentials(
        url=url, team_id=team_id, user_id=user_id, email=DEFAULT_EMAIL, token=token.secret, password=password
    )
    write_credentials(credentials_path, creds)
    return creds


def write_credentials(path: Path, creds: Credentials) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(creds.__dict__, fh, indent=2)
    path.chmod(0o600)


def sync_project(db: Database, project_dir: Path, *, team_id: int) -> ProjectLoad:
    """Load the project's pipelines and store them; invalid files are logged, not fatal
    (a pipeline that stops loading keeps its last good version: ``services.pipeline_sync``)."""
    report = pipeline_sync.sync_project(db, project_dir, team_id=team_id)
    log.info(
        "pipelines synced from %s: %d created, %d updated, %d rejected",
        project_dir,
        len(report.result.created),
        len(report.result.updated),
        len(report.loaded.errors),
    )
    return report.loaded
