"""The ASGI middlewares every request passes, outermost first.

- :class:`RequestContextMiddleware`: the request id (``X-Request-ID``), the rate limit
  (:mod:`backfill.api.ratelimit`; ``X-RateLimit-Limit`` / ``X-RateLimit-Remaining`` on
  every response, 429 with ``Retry-After`` when exhausted), last-resort error handling
  (:mod:`backfill.api.problems`), one structured access-log line and the HTTP latency
  histogram labelled by route template;
- :class:`BodyLimitMiddleware`: a request body larger than the limit is refused with 413
  while it streams in, before it is buffered (a ``Content-Length`` over the limit is
  refused before a byte is read).

Both are pure ASGI (no ``BaseHTTPMiddleware``): they sit on the hot path of every request.
"""

from __future__ import annotations

import logging
import time

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backfill.api.problems import ErrorRenderers, Problem, log_server_problem, problem_from_exception
from backfill.api.ratelimit import RateLimiter, RequestIdentity
from backfill.http.request_ids import REQUEST_ID_RE, new_request_id
from backfill.metrics import HTTP_LATENCY, HTTP_RATE_LIMITED

access_log = logging.getLogger("backfill.access")

# Routes that never count against the rate limit (probes, scrapes); they still report it.
UNMETERED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class HttpMiddleware:
    """A pure ASGI middleware of HTTP requests: every other scope (lifespan) passes through
    untouched; ``handle`` sees the HTTP ones. Both middlewares below are one."""

    def __init__(self, app: ASGIApp, renderers: ErrorRenderers) -> None:
        self.app = app
        self.renderers = renderers  # how an error this middleware answers is rendered

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


# ---- body limit ---------------------------------------------------------------------------------


class PayloadTooLarge(StarletteHTTPException):
    """Raised from ``receive`` once the body passes the limit; every dialect renders 413."""

    def __init__(self, limit: int) -> None:
        detail = f"the request body is larger than the limit of {limit} bytes"
        # Close the connection after the answer: the rest of the body is not worth reading.
        super().__init__(413, detail, headers={"Connection": "close"})


class BodyLimitMiddleware(HttpMiddleware):
    """Refuse request bodies over ``max_bytes`` while they stream in (docs/api.md "Limits")."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, renderers: ErrorRenderers) -> None:
        super().__init__(app, renderers)
        self.max_bytes = max_bytes

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.max_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    rid = scope.get("state", {}).get("request_id", "")
                    problem = problem_from_exception(PayloadTooLarge(limit))
                    await self.renderers.render(scope["path"], problem, rid)(scope, receive, send)
                    return
                break
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(limit)
            return message

        await self.app(scope, counting_receive, send)


# ---- the middleware -------------------------------------------------------------------


class RequestContextMiddleware(HttpMiddleware):
    """Request id, rate limit, last-resort error handling, access log and latency."""

    def __init__(
        self, app: ASGIApp, *, limiter: RateLimiter, identity: RequestIdentity, renderers: ErrorRenderers
    ) -> None:
        super().__init__(app, renderers)
        self.limiter = limiter
        self.identity = identity

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
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
        key = await self.identity.key(scope, authorization, oauth_token, cookie)
        decision = await (self.limiter.peek(key) if path in UNMETERED_PATHS else self.limiter.hit(key))
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
            log_server_problem(problem, rid, scope["method"], path)
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
