"""Errors of the pipeline API (``/api``, docs/api.md): real HTTP status codes and the body
``{"error": {"code": <status>, "message": str, "type": str}}``, nothing else.

Two entry points:

- :class:`PipelineRoute`, the ``route_class`` of the ``/api`` router: whatever a request
  raises once it reached an ``/api`` route (domain errors, ``auth.AuthError``,
  ``RequestValidationError`` / malformed JSON, anything unexpected → 500, logged with the
  request id, no stack trace in the body) is rendered here;
- :func:`render_problem` (an ``ErrorRenderer`` for ``app.state.error_renderers``) and
  :func:`pipeline_error_response` / :func:`error_type_for_status` for ``/api`` requests that
  never reach a route (unknown route 404, 405, rate limit 429).

The mapping from exceptions to status codes is the shared one
(``middleware.problem_from_exception``); this module only says it in this dialect's words:
its error types, its field names (``start_datetime``…) and its statuses (``initial``…).
``X-Request-ID`` is set by the request-context middleware on every response.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.responses import Response

from backfill.api.problems import Problem, problem_from_exception
from backfill.api.schemas.pipeline import PipelineErrorEnvelope
from backfill.domain.errors import DomainError, Wording
from backfill.http.request_ids import request_id_of
from backfill.services import auth

log = logging.getLogger("backfill.api")

RECORD_NOT_FOUND = "record_not_found"
UNAUTHORIZED_ACCESS = "unauthorized_access"
INVALID_API_KEY = "invalid_api_key"
INVALID_OAUTH_TOKEN = "invalid_oauth_token"
EXPIRED_OAUTH_TOKEN = "expired_oauth_token"
RECORD_INVALID = "record_invalid"
CONFLICT = "conflict"
RATE_LIMITED = "rate_limited"
PAYLOAD_TOO_LARGE = "payload_too_large"
SERVER_ERROR = "server_error"

# Canonical (service) field names → names in this dialect.
FIELD_NAMES = {
    "start": "start_datetime",
    "end": "end_datetime",
    "block_uuids": "block_uuid",
    "pipeline_id": "pipeline_uuid",
    "cron": "settings.cron",
    "timezone": "settings.timezone",
    "run_order": "settings.run_order",
    "reprocess": "settings.reprocess",
    "retries": "settings.retries",
    "retry_delay_seconds": "settings.retry_delay_seconds",
    "timeout_seconds": "settings.timeout_seconds",
    "max_active_runs": "settings.max_active_runs",
}
# Canonical statuses → this dialect's (created is null: not started; scheduled is "initial").
STATUS_NAMES = {"created": "null (not started)", "scheduled": "initial"}


def _status_name(canonical: str) -> str:
    return STATUS_NAMES.get(canonical, canonical)


WORDS = Wording(status=_status_name, fields=FIELD_NAMES, pipeline="pipeline")
# Request bodies are wrapped: {"backfill": {...}}, {"session": {...}}.
WRAPPERS = ("backfill", "session")


def error_type_for_status(status: int) -> str:
    """The error ``type`` of a status code when nothing more specific is known."""
    if status in (401, 403):
        return UNAUTHORIZED_ACCESS
    if status in (404, 405, 410):
        return RECORD_NOT_FOUND
    if status == 409:
        return CONFLICT
    if status == 413:
        return PAYLOAD_TOO_LARGE
    if status == 429:
        return RATE_LIMITED
    if status >= 500:
        return SERVER_ERROR
    return RECORD_INVALID


def pipeline_error_response(
    status: int,
    message: str,
    type_: str,
    request_id: str | None,
    *,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """``{"error": {"code": status, "message": message, "type": type_}}`` with that status."""
    merged = dict(headers or {})
    if request_id:
        merged["X-Request-ID"] = request_id
    body = {"error": {"code": status, "message": message, "type": type_}}
    return JSONResponse(body, status_code=status, headers=merged)


# ---- this dialect's words ------------------------------------------------------------------------


def _type_of(problem: Problem) -> str:
    cause = problem.cause
    if isinstance(cause, auth.TokenExpired):
        return EXPIRED_OAUTH_TOKEN
    if isinstance(cause, auth.TokenInvalid):
        return INVALID_OAUTH_TOKEN
    if isinstance(cause, auth.ApiKeyInvalid):
        return INVALID_API_KEY
    return error_type_for_status(problem.status)


def _request_validation_message(exc: RequestValidationError, fallback: str, wrapper: str) -> str:
    """A missing wrapper or a body that is not an object says what the body must be."""
    body_errors = [e for e in exc.errors() if tuple(e.get("loc", ()))[:1] == ("body",)]
    if any(e.get("type") == "json_invalid" for e in body_errors):
        return fallback
    for e in body_errors:
        loc = tuple(e.get("loc", ()))
        if len(loc) == 1 or (len(loc) == 2 and loc[1] in WRAPPERS and e.get("type") == "missing"):
            unknown = [
                str(x["loc"][1]) for x in body_errors if x.get("type") == "extra_forbidden" and len(x["loc"]) == 2
            ]
            message = f'the request body must be a JSON object {{"{wrapper}": {{...}}}}'
            if unknown:
                message += f"; unknown field{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}"
            return message
    return fallback


def refine(problem: Problem, path: str = "") -> str:
    """The message of ``problem`` in this dialect's words (``path``: the request path)."""
    cause = problem.cause
    message = problem.message
    if isinstance(cause, DomainError):
        message = cause.render(WORDS)
    elif isinstance(cause, RequestValidationError):
        wrapper = "session" if path.rstrip("/").endswith("/sessions") else "backfill"
        message = _request_validation_message(cause, message, wrapper)
    return message


def render_problem(problem: Problem, request_id: str, path: str = "") -> Response:
    """``ErrorRenderer`` of this dialect: register it for the ``/api`` prefix."""
    return pipeline_error_response(
        problem.status, refine(problem, path), _type_of(problem), request_id, headers=problem.headers
    )


def render_exception(request: Request, exc: Exception) -> Response:
    """Render anything raised while handling an ``/api`` request; log server errors."""
    problem = problem_from_exception(exc)
    request_id = request_id_of(request)
    if problem.status >= 500:
        extra = {
            "request_id": request_id,
            "method": request.method,
            "path": request.url.path,
            "status": problem.status,
        }
        if problem.status == 503:
            log.warning("database unavailable: %s", exc, extra=extra)
        else:
            log.error("unhandled error: %r", exc, exc_info=(type(exc), exc, exc.__traceback__), extra=extra)
    return render_problem(problem, request_id, request.url.path)


class PipelineRoute(APIRoute):
    """Route class of the ``/api`` router: every exception becomes this dialect's error."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                return render_exception(request, exc)

        return route_handler


def _doc(description: str) -> dict[str, Any]:
    return {"model": PipelineErrorEnvelope, "description": description}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _doc("Malformed JSON or an invalid query parameter (record_invalid)."),
    401: _doc(
        "No user token (unauthorized_access), missing or unknown X-API-KEY (invalid_api_key), invalid token "
        "(invalid_oauth_token), expired token or session (expired_oauth_token)."
    ),
    403: _doc("Not a member of the team, token scope or role permission missing (unauthorized_access)."),
    404: _doc("Absent, or in another team (record_not_found)."),
    409: _doc("Overlaps an unfinished backfill of the same pipeline (conflict)."),
    413: _doc("The request body is larger than the server accepts (payload_too_large)."),
    422: _doc("Invalid values, unknown fields or an invalid status change; the message names them (record_invalid)."),
    429: _doc("Rate limit exceeded; see Retry-After (rate_limited)."),
    500: _doc("Unexpected error (server_error)."),
    503: _doc("Database unavailable (server_error)."),
}
