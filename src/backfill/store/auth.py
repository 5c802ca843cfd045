"""Teams, users, memberships, tokens and API keys.

Secrets are random and shown once; only their SHA-256 is stored (they carry 256 bits
of entropy, so a slow hash adds nothing). Passwords are hashed with argon2.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, RowMapping, delete, insert, select, update

from backfill.domain.errors import NotFound, ValidationError
from backfill.domain.model import Role, Scope
from backfill.store.clock import utcnow
from backfill.store.tables import api_keys, memberships, teams, tokens, users

_hasher = PasswordHasher()
DEFAULT_SCOPES = (Scope.READ, Scope.WRITE)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def create_team(conn: Connection, name: str) -> int:
    if not name.strip():
        raise ValidationError("team name must not be empty", field="name")
    result = conn.execute(insert(teams).values(name=name.strip(), created_at=utcnow()).returning(teams.c.id))
    return int(result.scalar_one())


def get_team(conn: Connection, team_id: int) -> RowMapping:
    row = conn.execute(select(teams).where(teams.c.id == team_id)).mappings().first()
    if row is None:
        raise NotFound(f"team {team_id} not found", field="team")
    return row


def create_user(conn: Connection, email: str, *, team_id: int, role: Role, password: str | None = None) -> int:
    """Create the user (or reuse the existing one with that email) and add the membership."""
    email = email.strip().lower()
    if "@" not in email:
        raise ValidationError(f"{email!r} is not an email address", field="email")
    get_team(conn, team_id)
    existing = conn.execute(select(users.c.id).where(users.c.email == email)).scalar()
    now = utcnow()
    if existing is None:
        user_id = int(
            conn.execute(
                insert(users)
                .values(
                    email=email,
                    password_hash=_hasher.hash(password) if password else None,
                    default_team_id=team_id,
                    created_at=now,
                )
                .returning(users.c.id)
            ).scalar_one()
        )
    else:
        user_id = int(existing)
        if password:
            conn.execute(users.update().where(users.c.id == user_id).values(password_hash=_hasher.hash(password)))
    member = conn.execute(
        select(memberships.c.role).where(memberships.c.user_id == user_id, memberships.c.team_id == team_id)
    ).first()
    if member is None:
        conn.execute(insert(memberships).values(user_id=user_id, team_id=team_id, role=role.value, created_at=now))
    else:
        conn.execute(
            memberships.update()
            .where(memberships.c.user_id == user_id, memberships.c.team_id == team_id)
            .values(role=role.value)
        )
    return user_id


def get_user(conn: Connection, user_id: int) -> RowMapping:
    row = conn.execute(select(users).where(users.c.id == user_id)).mappings().first()
    if row is None:
        raise NotFound(f"user {user_id} not found", field="user")
    return row


def verify_password(conn: Connection, email: str, password: str) -> RowMapping | None:
    row = conn.execute(select(users).where(users.c.email == email.strip().lower())).mappings().first()
    if row is None or not row["password_hash"]:
        _hasher.hash(password)  # same work either way: do not reveal which emails exist
        return None
    try:
        _hasher.verify(row["password_hash"], password)
    except (VerificationError, InvalidHashError):
        return None
    return row


def role_in_team(conn: Connection, user_id: int, team_id: int) -> Role | None:
    role = conn.execute(
        select(memberships.c.role).where(memberships.c.user_id == user_id, memberships.c.team_id == team_id)
    ).scalar()
    return Role(role) if role else None


@dataclass(frozen=True)
class IssuedSecret:
    id: int
    secret: str


def create_token(
    conn: Connection,
    user_id: int,
    *,
    scopes: Iterable[Scope] = DEFAULT_SCOPES,
    expires_in: timedelta | None = None,
) -> IssuedSecret:
    get_user(conn, user_id)
    scope_values = sorted({Scope(s).value for s in scopes})
    if not scope_values:
        raise ValidationError("a token needs at least one scope", field="scope")
    secret = new_secret()
    now = utcnow()
    token_id = conn.execute(
        insert(tokens)
        .values(
            user_id=user_id,
            token_hash=hash_secret(secret),
            scopes=scope_values,
            expires_at=now + expires_in if expires_in else None,
            created_at=now,
        )
        .returning(tokens.c.id)
    ).scalar_one()
    return IssuedSecret(int(token_id), secret)


@dataclass(frozen=True)
class TokenInfo:
    token_id: int
    user_id: int
    scopes: frozenset[str]
    expires_at: datetime | None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


def lookup_token(conn: Connection, secret: str) -> TokenInfo | None:
    """The token for this secret (matched by its hash, an indexed equality), or None."""
    row = conn.execute(
        select(tokens.c.id, tokens.c.user_id, tokens.c.scopes, tokens.c.expires_at).where(
            tokens.c.token_hash == hash_secret(secret), tokens.c.revoked_at.is_(None)
        )
    ).first()
    if row is None:
        return None
    return TokenInfo(int(row.id), int(row.user_id), frozenset(row.scopes), row.expires_at)


def create_api_key(conn: Connection, team_id: int, *, name: str | None = None) -> IssuedSecret:
    get_team(conn, team_id)
    secret = new_secret()
    key_id = conn.execute(
        insert(api_keys)
        .values(team_id=team_id, name=name, key_hash=hash_secret(secret), created_at=utcnow())
        .returning(api_keys.c.id)
    ).scalar_one()
    return IssuedSecret(int(key_id), secret)


def lookup_api_key(conn: Connection, secret: str) -> int | None:
    """The team id of a valid API key, or None."""
    team_id = conn.execute(
        select(api_keys.c.team_id).where(api_keys.c.key_hash == hash_secret(secret), api_keys.c.revoked_at.is_(None))
    ).scalar()
    return int(team_id) if team_id is not None else None


def any_api_key(conn: Connection) -> bool:
    return conn.execute(select(api_keys.c.id).where(api_keys.c.revoked_at.is_(None)).limit(1)).first() is not None


def revoke_token(conn: Connection, token_id: int) -> bool:
    """Mark the token revoked (idempotent); False when no such token exists."""
    exists = conn.execute(select(tokens.c.id).where(tokens.c.id == token_id)).first() is not None
    if exists:
        conn.execute(
            update(tokens).where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None)).values(revoked_at=utcnow())
        )
    return exists


def revoke_api_key(conn: Connection, key_id: int) -> bool:
    """Mark the client key revoked (idempotent); False when no such key exists."""
    exists = conn.execute(select(api_keys.c.id).where(api_keys.c.id == key_id)).first() is not None
    if exists:
        conn.execute(
            update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)).values(revoked_at=utcnow())
        )
    return exists


def delete_expired_tokens(conn: Connection, user_id: int, *, before: datetime) -> int:
    """Delete the user's tokens that expired before ``before``; how many were deleted."""
    result = conn.execute(delete(tokens).where(tokens.c.user_id == user_id, tokens.c.expires_at < before))
    return int(result.rowcount or 0)


def live_tokens_of_team(conn: Connection, team_id: int, now: datetime) -> list[RowMapping]:
    """The usable (not revoked, not expired) tokens of the team's members, oldest first;
    never the secret or its hash."""
    query = (
        select(
            tokens.c.id,
            tokens.c.user_id,
            users.c.email,
            tokens.c.scopes,
            tokens.c.created_at,
            tokens.c.expires_at,
        )
        .join(users, users.c.id == tokens.c.user_id)
        .join(memberships, (memberships.c.user_id == tokens.c.user_id) & (memberships.c.team_id == team_id))
        .where(tokens.c.revoked_at.is_(None), (tokens.c.expires_at.is_(None)) | (tokens.c.expires_at > now))
        .order_by(tokens.c.id)
    )
    return list(conn.execute(query).mappings())


def token_of_team(conn: Connection, token_id: int, team_id: int) -> bool:
    """Whether the token belongs to a member of the team."""
    query = (
        select(tokens.c.id)
        .join(memberships, (memberships.c.user_id == tokens.c.user_id) & (memberships.c.team_id == team_id))
        .where(tokens.c.id == token_id)
    )
    return conn.execute(query).first() is not None


def teams_of_user(conn: Connection, user_id: int) -> list[RowMapping]:
    """The user's memberships: team id, name and role, by team id."""
    query = (
        select(teams.c.id, teams.c.name, memberships.c.role)
        .join(memberships, memberships.c.team_id == teams.c.id)
        .where(memberships.c.user_id == user_id)
        .order_by(teams.c.id)
    )
    return list(conn.execute(query).mappings())
