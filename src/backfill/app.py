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

from fastapi import FastAPI, Request
from fastapi.telemetry import TelemetryConfig
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from backfill import __version__, web
from backfill.api import coverage_routes, notification_routes, pipeline_api, pipeline_errors, security, team_api
from backfill.api import metrics as metrics_api
from backfill.api.middleware import (
    ErrorRenderers,
    RateLimiter,
    RequestContextMiddleware,
    install_exception_handlers,
)
from backfill.api.schemas import team as schemas
from backfill.config import Settings
from backfill.http.request_ids import request_id_of
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

# How long a token + membership resolution may be reused (SPEC: a revoked token or a
# removed membership must stop working within a couple of seconds).
AUTH_CACHE_SECONDS = 1.0


def _ping(db: Database) -> None:
    with db.read() as conn:
        conn.execute(text("SELECT 1"))


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
    app.state.principal_cache = security.PrincipalCache(ttl_seconds=AUTH_CACHE_SECONDS)
    limiter = RateLimiter(settings.rate_limit)
    app.state.rate_limiter = limiter
    install_exception_handlers(app, renderers)
    app.add_middleware(RequestContextMiddleware, limiter=limiter, renderers=renderers)

    @app.get(
        "/healthz",
        response_model=schemas.HealthResponse,
        tags=["operations"],
        summary="The process is up",
    )
    async def healthz(request: Request) -> Response:
        body = schemas.HealthResponse(
            meta=schemas.Meta(request_id=request_id_of(request)), data=schemas.Health(status="ok")
        )
        return Response(body.model_dump_json(), media_type="application/json")

    @app.get(
        "/readyz",
        response_model=schemas.HealthResponse,
        responses={503: {"model": schemas.ErrorEnvelope, "description": "Database unreachable."}},
        tags=["operations"],
        summary="The database is reachable",
    )
    async def readyz(request: Request) -> Response:
        if db.is_sqlite:  # a local file: quicker inline than in a worker thread
            _ping(db)
        else:
            await run_in_threadpool(_ping, db)
        body = schemas.HealthResponse(
            meta=schemas.Meta(request_id=request_id_of(request)), data=schemas.Health(status="ok")
        )
        return Response(body.model_dump_json(), media_type="application/json")

    app.include_router(metrics_api.router)
    app.include_router(team_api.router)
    app.include_router(coverage_routes.router)
    app.include_router(notification_routes.router)
    app.include_router(pipeline_api.router)
    app.include_router(web.router)
    return app
