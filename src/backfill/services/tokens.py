"""Who am I, and revoking credentials (docs/api.md "More routes", ``backfill admin revoke-*``).

A revoked token or client key is refused from the next request on in the process that
revoked it (the adapters drop their principal caches) and within a second elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import RowMapping

from backfill.domain.errors import NotFound
from backfill.services.actor import Actor
from backfill.store import auth as auth_store
from backfill.store.clock import utcnow
from backfill.store.db import Database


@dataclass(frozen=True)
class Me:
    user_id: int
    email: str
    token_id: int
    scopes: frozenset[str]
    expires_at: datetime | None
    teams: list[RowMapping]


def me(db: Database, *, user_id: int, token_id: int, scopes: frozenset[str], expires_at: datetime | None) -> Me:
    """The user behind a verified token, that token, and the user's teams with roles."""
    with db.read() as conn:
        user = auth_store.get_user(conn, user_id)
        teams = auth_store.teams_of_user(conn, user_id)
    return Me(user_id, str(user["email"]), token_id, scopes, expires_at, teams)


def team_tokens(db: Database, actor: Actor) -> list[RowMapping]:
    """The usable tokens of the team's members (never a secret)."""
    with db.read() as conn:
        return auth_store.live_tokens_of_team(conn, actor.team_id, utcnow())


def revoke_team_token(db: Database, actor: Actor, token_id: int) -> None:
    """Revoke a token of a member of the actor's team; ``NotFound`` for any other token."""
    with db.write() as conn:
        if not auth_store.token_of_team(conn, token_id, actor.team_id):
            raise NotFound(f"token {token_id} not found", field="token_id")
        auth_store.revoke_token(conn, token_id)


def revoke_token(db: Database, token_id: int) -> None:
    """Revoke any token by id (operator command); ``NotFound`` when there is none."""
    with db.write() as conn:
        if not auth_store.revoke_token(conn, token_id):
            raise NotFound(f"token {token_id} not found", field="id")


def revoke_api_key(db: Database, key_id: int) -> None:
    """Revoke a client key by id (operator command); ``NotFound`` when there is none."""
    with db.write() as conn:
        if not auth_store.revoke_api_key(conn, key_id):
            raise NotFound(f"API key {key_id} not found", field="id")
