"""Cross-cutting HTTP concerns shared by both dialects.

- request id: a valid incoming ``X-Request-ID`` (8–64 chars of ``[A-Za-z0-9_-]``) is
  kept, else one is generated; it is in ``request.state.request_id`` and in the
  ``X-Request-ID`` response header of every response;
- rate limit: moving window in memory (``limits``), keyed per bearer token, else per
  client address; ``X-RateLimit-Limit`` / ``X-RateLimit-Remaining`` on every response,
  429 with ``Retry-After`` when exhausted;
- errors: every exception becomes a neutral :class:`Problem` (status, canonical code,
  message) that the dialect owning the path renders (:class:`ErrorRenderers`); unhandled
  exceptions are logged with the request id and answered 500 without a traceback;
- observability: one structured access-log line per request and the HTTP latency
  histogram labelled by route template.

Everything here is a pure ASGI middleware (no ``BaseHTTPMiddleware``): it sits on the
hot path of every request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backfill.api import security
from backfill.domain.errors import (
    AuthenticationFailed,
    Conflict,
    DomainError,
    InvalidTransition,
    NotFound,
    ValidationError,
)
from backfill.http.request_ids import REQUEST_ID_RE, new_request_id, request_id_of
from backfill.http.status_codes import code_for_status as code_for_status
from backfill.metrics import HTTP_LATENCY, HTTP_RATE_LIMITED

log = logging.getLogger("backfill.api")
access_log = logging.getLogger("backfill.access")

# Routes that never count against the rate limit (probes, scrapes); they still report it.
UNMETERED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

# ---- neutral problems -----------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """A failed request in neutral terms; ``code`` is the canonical (team API) code and
    ``cause`` the original exception, so a dialect can refine its own wording."""

    status: int
    code: str
    message: str
    description: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    cause: BaseException | None = None


class ApiError(Exception):
    """Raised by adapters for problems that are not domain errors (bad query parameter)."""

    def __init__(self, status: int, message: str, *, code: str | None = None, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code or code_for_status(status)
        self.message = message
        self.field = field


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) if loc else "body"


def _validation_problem(exc: RequestValidationError) -> Problem:
    errors = list(exc.errors())
    if not errors:
        return Problem(422, "UNPROCESSABLE_ENTITY", "the request is invalid", cause=exc)
    first = errors[0]
    loc = tuple(first.get("loc", ()))
    source = loc[0] if loc else "body"
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "")
        return Problem(400, "BAD_REQUEST", f"the request body is not valid JSON: {detail}".rstrip(": "), cause=exc)
    if source in ("query", "header", "cookie"):
        kind = "query parameter" if source == "query" else source
        bad = [e for e in errors if e.get("loc") and e["loc"][0] in ("query", "header", "cookie")]
        message = "; ".join(f"invalid {kind} {e['loc'][-1]}: {e['msg']}" for e in bad)
        return Problem(400, "BAD_REQUEST", message or f"invalid {kind}", cause=exc)
    if source == "path":
        names = ", ".join(str(e["loc"][-1]) for e in errors if e.get("loc"))
        return Problem(404, "NOT_FOUND", f"no resource matches this {names}", cause=exc)
    unknown = [_field_path(tuple(e["loc"][1:])) for e in errors if e.get("type") == "extra_forbidden"]
    parts = []
    if unknown:
        parts.append(f"unknown field{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}")
    for e in errors:
        if e.get("type") == "extra_forbidden":
            continue
        path = tuple(e.get("loc", ()))[1:]
        if not path:
            msg = "the request body is required" if e.get("type") == "missing" else e["msg"]
            parts.append(msg if e.get("type") == "missing" else f"the request body must be a JSON object: {msg}")
        else:
            parts.append(f"{_field_path(path)}: {e['msg']}")
    return Problem(422, "UNPROCESSABLE_ENTITY", "; ".join(dict.fromkeys(parts)), cause=exc)


def _is_connection_error(exc: SQLAlchemyError) -> bool:
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeoutError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def problem_from_exception(exc: BaseException) -> Problem:
    """Map any exception to a neutral problem (the canonical mapping of SPEC §4)."""
    if isinstance(exc, ApiError):
        return Problem(exc.status, exc.code, exc.message, cause=exc)
    if isinstance(exc, security.AuthError):
        if isinstance(exc, security.Unauthenticated):
            return Problem(401, "UNAUTHORIZED", exc.message, headers={"WWW-Authenticate": "Bearer"}, cause=exc)
        if isinstance(exc, security.PermissionDenied):
            return Problem(403, "PERMISSION_ERROR", exc.message, cause=exc)
        return Problem(403, "FORBIDDEN", exc.message, cause=exc)
    if isinstance(exc, DomainError):
        if isinstance(exc, AuthenticationFailed):
            return Problem(401, "UNAUTHORIZED", exc.message, headers={"WWW-Authenticate": "Bearer"}, cause=exc)
        if isinstance(exc, NotFound):
            return Problem(404, "NOT_FOUND", exc.message, cause=exc)
        if isinstance(exc, Conflict):
            return Problem(409, "CONFLICT_ERROR", exc.message, cause=exc)
        if isinstance(exc, ValidationError | InvalidTransition):
            return Problem(422, "UNPROCESSABLE_ENTITY", exc.message, cause=exc)
        return Problem(422, "UNPROCESSABLE_ENTITY", exc.message, cause=exc)
    if isinstance(exc, RequestValidationError):
        return _validation_problem(exc)
    if isinstance(exc, StarletteHTTPException):
        headers = dict(exc.headers or {})
        if exc.status_code == 404:
            message = "the requested resource was not found"
        elif exc.status_code == 405:
            allow = headers.get("Allow") or headers.get("allow")
            message = "method not allowed" + (f"; allowed: {allow}" if allow else "")
        else:
            message = str(exc.detail)
        return Problem(exc.status_code, code_for_status(exc.status_code), message, headers=headers, cause=exc)
    if isinstance(exc, SQLAlchemyError):
        if _is_connection_error(exc):
            return Problem(
                503,
                "SERVICE_UNAVAILABLE",
                "the database is unavailable; retry later",
                headers={"Retry-After": "5"},
                cause=exc,
            )
        if isinstance(exc, IntegrityError):
            return Problem(409, "CONFLICT_ERROR", "a concurrent request changed the same record; retry", cause=exc)
    return Problem(500, "INTERNAL_SERVER_ERROR", "an unexpected error occurred", cause=exc)


# ---- rendering per dialect ------------------------------------------------------------

ErrorRenderer = Callable[[Problem, str], Response]


def default_error_response(problem: Problem, request_id: str) -> Response:
    """The canonical envelope: ``{"meta":{"request_id"},"error":{"code","message","description"?}}``."""
    error: dict[str, str] = {"code": problem.code, "message": problem.message}
    if problem.description:
        error["description"] = problem.description
    body = json.dumps({"meta": {"request_id": request_id}, "error": error}, ensure_ascii=False)
    return Response(
        body.encode(),
        status_code=problem.status,
        headers=dict(problem.headers),
        media_type="application/json",
    )


class ErrorRenderers:
    """Which dialect renders an error, by path prefix (longest first); the default is the
    canonical envelope (team API, unknown routes, operational endpoints)."""

    def __init__(self, default: ErrorRenderer = default_error_response) -> None:
        self.default = default
        self._by_prefix: list[tuple[str, ErrorRenderer]] = []

    def register(self, prefix: str, renderer: ErrorRenderer) -> None:
        self._by_prefix.append((prefix, renderer))
        self._by_prefix.sort(key=lambda p: len(p[0]), reverse=True)

    def for_path(self, path: str) -> ErrorRenderer:
        for prefix, renderer in self._by_prefix:
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return renderer
        return self.default

    def render(self, path: str, problem: Problem, request_id: str) -> Response:
        return self.for_path(path)(problem, request_id)


def install_exception_handlers(app: FastAPI, renderers: ErrorRenderers) -> None:
    """Route every handled exception class through :func:`problem_from_exception`."""

    async def handle(request: Request, exc: Exception) -> Response:
        problem = problem_from_exception(exc)
        if problem.status == 405:
            problem = _with_all_allowed_methods(request, problem)
        if problem.status >= 500:
            _log_server_problem(problem, request_id_of(request), request.method, request.url.path)
        return renderers.render(request.url.path, problem, request_id_of(request))

    for cls in (
        StarletteHTTPException,
        RequestValidationError,
        DomainError,
        security.AuthError,
        ApiError,
        SQLAlchemyError,
    ):
        app.add_exception_handler(cls, handle)


def _with_all_allowed_methods(request: Request, problem: Problem) -> Problem:
    """Starlette's 405 names the methods of the first matching route only; a path served
    by several routes (GET and PATCH of a backfill) allows the union."""
    routes = request.app.router.routes
    methods = [
        method
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)
    ]
    if not methods:
        return problem
    allow = ", ".join(methods)
    return Problem(
        405, problem.code, f"method not allowed; allowed: {allow}", headers={"Allow": allow}, cause=problem.cause
    )


def _log_server_problem(problem: Problem, request_id: str, method: str, path: str) -> None:
    extra = {"request_id": request_id, "method": method, "path": path, "status": problem.status}
    cause = problem.cause
    exc_info = (type(cause), cause, cause.__traceback__) if cause is not None else None
    if problem.status == 503:
        log.warning("database unavailable: %s", cause, extra=extra)
    else:
        log.error("unhandled error: %r", cause, exc_info=exc_info, extra=extra)


# ---- rate limit -----------------------------------------------------------------------


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


class RateLimiter:
    """Moving-window limit in process memory (one per app instance)."""

    def __init__(self, spec: str) -> None:
        self.item: RateLimitItem = parse(spec)
        self.storage = _QuietMemoryStorage()
        self.strategy = MovingWindowRateLimiter(self.storage)

    def _decision(self, key: str, allowed: bool) -> RateDecision:
        stats = self.strategy.get_window_stats(self.item, key)
        retry_after = 0 if allowed else max(1, math.ceil(stats.reset_time - time.time()))
        return RateDecision(allowed, self.item.amount, max(0, stats.remaining), retry_after)

    def hit(self, key: str) -> RateDecision:
        return self._decision(key, self.strategy.hit(self.item, key))

    def peek(self, key: str) -> RateDecision:
        return self._decision(key, True)


_OAUTH_COOKIE = re.compile(r"(?:^|;)\s*oauth_token=([^;]+)")


def rate_key(
    scope: Scope, authorization: bytes | None, oauth_token: bytes | None = None, cookie: bytes | None = None
) -> str:
    """Per user credential when one is sent — a bearer token, the pipeline dialect's
    ``OAUTH-TOKEN`` header or ``oauth_token`` cookie (hashed: raw secrets are not kept) —
    else per client address."""
    secret = security.bearer_secret(authorization.decode("latin-1")) if authorization else None
    if not secret and oauth_token:
        secret = oauth_token.decode("latin-1").strip()
    if not secret and cookie:
        found = _OAUTH_COOKIE.search(cookie.decode("latin-1"))
        secret = found.group(1).strip() if found else None
    if secret:
        return "t:" + hashlib.blake2b(secret.encode(), digest_size=16).hexdigest()
    client = scope.get("client")
    return "ip:" + (client[0] if client else "unknown")


# ---- the middleware -------------------------------------------------------------------


class RequestContextMiddleware:
    """Request id, rate limit, last-resort error handling, access log and latency."""

    def __init__(self, app: ASGIApp, *, limiter: RateLimiter, renderers: ErrorRenderers) -> None:
        self.app = app
        self.limiter = limiter
        self.renderers = renderers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        incoming: bytes | None = None
        authorization: bytes | None = None
        oauth_token: bytes | None = None
        cookie: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value
            elif name == b"authorization":
                authorization = value
            elif name == b"oauth-token":
                oauth_token = value
            elif name == b"cookie":
                cookie = value
        rid = incoming.decode("latin-1") if incoming else ""
        if not REQUEST_ID_RE.fullmatch(rid):
            rid = new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        path: str = scope["path"]
        key = rate_key(scope, authorization, oauth_token, cookie)
        decision = self.limiter.peek(key) if path in UNMETERED_PATHS else self.limiter.hit(key)
        extra_headers = [
            (b"x-request-id", rid.encode()),
            (b"x-ratelimit-limit", str(decision.limit).encode()),
            (b"x-ratelimit-remaining", str(decision.remaining).encode()),
        ]
        status_code = 500
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status_code, started
            if message["type"] == "http.response.start":
                started = True
                status_code = message["status"]
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in (b"x-request-id", b"x-ratelimit-limit", b"x-ratelimit-remaining")
                ]
                message["headers"] = headers + extra_headers
            await send(message)

        try:
            if not decision.allowed:
                HTTP_RATE_LIMITED.inc()
                problem = Problem(
                    429,
                    "TOO_MANY_REQUESTS",
                    f"rate limit of {self.limiter.item} exceeded; retry in {decision.retry_after} s",
                    headers={"Retry-After": str(decision.retry_after)},
                )
                await self.renderers.render(path, problem, rid)(scope, receive, send_with_headers)
            else:
                await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            problem = problem_from_exception(exc)
            _log_server_problem(problem, rid, scope["method"], path)
            if not started:
                await self.renderers.render(path, problem, rid)(scope, receive, send_with_headers)
            status_code = problem.status
        finally:
            elapsed = time.perf_counter() - t0
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            HTTP_LATENCY.labels(scope["method"], template, str(status_code)).observe(elapsed)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %s",
                    scope["method"],
                    path,
                    status_code,
                    extra={
                        "request_id": rid,
                        "method": scope["method"],
                        "path": path,
                        "status": status_code,
                        "duration_ms": round(elapsed * 1000, 3),
                    },
                )
