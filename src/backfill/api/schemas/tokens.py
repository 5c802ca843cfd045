"""Pydantic models of ``/v1/me`` and the team's tokens (docs/api.md "More routes")."""

from __future__ import annotations

from pydantic import BaseModel, Field

from backfill.api.schemas.team import Meta, Timestamp
from backfill.domain.model import Role


class MeUser(BaseModel):
    id: int
    email: str


class MeToken(BaseModel):
    id: int
    scopes: list[str] = Field(description="dwh_transfers_read, dwh_transfers_write, admin.")
    expires_time: Timestamp | None = Field(description="null: never expires.")


class MeTeam(BaseModel):
    id: int
    name: str
    role: Role


class Me(BaseModel):
    user: MeUser
    token: MeToken = Field(description="The token this request was sent with.")
    teams: list[MeTeam] = Field(description="The teams of the user, with the role in each.")


class MeResponse(BaseModel):
    meta: Meta
    data: Me


class TeamToken(BaseModel):
    """A usable token of a member of the team (never its secret)."""

    id: int
    user_id: int
    email: str
    scopes: list[str]
    created_time: Timestamp
    expires_time: Timestamp | None = Field(description="null: never expires.")


class TeamTokenListResponse(BaseModel):
    meta: Meta
    data: list[TeamToken]


class RevokedToken(BaseModel):
    id: int = Field(description="The revoked token; requests with it now get 401.")
    revoked: bool = True


class RevokedTokenResponse(BaseModel):
    meta: Meta
    data: RevokedToken
