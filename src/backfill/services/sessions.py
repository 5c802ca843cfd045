"""Sign-in of the pipeline dialect (``POST /api/sessions``, SPEC §5).

Email + password → a new API token of the user (a real token row: read + write scopes,
expiring after ``SESSION_LIFETIME``) wrapped in an HS256 JWT ``{"expires": <unix seconds>,
"token": <raw token>}`` signed with the server secret — the value of the ``oauth_token``
cookie. Only hashes of tokens are stored, so an existing session token cannot be handed
out again: every sign-in issues a new one (each expires on its own, and can be revoked
like any token).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from sqlalchemy import RowMapping

from backfill.domain.errors import AuthenticationFailed
from backfill.domain.model import Scope
from backfill.store import auth
from backfill.store.clock import utcnow
from backfill.store.db import Database

SESSION_LIFETIME = timedelta(days=30)
SESSION_SCOPES = (Scope.READ, Scope.WRITE)
SESSION_JWT_ALGORITHM = "HS256"


class InvalidCredentials(AuthenticationFailed):
    """Unknown email, wrong password, or a user without a password (adapters: 401)."""


@dataclass(frozen=True)
class Session:
    jwt: str
    token: str  # the raw bearer token inside the JWT (the team API takes it as is)
    expires: float  # unix seconds, the same instant as the token row's expiry
    token_id: int
    user: RowMapping


def session_jwt(raw_token: str, expires: float, signing_secret: str) -> str:
    """``{"expires": <unix seconds>, "token": <raw>}`` signed HS256 (key order as the seed's)."""
    return jwt.encode({"expires": expires, "token": raw_token}, signing_secret, algorithm=SESSION_JWT_ALGORITHM)


def login(
    db: Database,
    email: str,
    password: str,
    *,
    signing_secret: str,
    lifetime: timedelta = SESSION_LIFETIME,
) -> Session:
    """Verify the credentials and issue a session; ``InvalidCredentials`` otherwise.

    The password check (argon2, deliberately slow) runs in a read transaction so it does
    not hold the SQLite write lock; only the token insert writes.
    """
    if not email.strip() or not password:
        raise InvalidCredentials("email and password are required", field="session")
    with db.read() as conn:
        user = auth.verify_password(conn, email, password)
    if user is None:
        raise InvalidCredentials("invalid email or password", field="session")
    with db.write() as conn:
        issued = auth.create_token(conn, int(user["id"]), scopes=SESSION_SCOPES, expires_in=lifetime)
        info = auth.lookup_token(conn, issued.secret)
    expires_at: datetime = info.expires_at if info is not None and info.expires_at else utcnow() + lifetime
    expires = expires_at.timestamp()
    return Session(
        jwt=session_jwt(issued.secret, expires, signing_secret),
        token=issued.secret,
        expires=expires,
        token_id=issued.id,
        user=user,
    )
