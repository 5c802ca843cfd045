"""The web page (docs/api.md): one HTML page, its static files, and a sign-in route.

The page is a small client (vanilla ES module, no build step) of the team API: it signs
in with ``POST /web/session`` (email + password → a raw API token of the user, kept in
the tab's ``sessionStorage``), then talks to ``/v1/teams/{team_id}/...`` with
``Authorization: Bearer <token>`` like any other client; its Sign out button revokes the
token with ``DELETE /v1/me/token``. Nothing here knows about
backfills: the routes only render the page, serve files, and translate the sign-in.

- ``GET /``                 the page (not in the OpenAPI document)
- ``GET /static/{name}``    its script and style sheet (not in the OpenAPI document)
- ``POST /web/session``     sign in; errors in the team API envelope (documented)
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, Response

from backfill import __version__
from backfill.config import Settings
from backfill.domain.timeparse import format_iso_z
from backfill.http import envelope as schemas
from backfill.http.request_ids import request_id_of
from backfill.services import sessions
from backfill.store.db import Database

WEB_DIR = Path(__file__).resolve().parent
STATIC_DIR = WEB_DIR / "static"
TEMPLATES = Jinja2Templates(directory=WEB_DIR / "templates")

STATIC_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]*\.(?:js|css|svg|png|ico)$"
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

# The page loads nothing from elsewhere and needs no inline script or style.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _error(description: str) -> dict[str, Any]:
    return {"model": schemas.ErrorEnvelope, "description": description}


router = APIRouter(tags=["web page"])


# ---- the page and its files --------------------------------------------------------------------


@router.get("/", include_in_schema=False)
def web_index(request: Request) -> Response:
    return TEMPLATES.TemplateResponse(request, "index.html", {"version": __version__}, headers=PAGE_HEADERS)


@router.get("/static/{name}", include_in_schema=False)
def web_static(name: Annotated[str, PathParam(max_length=100, pattern=STATIC_NAME)]) -> Response:
    """A file of ``web/static`` (flat: a name, never a path)."""
    path = STATIC_DIR / name
    if not re.fullmatch(STATIC_NAME, name) or not path.is_file():
        raise HTTPException(404)
    return FileResponse(
        path,
        media_type=CONTENT_TYPES[path.suffix],
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


# ---- sign-in -----------------------------------------------------------------------------------


class SignInAction(BaseModel):
    """Body of ``POST /web/session``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    email: str = Field(min_length=1, max_length=320, examples=["owner@localhost"])
    password: str = Field(min_length=1, max_length=1024)


class WebSession(BaseModel):
    token: str = Field(
        description="A new API token of the user (scopes dwh_transfers_read and dwh_transfers_write, 12 hours): "
        "send it as `Authorization: Bearer <token>` to the team API; `DELETE /v1/me/token` revokes it."
    )
    expires_time: schemas.Timestamp = Field(description="When the token expires.")
    user_id: int
    email: str
    team_id: int | None = Field(description="The user's default team: the one the page shows.")


class WebSessionResponse(BaseModel):
    meta: schemas.Meta
    data: WebSession


@router.post(
    "/web/session",
    response_model=WebSessionResponse,
    responses={
        400: _error("The body is not valid JSON (BAD_REQUEST)."),
        401: _error("Unknown email or wrong password (UNAUTHORIZED)."),
        413: _error("The request body is larger than the server accepts (PAYLOAD_TOO_LARGE)."),
        422: _error("Missing or invalid email or password (UNPROCESSABLE_ENTITY)."),
        429: _error("Rate limit or failed sign-ins exceeded; see Retry-After (TOO_MANY_REQUESTS)."),
    },
    summary="Sign in to the web page: email + password → a bearer token for the team API",
    description="Every sign-in issues a new token of the user (read + write scopes, 12 hours), as "
    "`POST /api/sessions` does; this route returns the raw token instead of the session JWT, because the "
    "team API takes `Authorization: Bearer <token>`. Sign out with `DELETE /v1/me/token` (the page's "
    "Sign out button does), which revokes it. Failed sign-ins are limited per client address and per "
    "e-mail (429). Errors use the team API envelope.",
)
async def web_create_session(request: Request, body: SignInAction) -> Response:
    db: Database = request.app.state.db
    settings: Settings = request.app.state.settings
    throttle: sessions.SignInThrottle = request.app.state.sign_in_throttle
    address = request.client.host if request.client else "unknown"
    # Refused credentials raise ``InvalidCredentials``: the app renders it as a 401 in the team API envelope.
    session = await sessions.sign_in(
        db, throttle, address, body.email, body.password, signing_secret=settings.resolved_secret()
    )
    user = session.user
    team_id = user["default_team_id"]
    data = WebSession(
        token=session.token,
        expires_time=format_iso_z(datetime.fromtimestamp(session.expires, UTC)),
        user_id=int(user["id"]),
        email=str(user["email"]),
        team_id=int(team_id) if team_id is not None else None,
    )
    body_out = WebSessionResponse(meta=schemas.Meta(request_id=request_id_of(request)), data=data)
    return Response(body_out.model_dump_json(), media_type="application/json", headers={"Cache-Control": "no-store"})
