"""Who am I, and revoking tokens, in the team API (docs/api.md "More routes").

- ``GET /v1/me`` (any valid token): the user, the token used, the user's teams;
- ``DELETE /v1/me/token`` (any valid token): revoke the token used (sign out);
- ``GET /v1/teams/{team_id}/tokens``, ``DELETE /v1/teams/{team_id}/tokens/{token_id}``
  (admin scope + team.manage): the usable tokens of the team's members, never a secret.

A revocation drops this process's principal caches, so the very next request with the
token is a 401 (other processes stop accepting it within a second).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Path, Request
from starlette.responses import Response

from backfill.api.params import MAX_ID
from backfill.api.rendering import database, json_response
from backfill.api.schemas import tokens as s
from backfill.api.schemas.team import Meta
from backfill.api.team_api import ERROR_RESPONSES, BearerAuth, team_in_path
from backfill.domain.timeparse import format_iso_z
from backfill.http.request_ids import request_id_of
from backfill.services import auth, sessions, tokens

router = APIRouter(prefix="/v1", tags=["team API"], responses=ERROR_RESPONSES)
# The team's tokens: {team_id} declared once, as in the team API.
team_router = APIRouter(
    prefix="/v1/teams/{team_id}", tags=["team API"], responses=ERROR_RESPONSES, dependencies=[Depends(team_in_path)]
)

AnyToken = Annotated[auth.Principal, Depends(BearerAuth(None))]
Manager = Annotated[auth.Principal, Depends(BearerAuth(auth.MANAGE))]
TokenId = Annotated[int, Path(ge=1, le=MAX_ID, description="ID of the token.")]


def drop_cached_principals(app: FastAPI) -> None:
    """Forget every cached token resolution of this process (after a revocation)."""
    for name in ("principal_cache", "pipeline_principal_cache"):
        cache = getattr(app.state, name, None)
        if isinstance(cache, auth.PrincipalCache):
            cache.clear()


def _revoked(request: Request, token_id: int) -> Response:
    drop_cached_principals(request.app)
    meta = Meta(request_id=request_id_of(request))
    return json_response(s.RevokedTokenResponse(meta=meta, data=s.RevokedToken(id=token_id)))


@router.get("/me", response_model=s.MeResponse, summary="The user and token of this request, and the user's teams")
def get_me(request: Request, principal: AnyToken) -> Response:
    me = tokens.me(
        database(request),
        user_id=principal.user_id,
        token_id=principal.token_id,
        scopes=principal.scopes,
        expires_at=principal.expires_at,
    )
    data = s.Me(
        user=s.MeUser(id=me.user_id, email=me.email),
        token=s.MeToken(
            id=me.token_id,
            scopes=sorted(me.scopes),
            expires_time=format_iso_z(me.expires_at) if me.expires_at else None,
        ),
        teams=[s.MeTeam(id=t["id"], name=t["name"], role=t["role"]) for t in me.teams],
    )
    return json_response(s.MeResponse(meta=Meta(request_id=request_id_of(request)), data=data))


@router.delete(
    "/me/token",
    response_model=s.RevokedTokenResponse,
    summary="Revoke the token of this request (sign out); later requests with it get 401",
)
def revoke_my_token(request: Request, principal: AnyToken) -> Response:
    sessions.logout(database(request), principal.token_id)
    return _revoked(request, principal.token_id)


@team_router.get(
    "/tokens",
    response_model=s.TeamTokenListResponse,
    summary="The usable tokens of the team's members (never a secret)",
)
def list_team_tokens(request: Request, principal: Manager) -> Response:
    rows = tokens.team_tokens(database(request), principal.actor)
    data = [
        s.TeamToken(
            id=r["id"],
            user_id=r["user_id"],
            email=r["email"],
            scopes=sorted(r["scopes"]),
            created_time=format_iso_z(r["created_at"]),
            expires_time=format_iso_z(r["expires_at"]) if r["expires_at"] else None,
        )
        for r in rows
    ]
    return json_response(s.TeamTokenListResponse(meta=Meta(request_id=request_id_of(request)), data=data))


@team_router.delete(
    "/tokens/{token_id}",
    response_model=s.RevokedTokenResponse,
    summary="Revoke a token of a member of the team",
)
def revoke_team_token(request: Request, token_id: TokenId, principal: Manager) -> Response:
    tokens.revoke_team_token(database(request), principal.actor, token_id)
    return _revoked(request, token_id)
