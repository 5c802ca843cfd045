"""``/healthz`` (the process answers) and ``/readyz`` (it can do its work).

``/readyz`` answers 503 naming what is wrong: the database when a ping fails or takes
longer than ``PING_TIMEOUT_SECONDS``, and every component of the process that says it is
not ready (``app.state.health``, a ``services.health.HealthRegistry``, set by ``serve``).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from backfill.api.problems import ApiError
from backfill.api.schemas import team as schemas
from backfill.http.request_ids import request_id_of
from backfill.services.health import HealthRegistry
from backfill.store.db import Database

PING_TIMEOUT_SECONDS = 3.0

router = APIRouter(tags=["operations"])


async def _database_problem(db: Database) -> str | None:
    try:
        if db.is_sqlite:  # a local file: quicker inline than in a worker thread
            db.ping()
        else:  # the thread may stay stuck until the connection's own timeouts; we do not
            await asyncio.wait_for(run_in_threadpool(db.ping), PING_TIMEOUT_SECONDS)
    except TimeoutError:
        return f"database: no answer within {PING_TIMEOUT_SECONDS:g} s"
    except SQLAlchemyError as exc:
        return f"database: unreachable ({type(exc).__name__})"
    return None


def _ok(request: Request) -> Response:
    body = schemas.HealthResponse(
        meta=schemas.Meta(request_id=request_id_of(request)), data=schemas.Health(status="ok")
    )
    return Response(body.model_dump_json(), media_type="application/json")


@router.get("/healthz", response_model=schemas.HealthResponse, summary="The process is up")
async def healthz(request: Request) -> Response:
    return _ok(request)


@router.get(
    "/readyz",
    response_model=schemas.HealthResponse,
    responses={
        503: {"model": schemas.ErrorEnvelope, "description": "The database or a component of the process is down."}
    },
    summary="The database is reachable and every component runs",
)
async def readyz(request: Request) -> Response:
    problems: list[str] = []
    database = await _database_problem(request.app.state.db)
    if database:
        problems.append(database)
    registry: HealthRegistry | None = getattr(request.app.state, "health", None)
    if registry is not None:
        problems.extend(registry.problems())
    if problems:
        raise ApiError(503, "not ready: " + "; ".join(problems))
    return _ok(request)
