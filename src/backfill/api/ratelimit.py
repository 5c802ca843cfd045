"""Rate limits (docs/api.md "Limits", §9): moving windows in process memory or in Redis.

- Every request is counted once, keyed on who sent it: the *verified* user of a valid
  credential (bearer token, the pipeline dialect's ``OAUTH-TOKEN`` header or
  ``oauth_token`` cookie, raw or session JWT), else the client address. An unverified
  credential value is never a key: a random bearer per request lands in the address's
  bucket, not in a fresh one.
- Failed sign-ins (``POST /api/sessions``, ``POST /web/session``) have their own, smaller
  budget per client address and per e-mail (:class:`SignInLimiter`), checked before the
  password is.
- Storage: ``BACKFILL_RATE_LIMIT_STORAGE`` = ``memory://`` (default; one process) or
  ``redis://host:port/db`` (``limits``' asynchronous Redis storage, shared by every API
  process that names the same Redis and key prefix). When Redis cannot be reached the
  request is let through (logged once per outage): a limiter outage must not take the
  API down with it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter as AsyncMovingWindow
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from limits.util import WindowStats
from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from backfill.config import REDIS_SCHEMES
from backfill.services import auth
from backfill.services.sessions import TooManySignIns
from backfill.store.db import Database

log = logging.getLogger("backfill.api")


class RateLimitConfigError(ValueError):
    """``BACKFILL_RATE_LIMIT_STORAGE`` or a limit is not usable (named in the message)."""


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    retry_after: int


class _QuietMemoryStorage(MemoryStorage):
    """``limits``' in-memory storage, with its clean-up thread started at most once a
    second instead of every 10 ms under load: a thread born 100 times a second competes
    for the GIL with the event loop. Only memory depends on the clean-up; the moving
    window itself compares timestamps and stays exact. (Overrides a private method of
    limits 5.8, pinned in pyproject; if it changes, this is merely a no-op.)"""

    _last_cleanup = 0.0

    def _MemoryStorage__schedule_expiry(self) -> None:
        now = time.monotonic()
        if now - self._last_cleanup < 1.0 or self.timer.is_alive():
            return
        self._last_cleanup = now
        self.timer = threading.Timer(0.01, self._MemoryStorage__expire_events)  # type: ignore[attr-defined]
        self.timer.daemon = True
        self.timer.start()


class WindowStore(Protocol):
    """Where the moving windows live."""

    async def hit(self, item: RateLimitItem, key: str) -> bool: ...

    async def stats(self, item: RateLimitItem, key: str) -> WindowStats: ...


class MemoryWindows:
    """Windows in this process's memory (never blocks: no I/O)."""

    def __init__(self) -> None:
        self.storage = _QuietMemoryStorage()
        self.strategy = MovingWindowRateLimiter(self.storage)

    async def hit(self, item: RateLimitItem, key: str) -> bool:
        return self.strategy.hit(item, key)

    async def stats(self, item: RateLimitItem, key: str) -> WindowStats:
        return self.strategy.get_window_stats(item, key)


class RedisWindows:
    """Windows in Redis (``limits``' asyncio storage over redis-py), shared by processes."""

    def __init__(self, url: str, key_prefix: str) -> None:
        self.storage = RedisStorage("async+" + url, implementation="redispy", key_prefix=key_prefix)
        self.strategy = AsyncMovingWindow(self.storage)

    async def hit(self, item: RateLimitItem, key: str) -> bool:
        return await self.strategy.hit(item, key)

    async def stats(self, item: RateLimitItem, key: str) -> WindowStats:
        return await self.strategy.get_window_stats(item, key)


def window_store(url: str, key_prefix: str = "backfill") -> WindowStore:
    """The storage named by ``BACKFILL_RATE_LIMIT_STORAGE``."""
    if url == "memory://":
        return MemoryWindows()
    if url.startswith(REDIS_SCHEMES):
        return RedisWindows(url, key_prefix)
    raise RateLimitConfigError(f"BACKFILL_RATE_LIMIT_STORAGE must be memory:// or redis://host:port/db, got {url!r}")


def parse_limit(spec: str, setting: str) -> RateLimitItem:
    try:
        return parse(spec)
    except ValueError as exc:
        raise RateLimitConfigError(f"{setting} must look like '1200/minute', got {spec!r}") from exc


class RateLimiter:
    """One limit (``spec``, e.g. ``1200/minute``) per key over a window store."""

    def __init__(self, spec: str, store: WindowStore | None = None, *, setting: str = "BACKFILL_RATE_LIMIT") -> None:
        self.item = parse_limit(spec, setting)
        self.store = store if store is not None else MemoryWindows()
        self._outage = False

    def _decision(self, allowed: bool, stats: WindowStats) -> RateDecision:
        remaining = max(0, stats.remaining)
        retry_after = 0 if allowed and remaining > 0 else max(1, math.ceil(stats.reset_time - time.time()))
        return RateDecision(allowed, self.item.amount, remaining, retry_after)

    async def hit(self, key: str) -> RateDecision:
        """Count one request against ``key``."""
        try:
            allowed = await self.store.hit(self.item, key)
            decision = self._decision(allowed, await self.store.stats(self.item, key))
        except Exception as exc:  # the storage is down: let the request through
            return self._unavailable(exc)
        self._recovered()
        return decision

    async def peek(self, key: str) -> RateDecision:
        """What is left for ``key``, without counting."""
        try:
            decision = self._decision(True, await self.store.stats(self.item, key))
        except Exception as exc:
            return self._unavailable(exc)
        self._recovered()
        return decision

    def _unavailable(self, exc: Exception) -> RateDecision:
        if not self._outage:
            self._outage = True
            log.warning("rate-limit storage unavailable, requests are not limited: %s", exc)
        return RateDecision(True, self.item.amount, self.item.amount, 0)

    def _recovered(self) -> None:
        if self._outage:
            self._outage = False
            log.warning("rate-limit storage reachable again")


def _digest(value: str) -> str:
    return hashlib.blake2b(value.encode(), digest_size=16).hexdigest()


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class SignInLimiter:
    """Failed sign-ins per client address and per e-mail (``services.sessions.SignInThrottle``)."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    @staticmethod
    def _keys(address: str, email: str) -> tuple[str, str]:
        return "signin-ip:" + address, "signin-email:" + _digest(email.strip().lower())

    async def check(self, address: str, email: str) -> None:
        for key in self._keys(address, email):
            decision = await self.limiter.peek(key)
            if decision.remaining <= 0:
                raise TooManySignIns(decision.retry_after)

    async def failed(self, address: str, email: str) -> None:
        for key in self._keys(address, email):
            await self.limiter.hit(key)


# ---- who is asking ----------------------------------------------------------------------------

_OAUTH_COOKIE = re.compile(r"(?:^|;)\s*oauth_token=([^;]+)")


def presented_secret(
    authorization: bytes | None, oauth_token: bytes | None, cookie: bytes | None, signing_secret: str
) -> str | None:
    """The raw user token a request presents (bearer, ``OAUTH-TOKEN``, ``oauth_token``
    cookie — a session JWT unwrapped), unverified; None when there is none or a JWT is bad."""
    value = auth.bearer_secret(authorization.decode("latin-1")) if authorization else None
    if not value and oauth_token:
        value = oauth_token.decode("latin-1").strip()
    if not value and cookie:
        found = _OAUTH_COOKIE.search(cookie.decode("latin-1"))
        value = found.group(1).strip() if found else None
    if not value or len(value) > 4096:
        return None
    try:
        return auth.token_from_session(value, signing_secret)
    except auth.AuthError:
        return None


class RequestIdentity:
    """The rate-limit key of a request: ``user:<id>`` for a credential that verifies
    (a resolution reused from the team API's principal cache, else one read), else
    ``ip:<client address>``."""

    def __init__(self, db: Database, cache: auth.PrincipalCache, signing_secret: str) -> None:
        self.db = db
        self.cache = cache
        self.signing_secret = signing_secret

    async def key(
        self, scope: Scope, authorization: bytes | None, oauth_token: bytes | None, cookie: bytes | None
    ) -> str:
        secret = presented_secret(authorization, oauth_token, cookie, self.signing_secret)
        if secret:
            user_id = await self._verified_user(secret)
            if user_id is not None:
                return f"user:{user_id}"
        return "ip:" + client_address(scope)

    async def _verified_user(self, secret: str) -> int | None:
        try:
            principal = self.cache.get(secret, None)
            if principal is None:
                if self.db.is_sqlite:  # a local file: quicker inline than in a worker thread
                    principal = auth.resolve(self.db, secret, team_id=None)
                else:
                    principal = await run_in_threadpool(auth.resolve, self.db, secret, team_id=None)
                self.cache.put(secret, None, principal)
        except Exception:  # invalid, expired, or the database is down: count it by address
            return None
        return principal.user_id
