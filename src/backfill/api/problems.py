"""Problems: every failed request in neutral terms, and how it is rendered.

Every exception becomes a :class:`Problem` (status, canonical code, message) through
:func:`problem_from_exception` — the one map from exception classes to HTTP statuses and
the team API's codes (docs/api.md). The dialect owning the path renders it
(:class:`ErrorRenderers`: ``/v1`` and unknown paths in the canonical envelope, ``/api`` in
the pipeline dialect's). Unhandled exceptions are logged with the request id and answered
500 without a traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
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

from backfill.domain.errors import (
    AuthenticationFailed,
    Conflict,
    DomainError,
    InvalidTransition,
    NotFound,
    ValidationError,
)
from backfill.http.request_ids import request_id_of
from backfill.http.status_codes import code_for_status
from backfill.services import auth
from backfill.services.sessions import TooManySignIns

log = logging.getLogger("backfill.api")


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
    """Map any exception to a neutral problem (the canonical mapping of docs/api.md)."""
    if isinstance(exc, ApiError):
        return Problem(exc.status, exc.code, exc.message, cause=exc)
    if isinstance(exc, TooManySignIns):
        return Problem(429, "TOO_MANY_REQUESTS", exc.message, headers={"Retry-After": str(exc.retry_after)}, cause=exc)
    if isinstance(exc, auth.AuthError):
        if isinstance(exc, auth.Unauthenticated):
            return Problem(401, "UNAUTHORIZED", exc.message, headers={"WWW-Authenticate": "Bearer"}, cause=exc)
        if isinstance(exc, auth.PermissionDenied):
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
            log_server_problem(problem, request_id_of(request), request.method, request.url.path)
        return renderers.render(request.url.path, problem, request_id_of(request))

    for cls in (
        StarletteHTTPException,
        RequestValidationError,
        DomainError,
        auth.AuthError,
        TooManySignIns,
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


def log_server_problem(problem: Problem, request_id: str, method: str, path: str) -> None:
    extra = {"request_id": request_id, "method": method, "path": path, "status": problem.status}
    cause = problem.cause
    exc_info = (type(cause), cause, cause.__traceback__) if cause is not None else None
    if problem.status == 503:
        log.warning("database unavailable: %s", cause, extra=extra)
    else:
        log.error("unhandled error: %r", cause, exc_info=exc_info, extra=extra)
