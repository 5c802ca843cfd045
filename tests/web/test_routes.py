"""The web page's routes (docs/api.md): the HTML page, its static files and the sign-in.

The app is the real one (``create_app``); the web router is included here unless the
factory already does it, so these tests hold before and after it is wired in.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import NoMatchFound

from backfill.app import create_app
from backfill.config import Settings
from backfill.domain.model import Role
from backfill.store import auth
from backfill.store.db import Database
from backfill.web import router as web_router

EMAIL = "Ada@Example.com"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def app(db: Database) -> FastAPI:
    app = create_app(db, Settings(rate_limit="100000/minute", secret_key="test-secret"))
    try:
        app.url_path_for("web_index")
    except NoMatchFound:
        app.include_router(web_router)
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def member(db: Database) -> dict[str, int]:
    with db.write() as conn:
        team_id = auth.create_team(conn, "Data team")
        user_id = auth.create_user(conn, EMAIL, team_id=team_id, role=Role.EDITOR, password=PASSWORD)
        auth.create_user(conn, "nopassword@example.com", team_id=team_id, role=Role.VIEWER)
    return {"team_id": team_id, "user_id": user_id}


def assert_error_envelope(body: dict[str, Any], code: str) -> None:
    assert set(body) == {"meta", "error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["meta"]["request_id"]


# ---- the page and its files --------------------------------------------------------------------


def test_index_serves_the_page_with_its_script_and_style(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert '<script type="module" src="/static/app.js' in html
    assert '<link rel="stylesheet" href="/static/app.css' in html
    assert 'id="signin-form"' in html
    assert '<label for="signin-email">Email</label>' in html
    # no external resources, no inline script
    assert "http://" not in html and "https://" not in html
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'self'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("name", "content_type", "marker"),
    [
        ("app.js", "text/javascript", "/web/session"),
        ("app.css", "text/css", ".grid"),
    ],
)
def test_static_files_are_served_with_their_content_types(
    client: TestClient, name: str, content_type: str, marker: str
) -> None:
    response = client.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == content_type
    assert response.headers["x-content-type-options"] == "nosniff"
    assert marker in response.text


def test_the_script_never_inserts_html(client: TestClient) -> None:
    script = client.get("/static/app.js").text
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script


@pytest.mark.parametrize("path", ["/static/missing.js", "/static/..%2Fsrc", "/static/%2E%2E/routes.py", "/static/"])
def test_unknown_or_escaping_static_paths_are_404(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert_error_envelope(response.json(), "NOT_FOUND")


def test_page_routes_are_not_in_the_openapi_document_but_the_sign_in_is(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths
    assert not any(p.startswith("/static") for p in paths)
    operation = paths["/web/session"]["post"]
    assert {"200", "401", "422"} <= set(operation["responses"])


# ---- sign-in ----------------------------------------------------------------------------------


def test_sign_in_returns_a_bearer_token_for_the_team_api(client: TestClient, member: dict[str, int]) -> None:
    response = client.post("/web/session", json={"email": "  ada@example.com ", "password": PASSWORD})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["meta"]["request_id"] == response.headers["x-request-id"]
    data = body["data"]
    assert data["team_id"] == member["team_id"]
    assert data["user_id"] == member["user_id"]
    assert data["email"] == "ada@example.com"
    assert data["expires_time"].endswith("Z")
    token = data["token"]
    assert token.count(".") != 2  # the raw token, not the pipeline dialect's JWT
    listed = client.get(f"/v1/teams/{member['team_id']}/backfills", headers={"Authorization": f"Bearer {token}"})
    assert listed.status_code == 200, listed.text
    # every sign-in issues a new token
    again = client.post("/web/session", json={"email": EMAIL, "password": PASSWORD}).json()["data"]["token"]
    assert again != token


@pytest.mark.parametrize(
    "credentials",
    [
        {"email": EMAIL, "password": "wrong"},
        {"email": "nobody@example.com", "password": PASSWORD},
        {"email": "nopassword@example.com", "password": "anything"},
    ],
)
@pytest.mark.usefixtures("member")
def test_bad_credentials_are_401_in_the_error_envelope(client: TestClient, credentials: dict[str, str]) -> None:
    response = client.post("/web/session", json=credentials)
    assert response.status_code == 401
    body = response.json()
    assert_error_envelope(body, "UNAUTHORIZED")
    assert body["error"]["message"] == "invalid email or password"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": EMAIL}, "password"),
        ({"password": PASSWORD}, "email"),
        ({"email": "", "password": PASSWORD}, "email"),
        ({"email": EMAIL, "password": 12345}, "password"),
        ({"email": EMAIL, "password": PASSWORD, "team": 1}, "team"),
    ],
)
@pytest.mark.usefixtures("member")
def test_missing_or_invalid_fields_are_422_naming_the_field(
    client: TestClient, payload: dict[str, Any], field: str
) -> None:
    response = client.post("/web/session", json=payload)
    assert response.status_code == 422
    body = response.json()
    assert_error_envelope(body, "UNPROCESSABLE_ENTITY")
    assert field in body["error"]["message"]


def test_malformed_json_is_400(client: TestClient) -> None:
    response = client.post("/web/session", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert_error_envelope(response.json(), "BAD_REQUEST")
