"""docs/api.md "More routes": ``GET /v1/me``, ``DELETE /v1/me/token`` and the team's tokens
(list without secrets, revoke) — a revoked token is a 401 from the next request on."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from backfill.domain.model import Role, Scope
from backfill.store import auth
from backfill.store.db import Database
from backfill.store.tables import tokens

from .conftest import World, assert_error, assert_ok, bearer


def new_token(db: Database, user_id: int, *scopes: Scope) -> tuple[int, str]:
    with db.write() as conn:
        issued = auth.create_token(conn, user_id, scopes=scopes or (Scope.READ, Scope.WRITE))
    return issued.id, issued.secret


def token_id_of(db: Database, secret: str) -> int:
    with db.read() as conn:
        info = auth.lookup_token(conn, secret)
    assert info is not None
    return info.token_id


def test_me_names_the_user_the_token_and_the_teams(client: TestClient, db: Database, world: World) -> None:
    with db.write() as conn:  # the owner of team A is also a viewer of team B
        auth.create_user(conn, "owner@a.example", team_id=world.other_team_id, role=Role.VIEWER)
    me = assert_ok(client.get("/v1/me", headers=world.auth("owner")))
    assert me["user"] == {"id": world.users["owner"], "email": "owner@a.example"}
    assert me["token"] == {
        "id": token_id_of(db, world.tokens["owner"]),
        "scopes": ["dwh_transfers_read", "dwh_transfers_write"],
        "expires_time": None,
    }
    assert me["teams"] == [
        {"id": world.team_id, "name": "Team A", "role": "owner"},
        {"id": world.other_team_id, "name": "Team B", "role": "viewer"},
    ]
    # any valid token will do: read-only scope, admin scope
    assert assert_ok(client.get("/v1/me", headers=world.auth("viewer_read_only")))["teams"][0]["role"] == "viewer"
    assert assert_ok(client.get("/v1/me", headers=world.auth("admin")))["token"]["scopes"] == ["admin"]


def test_me_without_a_valid_token_is_401(client: TestClient, world: World) -> None:
    assert_error(client.get("/v1/me"), 401, "UNAUTHORIZED")
    assert_error(client.get("/v1/me", headers=bearer("not-a-token")), 401, "UNAUTHORIZED")
    assert_error(client.get("/v1/me", headers=world.auth("expired")), 401, "UNAUTHORIZED")


def test_delete_me_token_signs_out_at_once(client: TestClient, db: Database, world: World) -> None:
    _, secret = new_token(db, world.users["editor"])
    headers = bearer(secret)
    backfill_url = f"/v1/teams/{world.team_id}/backfills/{world.backfill_id}"
    assert_ok(client.get(backfill_url, headers=headers))  # cached for a second now
    revoked = assert_ok(client.delete("/v1/me/token", headers=headers))
    assert revoked == {"id": token_id_of_revoked(db, secret), "revoked": True}
    assert_error(client.get(backfill_url, headers=headers), 401, "UNAUTHORIZED")
    assert_error(client.get("/v1/me", headers=headers), 401, "UNAUTHORIZED")
    assert_error(client.delete("/v1/me/token", headers=headers), 401, "UNAUTHORIZED")
    # the user's other tokens still work
    assert_ok(client.get(backfill_url, headers=world.auth("editor")))


def token_id_of_revoked(db: Database, secret: str) -> int:

    with db.read() as conn:
        row = conn.execute(
            select(tokens.c.id, tokens.c.revoked_at).where(tokens.c.token_hash == auth.hash_secret(secret))
        )
        found = row.one()
    assert found.revoked_at is not None
    return int(found.id)


def tokens_url(w: World, team_id: int | None = None) -> str:
    return f"/v1/teams/{team_id or w.team_id}/tokens"


def test_team_tokens_list_the_members_usable_tokens_without_secrets(
    client: TestClient, db: Database, world: World
) -> None:
    listed = assert_ok(client.get(tokens_url(world), headers=world.auth("admin")))
    ids = {t["id"] for t in listed}
    team_a_users = {world.users[u] for u in ("owner", "admin", "editor", "viewer")}
    assert {t["user_id"] for t in listed} == team_a_users
    assert token_id_of(db, world.tokens["outsider"]) not in ids  # another team's member
    assert len(listed) == 7  # the 7 usable tokens of team A's members (not the expired one)
    for token in listed:
        assert set(token) == {"id", "user_id", "email", "scopes", "created_time", "expires_time"}
    text = client.get(tokens_url(world), headers=world.auth("admin")).text
    assert all(secret not in text for secret in world.tokens.values())
    assert auth.hash_secret(world.tokens["owner"]) not in text


def test_team_tokens_need_the_admin_scope_and_team_manage(client: TestClient, db: Database, world: World) -> None:
    _, editor_admin = new_token(db, world.users["editor"], Scope.ADMIN)
    _, outsider_admin = new_token(db, world.users["outsider"], Scope.ADMIN)
    for method in ("GET", "DELETE"):
        url = tokens_url(world) + ("/1" if method == "DELETE" else "")
        assert_error(client.request(method, url), 401, "UNAUTHORIZED")
        assert_error(client.request(method, url, headers=world.auth("owner")), 403, "FORBIDDEN")  # no admin scope
        assert_error(client.request(method, url, headers=bearer(outsider_admin)), 403, "FORBIDDEN")  # not a member
        assert_error(client.request(method, url, headers=bearer(editor_admin)), 403, "PERMISSION_ERROR")


def test_revoking_a_members_token(client: TestClient, db: Database, world: World) -> None:
    victim_id, victim = new_token(db, world.users["viewer"])
    backfill_url = f"/v1/teams/{world.team_id}/backfills/{world.backfill_id}"
    assert_ok(client.get(backfill_url, headers=bearer(victim)))
    revoked: Any = assert_ok(client.delete(f"{tokens_url(world)}/{victim_id}", headers=world.auth("admin")))
    assert revoked == {"id": victim_id, "revoked": True}
    assert_error(client.get(backfill_url, headers=bearer(victim)), 401, "UNAUTHORIZED")
    listed = assert_ok(client.get(tokens_url(world), headers=world.auth("admin")))
    assert victim_id not in {t["id"] for t in listed}
    # a token of another team's member, or none at all: 404, nothing revoked
    outsider_id = token_id_of(db, world.tokens["outsider"])
    assert_error(client.delete(f"{tokens_url(world)}/{outsider_id}", headers=world.auth("admin")), 404, "NOT_FOUND")
    assert_error(client.delete(f"{tokens_url(world)}/999999", headers=world.auth("admin")), 404, "NOT_FOUND")
    assert_ok(client.get("/v1/me", headers=world.auth("outsider")))
