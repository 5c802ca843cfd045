"""Sign-in and sign-out of the pipeline API (``/api/sessions``, docs/api.md).

- ``POST /api/sessions`` ``{"session": {"email", "password"}}`` → the session JWT (the
  ``oauth_token`` cookie value) of a new 12-hour token; failed attempts are limited per
  client address and per e-mail (429 ``rate_limited``);
- ``DELETE /api/sessions`` revokes the token of the calling session, whichever way it is
  sent (cookie, ``OAUTH-TOKEN`` header or Bearer); later requests with it get 401.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from backfill.api.pipeline_api import Sent, api_key_scheme, check_api_key
from backfill.api.pipeline_errors import ERROR_RESPONSES, PipelineRoute
from backfill.api.ratelimit import client_address
from backfill.api.rendering import database, json_response
from backfill.api.schemas import pipeline as s
from backfill.api.token_api import drop_cached_principals
from backfill.services import auth, sessions

router = APIRouter(prefix="/api", tags=["pipeline API"], route_class=PipelineRoute, responses=ERROR_RESPONSES)


def _signing_secret(request: Request) -> str:
    secret: str = request.app.state.pipeline_session_secret
    return secret


@router.post(
    "/sessions",
    response_model=s.PipelineSessionResponse,
    summary="Sign in: email + password → the session token (send it as the oauth_token cookie)",
    description="Needs the `X-API-KEY` client key when the server has any; no user token. Every sign-in issues "
    "a new token of the user (read + write scopes, 12 hours; `DELETE /api/sessions` revokes it), wrapped in an "
    'HS256 JWT `{"expires", "token"}` signed with the server secret. Failed sign-ins are limited per client '
    "address and per e-mail (429).",
)
async def create_session(
    request: Request,
    body: s.PipelineSessionBody,
    api_key: Annotated[str | None, Depends(api_key_scheme)],
) -> Response:
    db = database(request)
    await run_in_threadpool(check_api_key, db, api_key)
    # Refused credentials raise ``InvalidCredentials``, a 401 in this dialect's words.
    session = await sessions.sign_in(
        db,
        request.app.state.sign_in_throttle,
        client_address(request.scope),
        body.session.email,
        body.session.password,
        signing_secret=_signing_secret(request),
    )
    user = session.user
    return json_response(
        s.PipelineSessionResponse(
            session=s.PipelineSession(
                token=session.jwt,
                expires=session.expires,
                user=s.PipelineSessionUser(id=user["id"], email=user["email"], default_team_id=user["default_team_id"]),
            )
        )
    )


@router.delete(
    "/sessions",
    response_model=s.PipelineSignOutResponse,
    summary="Sign out: revoke the token of this session (cookie, OAUTH-TOKEN header or Bearer)",
)
def delete_session(request: Request, sent: Sent) -> Response:
    db = database(request)
    check_api_key(db, sent.api_key)
    secret = sent.user_secret(request)
    principal = auth.resolve(db, secret, team_id=None)
    sessions.logout(db, principal.token_id)
    drop_cached_principals(request.app)
    return json_response(s.PipelineSignOutResponse(session=s.PipelineSignOut(token_id=principal.token_id)))
