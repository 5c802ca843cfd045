"""Authentication and authorization of the pipeline API (docs/api.md): the X-API-KEY client
key, the user token in its three carriers (cookie ``oauth_token`` raw or as a session JWT,
header ``OAUTH-TOKEN``, ``Authorization: Bearer``), sign-in, roles and teams."""

# ruff: noqa: F811  (the papi_* fixtures are imported from pipeline_conftest_helpers and requested by name)

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from tests.api.pipeline_conftest_helpers import (  # noqa: F401  (fixtures requested by name)
    PASSWORD,
    SECRET,
    PipelineWorld,
    abc_pipeline,
    add_pipeline,
    assert_pipeline_error,
    create_backfill,
    login,
    ok,
    papi_app,
    papi_client,
    papi_world,
)

from backfill.domain.model import Role
from backfill.store import auth
from backfill.store.clock import utcnow
from backfill.store.db import Database
from backfill.store.tables import api_keys, tokens

OTHER_SECRET = "another-secret-of-32-bytes-or-more"


def session_jwt(raw: str, expires: float, secret: str = SECRET) -> str:
    return jwt.encode({"expires": expires, "token": raw}, secret, algorithm="HS256")


@pytest.fixture
def backfill_id(papi_client: TestClient, papi_world: PipelineWorld) -> int:
    return int(create_backfill(papi_client, papi_world)["id"])


def get(c: TestClient, backfill_id: int, headers: dict[str, str], **params: Any) -> Any:
    return c.get(f"/api/backfills/{backfill_id}", headers=headers, params=params)


# ---- the client key ----------------------------------------------------------------------------


def test_missing_unknown_or_foreign_api_key_is_401_invalid_api_key(
    papi_client: TestClient, papi_world: PipelineWorld, backfill_id: int
) -> None:
    c, w = papi_client, papi_world
    bearer = {"Authorization": f"Bearer {w.tokens['owner']}"}
    assert_pipeline_error(get(c, backfill_id, bearer), 401, "invalid_api_key")
    assert_pipeline_error(get(c, backfill_id, {**bearer, "X-API-KEY": "not-a-key"}), 401, "invalid_api_key")
    assert_pipeline_error(get(c, backfill_id, {**bearer, "X-API-KEY": ""}), 401, "invalid_api_key")
    # A valid key of another team does not open this team's records.
    msg = assert_pipeline_error(get(c, backfill_id, w.headers(key=w.other_api_key)), 401, "invalid_api_key")
    assert str(w.team_id) in msg
    # The key is checked before the user token.
    assert_pipeline_error(c.get(f"/api/backfills/{backfill_id}"), 401, "invalid_api_key")
    ok(get(c, backfill_id, w.headers()))


def test_revoked_key_is_refused_and_no_key_is_needed_once_the_server_has_none(
    papi_client: TestClient, papi_world: PipelineWorld, backfill_id: int, db: Database
) -> None:
    c, w = papi_client, papi_world
    bearer = {"Authorization": f"Bearer {w.tokens['owner']}"}
    with db.write() as conn:
        conn.execute(update(api_keys).where(api_keys.c.team_id == w.team_id).values(revoked_at=utcnow()))
    assert_pipeline_error(get(c, backfill_id, w.headers()), 401, "invalid_api_key")
    with db.write() as conn:
        conn.execute(update(api_keys).values(revoked_at=utcnow()))
    ok(get(c, backfill_id, bearer))
    ok(get(c, backfill_id, {**bearer, "X-API-KEY": "whatever"}))  # a stale client key is harmless then


# ---- the user token --------------------------------------------------------------------------------


def test_no_user_token_is_401_unauthorized_access(
    papi_client: TestClient, papi_world: PipelineWorld, backfill_id: int
) -> None:
    c, w = papi_client, papi_world
    msg = assert_pipeline_error(get(c, backfill_id, {"X-API-KEY": w.api_key}), 401, "unauthorized_access")
    assert "oauth_token" in msg
    assert_pipeline_error(
        get(c, backfill_id, {"X-API-KEY": w.api_key, "Authorization": "Basic dXNlcjpwdw=="}), 401, "unauthorized_access"
    )


def test_every_token_carrier_works(papi_client: TestClient, papi_world: PipelineWorld, backfill_id: int) -> None:
    c, w = papi_client, papi_world
    raw = w.tokens["owner"]
    key = {"X-API-KEY": w.api_key}
    signed = session_jwt(raw, time.time() + 3600)
    for headers in (
        {**key, "Authorization": f"Bearer {raw}"},
        {**key, "OAUTH-TOKEN": raw},
        {**key, "OAUTH-TOKEN": signed},
        {**key, "Cookie": f"oauth_token={raw}"},
        {**key, "Cookie": f"oauth_token={signed}"},
    ):
        assert ok(get(c, backfill_id, headers))["id"] == backfill_id, headers


def test_invalid_tokens_are_401_invalid_oauth_token(
    papi_client: TestClient, papi_world: PipelineWorld, backfill_id: int, db: Database
) -> None:
    c, w = papi_client, papi_world
    key = {"X-API-KEY": w.api_key}
    raw = w.tokens["owner"]
    for headers in (
        {
            **key,
            "Cookie": f"oauth_token={session_jwt(raw, time.time() + 3600, secret=OTHER_SECRET)}",
        },
        {**key, "Cookie": "oauth_token=eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln"},
        {**key, "Cookie": "oauth_token=unknown-raw-token"},
        {**key, "OAUTH-TOKEN": "unknown-raw-token"},
        {**key, "Authorization": "Bearer unknown-raw-token"},
        {**key, "Cookie": f"oauth_token={jwt.encode({'expires': time.time() + 60}, SECRET, algorithm='HS256')}"},
    ):
        assert_pipeline_error(get(c, backfill_id, headers), 401, "invalid_oauth_token")
    # A well-signed session whose token was revoked (a token never used: resolutions are
    # cached for a second, so a revocation takes effect within a second).
    with db.write() as conn:
        fresh = auth.create_token(conn, w.users["owner"]).secret
        conn.execute(update(tokens).where(tokens.c.token_hash == auth.hash_secret(fresh)).values(revoked_at=utcnow()))
    signed = session_jwt(fresh, time.time() + 3600)
    assert_pipeline_error(get(c, backfill_id, {**key, "Cookie": f"oauth_token={signed}"}), 401, "invalid_oauth_token")


def test_expired_session_or_token_is_401_expired_oauth_token(
    papi_client: TestClient, papi_world: PipelineWorld, backfill_id: int
) -> None:
    c, w = papi_client, papi_world
    key = {"X-API-KEY": w.api_key}
    past = session_jwt(w.tokens["owner"], time.time() - 5)
    assert_pipeline_error(get(c, backfill_id, {**key, "Cookie": f"oauth_token={past}"}), 401, "expired_oauth_token")
    assert_pipeline_error(get(c, backfill_id, {**key, "OAUTH-TOKEN": past}), 401, "expired_oauth_token")
    # The token row itself expired (raw, or inside a session that has not).
    expired = w.tokens["expired"]
    assert_pipeline_error(
        get(c, backfill_id, {**key, "Authorization": f"Bearer {expired}"}), 401, "expired_oauth_token"
    )
    fresh_wrapper = session_jwt(expired, time.time() + 3600)
    assert_pipeline_error(
        get(c, backfill_id, {**key, "Cookie": f"oauth_token={fresh_wrapper}"}), 401, "expired_oauth_token"
    )


# ---- sign-in -------------------------------------------------------------------------------------------


def test_sign_in_returns_a_session_jwt_that_authenticates(
    papi_client: TestClient, papi_world: PipelineWorld, backfill_id: int
) -> None:
    c, w = papi_client, papi_world
    before = time.time()
    r = c.post(
        "/api/sessions",
        json={"session": {"email": "OWNER@a.example ", "password": PASSWORD}},
        headers={"X-API-KEY": w.api_key},
    )
    session = ok(r, "session")
    assert set(session) == {"token", "expires", "user"}
    assert session["user"] == {"id": w.users["owner"], "email": "owner@a.example", "default_team_id": w.team_id}
    header = jwt.get_unverified_header(session["token"])
    assert header["alg"] == "HS256"
    payload = jwt.decode(session["token"], SECRET, algorithms=["HS256"])
    assert list(payload) == ["expires", "token"]  # the seed's payload
    assert isinstance(payload["expires"], float)
    assert payload["expires"] == session["expires"]
    assert before + 12 * 3600 - 60 < payload["expires"] < time.time() + 12 * 3600 + 60  # a 12-hour session
    # The cookie, and the raw token inside it, authenticate.
    ok(get(c, backfill_id, {"X-API-KEY": w.api_key, "Cookie": f"oauth_token={session['token']}"}))
    ok(get(c, backfill_id, {"X-API-KEY": w.api_key, "Authorization": f"Bearer {payload['token']}"}))
    # Each sign-in is a new session.
    assert login(c, w) != session["token"]


def test_sign_in_refusals(papi_client: TestClient, papi_world: PipelineWorld) -> None:
    c, w = papi_client, papi_world
    key = {"X-API-KEY": w.api_key}

    def sign_in(body: Any, headers: dict[str, str] = key) -> Any:
        return c.post("/api/sessions", json=body, headers=headers)

    msg = assert_pipeline_error(
        sign_in({"session": {"email": w.emails["owner"], "password": "wrong"}}), 401, "unauthorized_access"
    )
    assert "email or password" in msg
    bad_email = sign_in({"session": {"email": "nobody@a.example", "password": PASSWORD}})
    assert_pipeline_error(bad_email, 401, "unauthorized_access")
    no_password = sign_in({"session": {"email": w.emails["viewer"], "password": PASSWORD}})
    assert_pipeline_error(no_password, 401, "unauthorized_access")
    body = {"session": {"email": w.emails["owner"], "password": PASSWORD}}
    assert_pipeline_error(sign_in(body, {}), 401, "invalid_api_key")
    assert_pipeline_error(sign_in(body, {"X-API-KEY": "nope"}), 401, "invalid_api_key")
    msg = assert_pipeline_error(sign_in({"email": "x", "password": "y"}), 422, "record_invalid")
    assert '{"session": {...}}' in msg
    assert_pipeline_error(sign_in({"session": {"email": w.emails["owner"]}}), 422, "record_invalid")


# ---- roles and teams -------------------------------------------------------------------------------


def test_viewer_reads_but_cannot_write(papi_client: TestClient, papi_world: PipelineWorld, backfill_id: int) -> None:
    c, w = papi_client, papi_world
    viewer = w.headers("viewer")
    ok(get(c, backfill_id, viewer))
    ok(c.get("/api/backfills", headers=viewer), "backfills")
    ok(c.get("/api/pipelines", headers=viewer), "pipelines")
    for r in (
        c.put(f"/api/backfills/{backfill_id}", json={"backfill": {"name": "x"}}, headers=viewer),
        c.put(
            f"/api/pipelines/{w.pipeline_uuid}/backfills/{backfill_id}",
            json={"backfill": {"status": "initial"}},
            headers=viewer,
        ),
        c.post(
            f"/api/pipelines/{w.pipeline_uuid}/backfills",
            json={"backfill": {"start_datetime": "2024-01-01", "end_datetime": "2024-01-02"}},
            headers=viewer,
        ),
        c.delete(f"/api/backfills/{backfill_id}", headers=viewer),
    ):
        msg = assert_pipeline_error(r, 403, "unauthorized_access")
        assert "viewer" in msg
    # A token without the write scope cannot write either, whatever the role.
    assert_pipeline_error(
        c.put(f"/api/backfills/{backfill_id}", json={"backfill": {"name": "x"}}, headers=w.headers("read_only")),
        403,
        "unauthorized_access",
    )
    ok(c.put(f"/api/backfills/{backfill_id}", json={"backfill": {"name": "by editor"}}, headers=w.headers("editor")))


def test_another_teams_records_are_404(papi_client: TestClient, papi_world: PipelineWorld, db: Database) -> None:
    c, w = papi_client, papi_world
    outsider = w.headers("outsider", key=w.other_api_key)
    r = c.post(
        f"/api/pipelines/{w.other_pipeline_uuid}/backfills",
        json={"backfill": {"start_datetime": "2024-01-01", "end_datetime": "2024-01-02"}},
        headers=outsider,
    )
    their_id = ok(r)["id"]
    mine = w.headers("owner")
    for response in (
        c.get(f"/api/backfills/{their_id}", headers=mine),
        c.get(f"/api/pipelines/{w.pipeline_uuid}/backfills/{their_id}", headers=mine),
        c.get(f"/api/pipelines/{w.other_pipeline_uuid}/backfills/{their_id}", headers=mine),
        c.put(f"/api/backfills/{their_id}", json={"backfill": {"status": "cancelled"}}, headers=mine),
        c.delete(f"/api/backfills/{their_id}", headers=mine),
        c.get("/api/pipeline_runs", params={"backfill_id": their_id}, headers=mine),
        c.get(f"/api/pipelines/{w.other_pipeline_uuid}", headers=mine),
        c.post(
            f"/api/pipelines/{w.other_pipeline_uuid}/backfills",
            json={"backfill": {"start_datetime": "2024-01-01", "end_datetime": "2024-01-02"}},
            headers=mine,
        ),
    ):
        assert_pipeline_error(response, 404, "record_not_found")
    assert ok(c.get(f"/api/backfills/{their_id}", headers=outsider))["status"] is None
    # A backfill of this team addressed under another of its pipelines is 404 too.
    own = create_backfill(c, w)
    add_pipeline(db, w.team_id, abc_pipeline("second"))
    assert_pipeline_error(c.get(f"/api/pipelines/second/backfills/{own['id']}", headers=mine), 404, "record_not_found")


def test_team_id_selects_another_team_of_the_user(
    papi_client: TestClient, papi_world: PipelineWorld, db: Database
) -> None:
    c, w = papi_client, papi_world
    # The owner of team A is not a member of team B.
    msg = assert_pipeline_error(
        c.get("/api/backfills", params={"team_id": w.other_team_id}, headers=w.headers("owner", key=w.other_api_key)),
        403,
        "unauthorized_access",
    )
    assert str(w.other_team_id) in msg
    # Now a member of B too (a new token: the refusal above is cached for up to a second).
    with db.write() as conn:
        auth.create_user(conn, w.emails["owner"], team_id=w.other_team_id, role=Role.EDITOR)
        w.tokens["owner"] = auth.create_token(conn, w.users["owner"]).secret
    in_b = w.headers("owner", key=w.other_api_key)
    r = c.post(
        f"/api/pipelines/{w.other_pipeline_uuid}/backfills",
        params={"team_id": w.other_team_id},
        json={"backfill": {"start_datetime": "2024-01-01", "end_datetime": "2024-01-02"}},
        headers=in_b,
    )
    created = ok(r)
    listed = c.get("/api/backfills", params={"team_id": w.other_team_id}, headers=in_b).json()
    assert [b["id"] for b in listed["backfills"]] == [created["id"]]
    # Without ?team_id= the default team (A) applies: B's backfill is not there.
    assert_pipeline_error(c.get(f"/api/backfills/{created['id']}", headers=w.headers()), 404, "record_not_found")
    # The key must belong to the selected team.
    assert_pipeline_error(
        c.get("/api/backfills", params={"team_id": w.other_team_id}, headers=w.headers("owner")),
        401,
        "invalid_api_key",
    )
    assert_pipeline_error(
        c.get("/api/backfills", params={"team_id": "abc"}, headers=w.headers()), 400, "record_invalid"
    )
