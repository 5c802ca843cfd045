"""Authentication and authorization, shared by both HTTP dialects.

A request is allowed when its token carries the scope AND its user has the permission
in the team (docs/api.md). Checks run in a fixed order, each with its own neutral
exception, which every dialect renders in its own words:

1. authenticate — ``TokenMissing`` / ``TokenInvalid`` / ``TokenExpired`` (401)
2. scope        — ``ScopeMissing`` (403, team API ``FORBIDDEN``)
3. membership   — ``NotMember`` (403, team API ``FORBIDDEN``)
4. permission   — ``PermissionDenied`` (403, team API ``PERMISSION_ERROR``)

The token and the membership are resolved in one read transaction. A dialect may keep
the result for at most ``PrincipalCache.ttl_seconds`` (1 s by default) in a
:class:`PrincipalCache`, so a busy client costs one lookup per second instead of one per
request; revoking a token, removing a membership or changing a role therefore takes
effect within that second (expiry is checked on every request). Nothing here knows
about HTTP frameworks; the dialects extract the secret (bearer header, ``OAUTH-TOKEN``
header, ``oauth_token`` cookie) and call :func:`resolve`. The session JWT that wraps a
sign-in token (the ``oauth_token`` cookie) is encoded and decoded here and nowhere else.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

import jwt

from backfill.domain.model import ROLE_PERMISSIONS, Permission, Role, Scope
from backfill.services.actor import Actor
from backfill.store import auth as auth_store
from backfill.store.clock import utcnow
from backfill.store.db import Database

SESSION_JWT_ALGORITHM = "HS256"

# ---- neutral errors ------------------------------------------------------------------


class AuthError(Exception):
    """Base of every authentication / authorization refusal."""

    status: ClassVar[int] = 401

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthenticated(AuthError):
    """No usable credentials (HTTP 401)."""

    status = 401


class TokenMissing(Unauthenticated):
    pass


class TokenInvalid(Unauthenticated):
    """Unknown, revoked or malformed token (or a session JWT with a bad signature)."""


class TokenExpired(Unauthenticated):
    pass


class ApiKeyInvalid(Unauthenticated):
    """Pipeline dialect: the ``X-API-KEY`` client key is missing, unknown or revoked."""


class Forbidden(AuthError):
    """Authenticated, but the token or the team membership does not allow it (HTTP 403)."""

    status = 403


class ScopeMissing(Forbidden):
    def __init__(self, message: str, *, scope: Scope) -> None:
        super().__init__(message)
        self.scope = scope


class NotMember(Forbidden):
    pass


class PermissionDenied(AuthError):
    """A member whose role lacks the permission (HTTP 403, team API ``PERMISSION_ERROR``)."""

    status = 403

    def __init__(self, message: str, *, permission: Permission) -> None:
        super().__init__(message)
        self.permission = permission


# ---- principal and access rules -----------------------------------------------------


@dataclass(frozen=True)
class Access:
    """What an operation needs: a token scope and a role permission."""

    scope: Scope
    permission: Permission


READ = Access(Scope.READ, Permission.VIEW)
WRITE = Access(Scope.WRITE, Permission.EDIT)
MANAGE = Access(Scope.ADMIN, Permission.MANAGE)


@dataclass(frozen=True)
class Principal:
    """The authenticated user, the token used, and the role in the requested team
    (``role`` is None when the user is not a member of ``team_id``)."""

    user_id: int
    token_id: int
    scopes: frozenset[str]
    team_id: int | None
    role: Role | None
    expires_at: datetime | None = None

    def has_scope(self, scope: Scope) -> bool:
        """``admin`` implies every scope."""
        return scope.value in self.scopes or Scope.ADMIN.value in self.scopes

    @property
    def permissions(self) -> frozenset[Permission]:
        return ROLE_PERMISSIONS[self.role] if self.role is not None else frozenset()

    @property
    def actor(self) -> Actor:
        if self.team_id is None:
            raise NotMember("no team selected")
        return Actor(team_id=self.team_id, user_id=self.user_id)


def bearer_secret(authorization: str | None) -> str | None:
    """The secret of an ``Authorization: Bearer <secret>`` header value, else None."""
    if not authorization:
        return None
    scheme, _, secret = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    secret = secret.strip()
    return secret or None


def resolve(
    db: Database,
    secret: str | None,
    *,
    team_id: int | None,
    default_team: bool = False,
    now: datetime | None = None,
) -> Principal:
    """Authenticate ``secret`` and look up the user's role in ``team_id`` (or, with
    ``default_team``, in the user's default team when ``team_id`` is None), in ONE read
    transaction. Raises ``TokenMissing`` / ``TokenInvalid`` / ``TokenExpired``."""
    if not secret:
        raise TokenMissing("authentication is required: send Authorization: Bearer <token>")
    if len(secret) > 512:
        raise TokenInvalid("the token is not valid")
    with db.read() as conn:
        info = auth_store.lookup_token(conn, secret)
        if info is None:
            raise TokenInvalid("the token is not valid (unknown or revoked)")
        if info.expired(now or utcnow()):
            raise TokenExpired("the token has expired")
        if team_id is None and default_team:
            found = auth_store.get_user(conn, info.user_id)["default_team_id"]
            team_id = int(found) if found is not None else None
        role = auth_store.role_in_team(conn, info.user_id, team_id) if team_id is not None else None
    return Principal(
        user_id=info.user_id,
        token_id=info.token_id,
        scopes=info.scopes,
        team_id=team_id,
        role=role,
        expires_at=info.expires_at,
    )


class PrincipalCache:
    """Successful resolutions kept for ``ttl_seconds`` (failures are never cached).

    Keyed by a hash of the secret and the team, bounded in size; the token's expiry is
    checked on every hit. Safe to share between threads (plain dict operations).
    """

    def __init__(self, ttl_seconds: float = 1.0, max_entries: int = 10_000) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[tuple[str, int | None], tuple[float, Principal]] = {}

    @staticmethod
    def _key(secret: str, team_id: int | None) -> tuple[str, int | None]:
        return hashlib.blake2b(secret.encode(), digest_size=16).hexdigest(), team_id

    def get(self, secret: str, team_id: int | None) -> Principal | None:
        if self.ttl_seconds <= 0:
            return None
        key = self._key(secret, team_id)
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored_at, principal = entry
        if time.monotonic() - stored_at > self.ttl_seconds:
            self._entries.pop(key, None)
            return None
        if principal.expires_at is not None and principal.expires_at <= utcnow():
            self._entries.pop(key, None)
            raise TokenExpired("the token has expired")
        return principal

    def put(self, secret: str, team_id: int | None, principal: Principal) -> None:
        """Remember ``principal`` as the resolution of (``secret``, requested ``team_id``)."""
        if self.ttl_seconds <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[self._key(secret, team_id)] = (time.monotonic(), principal)

    def clear(self) -> None:
        self._entries.clear()


def authorize(principal: Principal, access: Access) -> Principal:
    """Scope, then membership, then permission; returns the principal when allowed."""
    if not principal.has_scope(access.scope):
        raise ScopeMissing(f"the token lacks the scope {access.scope.value}", scope=access.scope)
    if principal.role is None:
        raise NotMember(
            f"you are not a member of team {principal.team_id}"
            if principal.team_id is not None
            else "you are not a member of this team"
        )
    if access.permission not in principal.permissions:
        raise PermissionDenied(
            f"your role {principal.role.value} lacks the permission {access.permission.value}",
            permission=access.permission,
        )
    return principal


def server_has_api_keys(db: Database) -> bool:
    """Whether any client key exists (then the pipeline dialect requires one)."""
    with db.read() as conn:
        return auth_store.any_api_key(conn)


def resolve_api_key(db: Database, key: str | None) -> int:
    """Pipeline dialect: the team id of a valid client key, else ``ApiKeyInvalid``."""
    if not key or len(key) > 512:
        raise ApiKeyInvalid("a valid X-API-KEY is required")
    with db.read() as conn:
        team_id = auth_store.lookup_api_key(conn, key)
    if team_id is None:
        raise ApiKeyInvalid("the API key is not valid (unknown or revoked)")
    return team_id


# ---- session JWT (the pipeline dialect's ``oauth_token`` cookie) ----------------------


def session_jwt(raw_token: str, expires: float, signing_secret: str) -> str:
    """An HS256 JWT ``{"expires": <unix seconds>, "token": <raw>}`` signed with the server
    secret (docs/api.md; key order as the seed's)."""
    return jwt.encode({"expires": expires, "token": raw_token}, signing_secret, algorithm=SESSION_JWT_ALGORITHM)


def token_from_session(value: str, signing_secret: str, *, now: datetime | None = None) -> str:
    """The raw token inside an ``oauth_token`` value: either the raw token itself or a
    session JWT signed with the server secret (checked, including ``expires``)."""
    if value.count(".") != 2:
        return value
    try:
        payload = jwt.decode(value, signing_secret, algorithms=[SESSION_JWT_ALGORITHM])
    except jwt.PyJWTError as exc:
        raise TokenInvalid("the session token is not valid") from exc
    raw = payload.get("token")
    expires = payload.get("expires")
    if not isinstance(raw, str) or not raw:
        raise TokenInvalid("the session token is not valid")
    if isinstance(expires, int | float) and expires <= (now or utcnow()).timestamp():
        raise TokenExpired("the session has expired; sign in again")
    return raw
