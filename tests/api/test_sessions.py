"""Sign-in and sign-out: ``POST``/``DELETE /api/sessions``, ``POST /web/session`` +
``DELETE /v1/me/token``; 12-hour session tokens; failed sign-ins limited per address and
per e-mail."""

# ruff: noqa: F811  (the papi_* fixtures are imported from pipeline_conftest_helpers and requested by name)

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.api.pipeline_conftest_helpers import (  # noqa: F401  (fixtures requested by name)
    PASSWORD,
    PipelineWorld,
    assert_pipeline_error,
    login,
    ok,
    papi_app,
    papi_client,
    papi_make_app,
    papi_settings,
    papi_world,
)

from backfill.api.ratelimit import RateLimiter, SignInLimiter
from backfill.domain.model import Scope
from backfill.services.sessions import TooManySignIns
from backfill.store import auth
from backfill.store.db import Database
from backfill.store.tables import tokens


def pipelines(client: TestClient, w: PipelineWorld, **credentials: str) -> int:
    """Status of ``GET /api/pipelines`` with the client key and the given credentials."""
    headers = {"X-API-KEY": w.api_key}
    if "bearer" in credentials:
        headers["Authorization"] = f"Bearer {credentials['bearer']}"
    if "header" in credentials:
        headers["OAUTH-TOKEN"] = credentials["header"]
    cookies = {"oauth_token": credentials["cookie"]} if "cookie" in credentials else None
    client.cookies.clear()
    return int(client.get("/api/pipelines", headers=headers, cookies=cookies).status_code)


@pytest.mark.parametrize("way", ["cookie", "header", "bearer"])
def test_delete_api_sessions_revokes_the_sessions_token(
    papi_client: TestClient, papi_world: PipelineWorld, way: str
) -> None:
    c, w = papi_client, papi_world
    session_jwt = login(c, w)
    assert pipelines(c, w, **{way: session_jwt}) == 200
    headers = {"X-API-KEY": w.api_key}
    if way == "bearer":
        headers["Authorization"] = f"Bearer {session_jwt}"
    elif way == "header":
        headers["OAUTH-TOKEN"] = session_jwt
    c.cookies.clear()
    r = c.delete("/api/sessions", headers=headers, cookies={"oauth_token": session_jwt} if way == "cookie" else None)
    assert ok(r, "session")["revoked"] is True
    for other_way in ("cookie", "header", "bearer"):  # the token is dead whichever way it is sent
        assert pipelines(c, w, **{other_way: session_jwt}) == 401
    assert pipelines(c, w, bearer=w.tokens["owner"]) == 200  # the user's other tokens live on


def test_delete_api_sessions_without_a_session_is_401(papi_client: TestClient, papi_world: PipelineWorld) -> None:
    r = papi_client.delete("/api/sessions", headers={"X-API-KEY": papi_world.api_key})
    assert_pipeline_error(r, 401, "unauthorized_access")


def test_a_session_token_lives_12_hours_and_expired_ones_are_cleaned_up(
    papi_client: TestClient, papi_world: PipelineWorld, db: Database
) -> None:
    c, w = papi_client, papi_world
    with db.write() as conn:  # a session that expired two days ago
        auth.create_token(conn, w.users["owner"], scopes=(Scope.READ,), expires_in=timedelta(days=-2))
    before = time.time()
    login(c, w)
    with db.read() as conn:
        newest = conn.execute(select(tokens).order_by(tokens.c.id.desc()).limit(1)).mappings().one()
        owner_tokens = conn.execute(
            select(func.count()).select_from(tokens).where(tokens.c.user_id == w.users["owner"])
        ).scalar_one()
    assert newest["expires_at"].timestamp() - before == pytest.approx(12 * 3600, abs=120)
    # the 2-day-old expired token is gone; the 1-second-old expired one of the world stays a day
    assert owner_tokens == 3  # the world's token, its expired token, the new session


def test_web_sign_in_token_is_revoked_by_sign_out(papi_client: TestClient, papi_world: PipelineWorld) -> None:
    c, w = papi_client, papi_world
    r = c.post("/web/session", json={"email": w.emails["owner"], "password": PASSWORD})
    assert r.status_code == 200, r.text
    token = r.json()["data"]["token"]
    me = c.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert c.delete("/v1/me/token", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert c.get("/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_failed_sign_ins_are_limited_per_address(db: Database, papi_world: PipelineWorld) -> None:
    """A random bearer or none changes nothing: the budget is the client address's; once
    spent, even the right password waits (429 with Retry-After) on both sign-in routes."""
    w = papi_world
    app = papi_make_app(db, papi_settings(sign_in_rate_limit="3/minute"))
    with TestClient(app, raise_server_exceptions=False) as c:
        for i in range(3):
            r = c.post(
                "/api/sessions",
                json={"session": {"email": f"guess{i}@a.example", "password": "wrong"}},
                headers={"X-API-KEY": w.api_key, "Authorization": f"Bearer random-{i}"},
            )
            assert_pipeline_error(r, 401, "unauthorized_access")
        r = c.post(
            "/api/sessions",
            json={"session": {"email": w.emails["owner"], "password": PASSWORD}},
            headers={"X-API-KEY": w.api_key},
        )
        assert_pipeline_error(r, 429, "rate_limited")
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        r = c.post("/web/session", json={"email": w.emails["owner"], "password": PASSWORD})
        assert r.status_code == 429, r.text
        assert r.json()["error"]["code"] == "TOO_MANY_REQUESTS"


def test_successful_sign_ins_do_not_spend_the_budget(db: Database, papi_world: PipelineWorld) -> None:
    w = papi_world
    app = papi_make_app(db, papi_settings(sign_in_rate_limit="2/minute"))
    with TestClient(app, raise_server_exceptions=False) as c:
        for _ in range(3):
            login(c, w)


def test_failed_sign_ins_are_limited_per_email_across_addresses() -> None:
    limiter = SignInLimiter(RateLimiter("2/minute"))

    async def scenario() -> None:
        await limiter.failed("10.0.0.1", "Victim@Example.com")
        await limiter.failed("10.0.0.2", "victim@example.com ")
        with pytest.raises(TooManySignIns) as excinfo:
            await limiter.check("10.0.0.3", "victim@example.com")  # a third address, same e-mail
        assert excinfo.value.retry_after >= 1
        await limiter.check("10.0.0.3", "someone.else@example.com")  # that address is fine

    asyncio.run(scenario())
