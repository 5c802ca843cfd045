"""Authorization matrix over every team API route (docs/api.md).

Check order: authenticate (401) → scope (403 FORBIDDEN) → membership (403 FORBIDDEN)
→ permission (403 PERMISSION_ERROR) → resource (404, also for another team's ids).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import delete, update

from backfill.app import AUTH_CACHE_SECONDS, create_app
from backfill.domain.model import Permission, Role, Scope
from backfill.services import auth as auth_service
from backfill.store import auth
from backfill.store.db import Database
from backfill.store.tables import memberships, tokens

from .conftest import World, assert_error, assert_ok, bearer, build_world, make_settings

JANUARY = {"range_start": "2024-01-01", "range_end": "2024-01-31"}
_years = itertools.count()


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    template: str
    access: str  # "read" | "write"
    body: dict[str, Any] | None = None
    has_resource_id: bool = True

    def url(self, w: World, *, other_ids: bool = False) -> str:
        return self.template.format(
            team=w.team_id,
            backfill=w.other_backfill_id if other_ids else w.backfill_id,
            transfer=w.other_pipeline_id if other_ids else w.pipeline_id,
            run=w.other_run_id if other_ids else w.run_id,
        )

    def fresh_body(self) -> dict[str, Any] | None:
        """Creates must not overlap each other in the shared world: a new year each time."""
        if self.name != "create":
            return self.body
        year = 2100 + next(_years)
        return {"range_start": f"{year}-01-01", "range_end": f"{year}-01-31"}

    def call(self, client: TestClient, w: World, headers: dict[str, str], *, other_ids: bool = False) -> Any:
        url = self.url(w, other_ids=other_ids)
        return client.request(self.method, url, json=self.fresh_body(), headers=headers)


@pytest.fixture
def client(shared_client: TestClient) -> TestClient:
    """The matrix reads (and only adds to) one world per module: fast on both databases."""
    return shared_client


@pytest.fixture
def world(shared_world: World) -> World:
    return shared_world


ROUTES = [
    Route("create", "POST", "/v1/teams/{team}/transfers/{transfer}/backfills", "write", JANUARY),
    Route("dry_run", "POST", "/v1/teams/{team}/transfers/{transfer}/backfills:dry_run", "read", JANUARY),
    Route("list", "GET", "/v1/teams/{team}/backfills", "read", has_resource_id=False),
    Route("get", "GET", "/v1/teams/{team}/backfills/{backfill}", "read"),
    Route("latest", "GET", "/v1/teams/{team}/transfers/{transfer}/backfills/latest", "read"),
    Route("patch", "PATCH", "/v1/teams/{team}/backfills/{backfill}", "write", {"paused": True}),
    Route("backfill_runs", "GET", "/v1/teams/{team}/backfills/{backfill}/runs", "read"),
    Route("rerun", "POST", "/v1/teams/{team}/backfills/{backfill}/runs:rerun", "write", {"statuses": ["FAILED"]}),
    Route("transfers", "GET", "/v1/teams/{team}/transfers", "read", has_resource_id=False),
    Route("transfer", "GET", "/v1/teams/{team}/transfers/{transfer}", "read"),
    Route(
        "transfer_runs",
        "GET",
        "/v1/teams/{team}/transfers/{transfer}/runs?start_date=2023-01-01&end_date=2023-12-31",
        "read",
    ),
    Route("run", "GET", "/v1/teams/{team}/transfer_runs/{run}", "read"),
    Route("run_logs", "GET", "/v1/teams/{team}/transfer_runs/{run}/logs", "read"),
    Route("coverage", "GET", "/v1/teams/{team}/transfers/{transfer}/coverage?start=2023-01-01&end=2023-01-31", "read"),
    Route("backfill_coverage", "GET", "/v1/teams/{team}/backfills/{backfill}/coverage", "read"),
    Route("notifications", "GET", "/v1/teams/{team}/backfills/{backfill}/notifications", "read"),
]
WRITE_ROUTES = [r for r in ROUTES if r.access == "write"]
READ_ROUTES = [r for r in ROUTES if r.access == "read"]
ids = pytest.mark.parametrize("route", ROUTES, ids=[r.name for r in ROUTES])
# Routes of any valid token or of admin + team.manage: their own matrix is in test_me_tokens.py.
TOKEN_ROUTES = {
    ("GET", "/v1/me"),
    ("DELETE", "/v1/me/token"),
    ("GET", "/v1/teams/{team_id}/tokens"),
    ("DELETE", "/v1/teams/{team_id}/tokens/{token_id}"),
}


def test_the_matrix_covers_every_team_api_operation(shared_client: TestClient) -> None:
    app: FastAPI = shared_client.app  # type: ignore[assignment]
    declared = {
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        if path.startswith("/v1/")
        for method in item
    }
    covered = {
        (
            r.method,
            r.template.split("?")[0]
            .replace("{team}", "{team_id}")
            .replace("{backfill}", "{backfill_id}")
            .replace("{transfer}", "{transfer_id}")
            .replace("{run}", "{run_id}"),
        )
        for r in ROUTES
    }
    assert declared == covered | TOKEN_ROUTES


# ---- 401 ------------------------------------------------------------------------------------------


@ids
@pytest.mark.parametrize("credentials", ["none", "unknown", "expired", "revoked", "basic", "empty_bearer"])
def test_unauthenticated_is_401(
    client: TestClient, module_db: Database, world: World, route: Route, credentials: str
) -> None:
    headers: dict[str, str]
    if credentials == "none":
        headers = {}
    elif credentials == "unknown":
        headers = bearer("not-a-real-token")
    elif credentials == "expired":
        headers = world.auth("expired")
    elif credentials == "revoked":
        with module_db.write() as conn:
            secret = security_token(conn, world.users["owner"])
            conn.execute(
                update(tokens)
                .where(tokens.c.token_hash == auth.hash_secret(secret))
                .values(revoked_at=datetime.now(UTC))
            )
        headers = bearer(secret)
    elif credentials == "basic":
        headers = {"Authorization": "Basic dXNlcjpwYXNz"}
    else:
        headers = {"Authorization": "Bearer "}
    error = assert_error(route.call(client, world, headers), 401, "UNAUTHORIZED")
    assert error["message"]


# ---- 403 FORBIDDEN: scope, membership -------------------------------------------------------------


@ids
def test_token_without_the_scope_is_403_forbidden(client: TestClient, world: World, route: Route) -> None:
    # the editor's token lacking the route's scope: the role alone does not allow it
    token = "read_only" if route.access == "write" else "write_only"
    error = assert_error(route.call(client, world, world.auth(token)), 403, "FORBIDDEN")
    expected = Scope.WRITE if route.access == "write" else Scope.READ
    assert expected.value in error["message"]


@ids
def test_non_member_is_403_forbidden(client: TestClient, world: World, route: Route) -> None:
    assert_error(route.call(client, world, world.auth("outsider")), 403, "FORBIDDEN")


@ids
def test_unknown_or_invalid_team_is_403_forbidden(client: TestClient, world: World, route: Route) -> None:
    for team in ("999999", "abc", "0"):
        url = route.url(world).replace(f"/v1/teams/{world.team_id}/", f"/v1/teams/{team}/", 1)
        response = client.request(route.method, url, json=route.fresh_body(), headers=world.auth("owner"))
        assert_error(response, 403, "FORBIDDEN")


# ---- 403 PERMISSION_ERROR / allowed ------------------------------------------------------------------


@pytest.mark.parametrize("route", WRITE_ROUTES, ids=[r.name for r in WRITE_ROUTES])
def test_viewer_on_write_routes_is_permission_error(client: TestClient, world: World, route: Route) -> None:
    error = assert_error(route.call(client, world, world.auth("viewer")), 403, "PERMISSION_ERROR")
    assert Permission.EDIT.value in error["message"]


@pytest.mark.parametrize("route", READ_ROUTES, ids=[r.name for r in READ_ROUTES])
def test_viewer_on_read_routes_is_allowed(client: TestClient, world: World, route: Route) -> None:
    assert_ok(route.call(client, world, world.auth("viewer")))


@ids
@pytest.mark.parametrize("who", ["editor", "owner", "admin"])
def test_editor_owner_and_admin_scope_are_allowed(client: TestClient, world: World, route: Route, who: str) -> None:
    # "admin" holds only the admin scope, which implies read and write
    assert_ok(route.call(client, world, world.auth(who)))


# ---- 404: another team's ids ----------------------------------------------------------------------------

CROSS_TEAM = [r for r in ROUTES if r.has_resource_id]


@pytest.mark.parametrize("route", CROSS_TEAM, ids=[r.name for r in CROSS_TEAM])
def test_other_teams_ids_are_404(client: TestClient, world: World, route: Route) -> None:
    assert_error(route.call(client, world, world.auth("editor"), other_ids=True), 404, "NOT_FOUND")


# ---- the order of the checks ----------------------------------------------------------------------------


@ids
def test_order_401_before_403(client: TestClient, module_db: Database, world: World, route: Route) -> None:
    with module_db.write() as conn:  # an outsider's expired token: authentication fails first
        secret = security_token(conn, world.users["outsider"], expires_in=timedelta(seconds=-5))
    assert_error(route.call(client, world, bearer(secret), other_ids=True), 401, "UNAUTHORIZED")


@ids
def test_order_scope_before_membership(client: TestClient, world: World, route: Route) -> None:
    token = "outsider_read_only"
    response = route.call(client, world, world.auth(token))
    if route.access == "write":
        error = assert_error(response, 403, "FORBIDDEN")
        assert Scope.WRITE.value in error["message"]
    else:
        error = assert_error(response, 403, "FORBIDDEN")
        assert "member" in error["message"]


@pytest.mark.parametrize("route", WRITE_ROUTES, ids=[r.name for r in WRITE_ROUTES])
def test_order_scope_before_permission_before_resource(client: TestClient, world: World, route: Route) -> None:
    # a viewer's read-only token: the scope fails first
    error = assert_error(route.call(client, world, world.auth("viewer_read_only")), 403, "FORBIDDEN")
    assert Scope.WRITE.value in error["message"]
    # a viewer with the scope, on another team's id: the permission fails before the lookup
    assert_error(route.call(client, world, world.auth("viewer"), other_ids=True), 403, "PERMISSION_ERROR")


@pytest.fixture
def fresh(db: Database) -> Iterator[tuple[TestClient, World]]:
    """A world of its own, for tests that change memberships and tokens."""
    w = build_world(db)
    with TestClient(create_app(db, make_settings()), raise_server_exceptions=False) as c:
        yield c, w


# ---- no stale authorization -----------------------------------------------------------------------------


def test_revocation_membership_and_role_changes_apply_within_a_second(
    db: Database, fresh: tuple[TestClient, World]
) -> None:
    client, world = fresh
    url = f"/v1/teams/{world.team_id}/backfills/{world.backfill_id}"
    # resolved (and cached) just before the changes
    assert_ok(client.get(url, headers=world.auth("viewer")))
    assert_ok(client.get(url, headers=world.auth("editor")))
    assert_ok(client.get(url, headers=world.auth("admin")))
    with db.write() as conn:
        conn.execute(
            delete(memberships).where(
                memberships.c.user_id == world.users["viewer"], memberships.c.team_id == world.team_id
            )
        )
        conn.execute(
            update(tokens).where(tokens.c.user_id == world.users["editor"]).values(revoked_at=datetime.now(UTC))
        )
        conn.execute(
            update(memberships)
            .where(memberships.c.user_id == world.users["admin"], memberships.c.team_id == world.team_id)
            .values(role=Role.VIEWER.value)
        )
    changed = time.monotonic()
    deadline = changed + AUTH_CACHE_SECONDS + 1.0
    outcomes: tuple[int, int, int] = (200, 200, 200)
    while time.monotonic() < deadline:
        outcomes = (
            client.get(url, headers=world.auth("viewer")).status_code,
            client.get(url, headers=world.auth("editor")).status_code,
            client.patch(url, json={"paused": True}, headers=world.auth("admin")).status_code,
        )
        if outcomes == (403, 401, 403):
            break
        time.sleep(0.1)
    assert outcomes == (403, 401, 403)
    assert time.monotonic() - changed <= AUTH_CACHE_SECONDS + 0.5
    assert_error(client.get(url, headers=world.auth("viewer")), 403, "FORBIDDEN")
    assert_error(client.get(url, headers=world.auth("editor")), 401, "UNAUTHORIZED")
    assert_error(client.patch(url, json={"paused": True}, headers=world.auth("admin")), 403, "PERMISSION_ERROR")


def test_role_change_applies_with_the_cache_off(db: Database, fresh: tuple[TestClient, World]) -> None:
    client, world = fresh
    client.app.state.principal_cache.ttl_seconds = 0  # type: ignore[attr-defined]
    url = f"/v1/teams/{world.team_id}/backfills/{world.backfill_id}"
    assert_error(client.patch(url, json={"paused": True}, headers=world.auth("viewer")), 403, "PERMISSION_ERROR")
    with db.write() as conn:
        conn.execute(
            update(memberships)
            .where(memberships.c.user_id == world.users["viewer"], memberships.c.team_id == world.team_id)
            .values(role=Role.EDITOR.value)
        )
    assert_ok(client.patch(url, json={"paused": True}, headers=world.auth("viewer")))


def test_expired_token_is_refused_even_when_cached() -> None:
    cache = auth_service.PrincipalCache(ttl_seconds=60)
    soon = datetime.now(UTC) + timedelta(milliseconds=50)
    principal = auth_service.Principal(1, 1, frozenset({"admin"}), 1, Role.OWNER, expires_at=soon)
    cache.put("secret", 1, principal)
    assert cache.get("secret", 1) is principal
    assert cache.get("secret", 2) is None
    time.sleep(0.06)
    with pytest.raises(auth_service.TokenExpired):
        cache.get("secret", 1)


# ---- the neutral security module (shared with the pipeline dialect) --------------------------------------


def test_security_module_is_dialect_neutral(module_db: Database, world: World) -> None:
    db = module_db
    principal = auth_service.resolve(db, world.tokens["viewer"], team_id=world.team_id)
    assert principal.role is Role.VIEWER
    assert auth_service.authorize(principal, auth_service.READ) is principal
    with pytest.raises(auth_service.PermissionDenied):
        auth_service.authorize(principal, auth_service.WRITE)
    default = auth_service.resolve(db, world.tokens["outsider"], team_id=None, default_team=True)
    assert default.team_id == world.other_team_id
    assert default.role is Role.OWNER
    with pytest.raises(auth_service.TokenExpired):
        auth_service.resolve(db, world.tokens["expired"], team_id=world.team_id)
    with pytest.raises(auth_service.TokenInvalid):
        auth_service.resolve(db, "nope", team_id=world.team_id)
    with pytest.raises(auth_service.TokenMissing):
        auth_service.resolve(db, None, team_id=world.team_id)
    assert auth_service.bearer_secret("bearer abc ") == "abc"
    assert auth_service.bearer_secret("Token abc") is None


def test_session_jwt_roundtrip() -> None:
    future = datetime.now(UTC) + timedelta(hours=1)
    jwt_value = auth_service.session_jwt("raw-token", future.timestamp(), "s3cret-s3cret-s3cret-s3cret-s3cret")
    assert auth_service.token_from_session(jwt_value, "s3cret-s3cret-s3cret-s3cret-s3cret") == "raw-token"
    assert auth_service.token_from_session("raw-token", "s3cret-s3cret-s3cret-s3cret-s3cret") == "raw-token"
    with pytest.raises(auth_service.TokenInvalid):
        auth_service.token_from_session(jwt_value, "other-secret-other-secret-other-secret")
    past = auth_service.session_jwt(
        "raw-token", (datetime.now(UTC) - timedelta(seconds=1)).timestamp(), "s3cret-s3cret-s3cret-s3cret-s3cret"
    )
    with pytest.raises(auth_service.TokenExpired):
        auth_service.token_from_session(past, "s3cret-s3cret-s3cret-s3cret-s3cret")


def security_token(conn: Any, user_id: int, *, expires_in: timedelta | None = None) -> str:
    return auth.create_token(conn, user_id, scopes=(Scope.READ, Scope.WRITE), expires_in=expires_in).secret
