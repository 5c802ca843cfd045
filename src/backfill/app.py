"""The composition root: the one place that builds the FastAPI application.

It mounts the adapters side by side (team API, pipeline API, web page) and is the only
module that imports several of them; no adapter imports another. Wiring only: the
request-context middleware (request id, rate limit, last-resort errors, access log,
latency), the exception handlers that turn every error into the envelope of the dialect
owning the path, the operational routes, the dialect routers and the web page.

Another dialect plugs in with ``app.include_router(router)`` and
``app.state.error_renderers.register("/api", its_renderer)``.
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

from backfill import __version__, web
from backfill.api import (
    coverage_routes,
    health,
    notification_routes,
    pipeline_api,
    pipeline_errors,
    pipeline_sessions,
    team_api,
    token_api,
)
from backfill.api import metrics as metrics_api
from backfill.api.middleware import BodyLimitMiddleware, RequestContextMiddleware
from backfill.api.problems import ErrorRenderers, install_exception_handlers
from backfill.api.ratelimit import RateLimiter, RequestIdentity, SignInLimiter, window_store
from backfill.config import Settings
from backfill.http.slow_clients import bounded_head_protocol
from backfill.services import auth
from backfill.store.db import Database

DESCRIPTION = """\
Re-run data pipelines over historical time ranges.

**Team API** (`/v1/teams/{team_id}/...`, canonical): `Authorization: Bearer <token>`;
every response is `{"meta":{"request_id"},"data":...}`, every error
`{"meta":{"request_id"},"error":{"code","message","description"?}}`; every response carries
`X-Request-ID`, `X-RateLimit-Limit` and `X-RateLimit-Remaining`.

**Pipeline API** (`/api/...`): objects wrapped as `{"backfill": {...}}`, lowercase statuses
(`null` before the start), datetimes `"YYYY-MM-DD HH:MM:SS"` (UTC); auth with `X-API-KEY`
(when the server has keys) plus the user token as `Cookie: oauth_token=<JWT>`, header
`OAUTH-TOKEN` or `Authorization: Bearer`; errors `{"error": {"code", "message", "type"}}`.
"""

# How long a token + membership resolution may be reused (docs/api.md: a revoked token or a
# removed membership must stop working within a couple of seconds).
AUTH_CACHE_SECONDS = 1.0


def server_protocol(settings: Settings) -> type[asyncio.Protocol]:
    """The HTTP protocol the server runs the app with (request heads bounded in time)."""
    return bounded_head_protocol(settings.http_request_head_seconds)


def create_app(db: Database, settings: Settings) -> FastAPI:
    # Observability is our own (Prometheus /metrics, JSON logs with request ids): FastAPI's
    # OpenTelemetry hooks stay off instead of being checked on every request.
    telemetry: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}
    app = FastAPI(title="backfill", version=__version__, description=DESCRIPTION, telemetry=telemetry)
    app.state.db = db
    app.state.settings = settings

    renderers = ErrorRenderers(default=team_api.render_error)
    renderers.register("/api", pipeline_errors.render_problem)  # /api/... errors in the pipeline dialect
    app.state.error_renderers = renderers
    principal_cache = auth.PrincipalCache(ttl_seconds=AUTH_CACHE_SECONDS)
    app.state.principal_cache = principal_cache
    signing_secret = settings.resolved_secret()
    app.state.pipeline_session_secret = signing_secret
    windows = window_store(settings.rate_limit_storage, settings.rate_limit_key_prefix)
    limiter = RateLimiter(settings.rate_limit, windows)
    app.state.rate_limiter = limiter
    app.state.sign_in_throttle = SignInLimiter(
        RateLimiter(settings.sign_in_rate_limit, windows, setting="BACKFILL_SIGN_IN_RATE_LIMIT")
    )
    install_exception_handlers(app, renderers)
    # Added last = outermost: the request context wraps the body limit, so a 413 carries
    # the request id and the rate-limit headers like every other answer.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, renderers=renderers)
    app.add_middleware(
        RequestContextMiddleware,
        limiter=limiter,
        identity=RequestIdentity(db, principal_cache, signing_secret),
        renderers=renderers,
    )

    app.include_router(health.router)
    app.include_router(metrics_api.router)
    app.include_router(team_api.router)
    app.include_router(token_api.router)
    app.include_router(token_api.team_router)
    app.include_router(coverage_routes.router)
    app.include_router(notification_routes.router)
    app.include_router(pipeline_api.router)
    app.include_router(pipeline_sessions.router)
    app.include_router(web.router)
    return app
