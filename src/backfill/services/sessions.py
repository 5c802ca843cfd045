"""Sign-in and sign-out (``POST``/``DELETE /api/sessions``, ``POST /web/session``).

Email + password → a new API token of the user (a real token row: read + write scopes,
expiring after ``SESSION_LIFETIME``) and the session JWT that wraps it
(:func:`backfill.services.auth.session_jwt`, the value of the ``oauth_token`` cookie).
Only hashes of tokens are stored, so an existing session token cannot be handed out
again: every sign-in issues a new one. What keeps that bounded:

- a session token lives ``SESSION_LIFETIME`` (12 hours), not the 30 days it used to;
- sign-out (:func:`logout`) revokes it at once;
- each sign-in deletes the user's tokens that expired more than ``EXPIRED_TOKEN_RETENTION``
  ago, so expired sessions do not pile up in the table;
- failed sign-ins are rate-limited per client address and per e-mail (:class:`SignInThrottle`),
  and every request is rate-limited (the HTTP middleware).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import RowMapping

from backfill.domain.errors import AuthenticationFailed
from backfill.domain.model import Scope
from backfill.services.auth import session_jwt
from backfill.store import auth as auth_store
from backfill.store.clock import utcnow
from backfill.store.db import Database

SESSION_LIFETIME = timedelta(hours=12)
SESSION_SCOPES = (Scope.READ, Scope.WRITE)
EXPIRED_TOKEN_RETENTION = timedelta(days=1)


class InvalidCredentials(AuthenticationFailed):
    """Unknown email, wrong password, or a user without a password (adapters: 401)."""


class TooManySignIns(Exception):
    """Too many failed sign-ins from this address or for this e-mail (adapters: 429)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed sign-ins; retry in {retry_after} s")
        self.message = str(self)
        self.retry_after = retry_after


class SignInThrottle(Protocol):
    """Counts failed sign-ins per client address and per e-mail (an adapter provides it)."""

    async def check(self, address: str, email: str) -> None:
        """Raise :class:`TooManySignIns` when either budget is spent."""

    async def failed(self, address: str, email: str) -> None:
        """Count one failed sign-in against both."""


@dataclass(frozen=True)
class Session:
    jwt: str
    token: str  # the raw bearer token inside the JWT (the team API takes it as is)
    expires: float  # unix seconds, the same instant as the token row's expiry
    token_id: int
    user: RowMapping


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
    not hold the SQLite write lock; only the token insert (and the clean-up of the user's
    long-expired tokens) writes.
    """
    if not email.strip() or not password:
        raise InvalidCredentials("email and password are required", field="session")
    with db.read() as conn:
        user = auth_store.verify_password(conn, email, password)
    if user is None:
        raise InvalidCredentials("invalid email or password", field="session")
    now = utcnow()
    with db.write() as conn:
        auth_store.delete_expired_tokens(conn, int(user["id"]), before=now - EXPIRED_TOKEN_RETENTION)
        issued = auth_store.create_token(conn, int(user["id"]), scopes=SESSION_SCOPES, expires_in=lifetime)
        info = auth_store.lookup_token(conn, issued.secret)
    expires_at: datetime = info.expires_at if info is not None and info.expires_at else now + lifetime
    expires = expires_at.timestamp()
    return Session(
        jwt=session_jwt(issued.secret, expires, signing_secret),
        token=issued.secret,
        expires=expires,
        token_id=issued.id,
        user=user,
    )


async def sign_in(
    db: Database, throttle: SignInThrottle, address: str, email: str, password: str, *, signing_secret: str
) -> Session:
    """:func:`login` behind the failed-sign-in budget of ``address`` and ``email``:
    ``TooManySignIns`` before the password is even checked once either is spent."""
    await throttle.check(address, email)
    try:
        return await asyncio.to_thread(login, db, email, password, signing_secret=signing_secret)
    except InvalidCredentials:
        await throttle.failed(address, email)
        raise


def logout(db: Database, token_id: int) -> None:
    """Revoke the session's token (idempotent); later requests with it are refused."""
    with db.write() as conn:
        auth_store.revoke_token(conn, token_id)
