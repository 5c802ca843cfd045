"""docs/api.md "Limits": body size (413 while streaming, both dialects, unauthenticated routes
too), variables size and depth, NaN/Infinity anywhere in a body, names, IANA timezones."""

# ruff: noqa: F811  (the papi_* fixtures are imported from pipeline_conftest_helpers and requested by name)

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.api.pipeline_conftest_helpers import (  # noqa: F401  (fixtures requested by name)
    PipelineWorld,
    assert_pipeline_error,
    ok,
    papi_make_app,
    papi_settings,
    papi_world,
)

from backfill.domain.errors import ValidationError
from backfill.domain.limits import MAX_JSON_DEPTH, MAX_VARIABLES_BYTES, check_variables
from backfill.domain.timeparse import load_zone
from backfill.store.db import Database

MIB = 1024 * 1024


@pytest.fixture
def app(db: Database) -> FastAPI:
    return papi_make_app(db)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def team_url(w: PipelineWorld) -> str:
    return f"/v1/teams/{w.team_id}/transfers/{w.pipeline_id}/backfills"


def pipeline_url(w: PipelineWorld) -> str:
    return f"/api/pipelines/{w.pipeline_uuid}/backfills"


def team_error(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"meta", "error"}, body
    assert body["error"]["code"] == code, body
    assert body["meta"]["request_id"] == response.headers["X-Request-ID"]
    return str(body["error"]["message"])


def raw_json(client: TestClient, method: str, url: str, text: str, headers: dict[str, str]) -> Any:
    return client.request(method, url, content=text.encode(), headers={**headers, "Content-Type": "application/json"})


# ---- body size ----------------------------------------------------------------------------------


def big_body(size: int) -> bytes:
    """Valid JSON of ``size`` bytes."""
    prefix, suffix = b'{"range_start": "2024-01-01", "range_end": "2024-01-02", "name": "', b'"}'
    return prefix + b"x" * (size - len(prefix) - len(suffix)) + suffix


def test_a_body_over_one_mib_is_413_in_each_dialect(client: TestClient, papi_world: PipelineWorld) -> None:
    w = papi_world
    body = big_body(MIB + 1)
    r = client.post(team_url(w), content=body, headers={**w.headers(), "Content-Type": "application/json"})
    assert "1048576 bytes" in team_error(r, 413, "PAYLOAD_TOO_LARGE")
    assert r.headers["X-RateLimit-Limit"]
    r = client.post(pipeline_url(w), content=body, headers={**w.headers(), "Content-Type": "application/json"})
    assert_pipeline_error(r, 413, "payload_too_large")


def test_unauthenticated_routes_refuse_large_bodies_too(client: TestClient) -> None:
    body = b'{"session": {"email": "a@b.c", "password": "' + b"p" * (2 * MIB) + b'"}}'
    r = client.post("/api/sessions", content=body, headers={"Content-Type": "application/json"})
    assert_pipeline_error(r, 413, "payload_too_large")
    r = client.post("/web/session", content=body, headers={"Content-Type": "application/json"})
    team_error(r, 413, "PAYLOAD_TOO_LARGE")


def test_a_body_of_exactly_the_limit_is_read(client: TestClient, papi_world: PipelineWorld) -> None:
    """The limit is not off by one: the whole 1 MiB is parsed (and the name refused)."""
    w = papi_world
    r = client.post(team_url(w), content=big_body(MIB), headers={**w.headers(), "Content-Type": "application/json"})
    assert "name" in team_error(r, 422, "UNPROCESSABLE_ENTITY")


def test_the_limit_is_a_setting(db: Database, papi_world: PipelineWorld) -> None:
    w = papi_world
    app = papi_make_app(db, papi_settings(max_body_bytes=2048))
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post(team_url(w), content=big_body(2049), headers={**w.headers(), "Content-Type": "application/json"})
        team_error(r, 413, "PAYLOAD_TOO_LARGE")


class EndlessBody:
    """An ASGI ``receive`` that streams 64 KiB chunks without end (no Content-Length):
    counts what the server pulled before it answered."""

    chunk = b" " * (64 * 1024)

    def __init__(self) -> None:
        self.pulled = 0

    async def __call__(self) -> dict[str, Any]:
        self.pulled += len(self.chunk)
        return {"type": "http.request", "body": self.chunk, "more_body": True}


def stream_into(app: FastAPI, path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any], int]:
    """Send an endless chunked body to ``path`` in process; (status, JSON body, bytes pulled)."""
    receive = EndlessBody()
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        + [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return int(start["status"]), json.loads(body), receive.pulled


@pytest.mark.parametrize("dialect", ["team", "pipeline", "sign-in"])
def test_a_streamed_body_is_refused_as_soon_as_it_passes_the_limit(
    app: FastAPI, papi_world: PipelineWorld, dialect: str
) -> None:
    """The body never ends: the server must stop reading after 1 MiB (+ one chunk) and
    answer 413 — it neither waits for the end nor buffers it."""
    w = papi_world
    path = {"team": team_url(w), "pipeline": pipeline_url(w), "sign-in": "/api/sessions"}[dialect]
    headers = w.headers() if dialect != "sign-in" else {}
    status, body, pulled = stream_into(app, path, headers)
    assert status == 413
    assert pulled <= MIB + 64 * 1024
    if dialect == "team":
        assert body["error"]["code"] == "PAYLOAD_TOO_LARGE"
    else:
        assert body["error"] == {"code": 413, "message": body["error"]["message"], "type": "payload_too_large"}


# ---- variables, NaN, names --------------------------------------------------------------------------


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_variables_over_64_kib_are_422_naming_the_field(client: TestClient, papi_world: PipelineWorld) -> None:
    w = papi_world
    variables = {"blob": "x" * MAX_VARIABLES_BYTES}
    r = client.post(
        team_url(w), json={"range_start": "2024-01-01", "range_end": "2024-01-02", "variables": variables},
        headers=w.headers(),
    )  # fmt: skip
    assert "variables" in team_error(r, 422, "UNPROCESSABLE_ENTITY")
    body = {"start_datetime": "2024-01-01", "end_datetime": "2024-01-02", "variables": variables}
    r = client.post(pipeline_url(w), json={"backfill": body}, headers=w.headers())
    assert "variables" in assert_pipeline_error(r, 422, "record_invalid")


def test_variables_deeper_than_32_levels_are_422(client: TestClient, papi_world: PipelineWorld) -> None:
    w = papi_world
    body = {"range_start": "2024-01-01", "range_end": "2024-01-02"}
    r = client.post(team_url(w), json={**body, "variables": nested(MAX_JSON_DEPTH + 1)}, headers=w.headers())
    assert "32 levels" in team_error(r, 422, "UNPROCESSABLE_ENTITY")
    r = client.post(
        team_url(w), json={**body, "name": "deep enough", "variables": nested(MAX_JSON_DEPTH)}, headers=w.headers()
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["variables"] == nested(MAX_JSON_DEPTH)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_in_variables_are_422_naming_the_field(
    client: TestClient, papi_world: PipelineWorld, number: str
) -> None:
    """Today: a 500 on PostgreSQL (psycopg refuses the JSON), silently null on SQLite."""
    w = papi_world
    text = '{"range_start": "2024-01-01", "range_end": "2024-01-02", "variables": {"x": {"y": [1, N]}}}'
    text = text.replace("N", number)
    message = team_error(raw_json(client, "POST", team_url(w), text, w.headers()), 422, "UNPROCESSABLE_ENTITY")
    assert "variables.x.y[1]" in message
    text = '{"backfill": {"start_datetime": "2024-01-01", "end_datetime": "2024-01-02", "variables": {"x": N}}}'
    text = text.replace("N", number)
    message = assert_pipeline_error(raw_json(client, "POST", pipeline_url(w), text, w.headers()), 422, "record_invalid")
    assert "variables.x" in message
    # nothing was stored
    listed = ok(client.get(pipeline_url(w), headers=w.headers()), "backfills")
    assert listed == []


def test_nan_in_a_typed_number_or_an_update_is_422(client: TestClient, papi_world: PipelineWorld) -> None:
    w = papi_world
    text = '{"range_start": "2024-01-01", "range_end": "2024-01-02", "retry_delay_seconds": NaN}'
    assert "retry_delay_seconds" in team_error(
        raw_json(client, "POST", team_url(w), text, w.headers()), 422, "UNPROCESSABLE_ENTITY"
    )
    created = ok(
        client.post(
            pipeline_url(w),
            json={"backfill": {"start_datetime": "2024-01-01", "end_datetime": "2024-01-02"}},
            headers=w.headers(),
        )
    )
    text = '{"backfill": {"variables": {"rate": Infinity}}}'
    r = raw_json(client, "PUT", f"/api/backfills/{created['id']}", text, w.headers())
    assert "variables.rate" in assert_pipeline_error(r, 422, "record_invalid")
    assert ok(client.get(f"/api/backfills/{created['id']}", headers=w.headers()))["variables"] is None


def test_names_longer_than_200_characters_are_422(client: TestClient, papi_world: PipelineWorld) -> None:
    w = papi_world
    body = {"range_start": "2024-01-01", "range_end": "2024-01-02"}
    assert "name" in team_error(
        client.post(team_url(w), json={**body, "name": "n" * 201}, headers=w.headers()), 422, "UNPROCESSABLE_ENTITY"
    )
    created = client.post(team_url(w), json={**body, "name": "n" * 200}, headers=w.headers())
    assert created.status_code == 200, created.text
    backfill_id = created.json()["data"]["transfer_backfill_id"]
    r = client.patch(f"/v1/teams/{w.team_id}/backfills/{backfill_id}", json={"name": "m" * 201}, headers=w.headers())
    assert "name" in team_error(r, 422, "UNPROCESSABLE_ENTITY")
    r = client.put(f"/api/backfills/{backfill_id}", json={"backfill": {"name": "m" * 201}}, headers=w.headers())
    assert "name" in assert_pipeline_error(r, 422, "record_invalid")


def test_the_services_apply_the_same_variables_rules() -> None:
    """The CLI and every dialect reach the same check (domain/limits.py)."""
    with pytest.raises(ValidationError) as excinfo:
        check_variables({"x": [float("nan")]})
    assert excinfo.value.field == "variables"
    assert "variables.x[0]" in excinfo.value.message
    with pytest.raises(ValidationError):
        check_variables(nested(MAX_JSON_DEPTH + 1))
    with pytest.raises(ValidationError):
        check_variables({"k": "é" * (MAX_VARIABLES_BYTES // 2)})  # 2 bytes each in UTF-8
    check_variables(nested(MAX_JSON_DEPTH))
    check_variables({"k": "x" * (MAX_VARIABLES_BYTES - 20)})


# ---- timezones --------------------------------------------------------------------------------------


@pytest.mark.parametrize("zone", ["localtime", "posixrules", "Factory", "posix/Europe/Berlin", "right/UTC"])
def test_timezones_outside_the_iana_database_are_422(client: TestClient, papi_world: PipelineWorld, zone: str) -> None:
    w = papi_world
    body = {"range_start": "2024-01-01", "range_end": "2024-01-02", "timezone": zone}
    r = client.post(team_url(w), json=body, headers=w.headers())
    assert "timezone" in team_error(r, 422, "UNPROCESSABLE_ENTITY")
    backfill = {"start_datetime": "2024-01-01", "end_datetime": "2024-01-02", "settings": {"timezone": zone}}
    r = client.post(pipeline_url(w), json={"backfill": backfill}, headers=w.headers())
    assert "timezone" in assert_pipeline_error(r, 422, "record_invalid")
    with pytest.raises(ValidationError):
        load_zone(zone)


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5"])
def test_iana_timezones_are_accepted(zone: str) -> None:
    assert str(load_zone(zone)) == zone


def test_integers_may_be_sent_as_integral_floats(client: TestClient, papi_world: PipelineWorld) -> None:
    """JSON Schema's ``integer`` (the document) admits 3.0; a fraction stays refused."""
    w = papi_world
    body = {"range_start": "2024-01-01", "range_end": "2024-01-02", "max_active_runs": 3.0}
    created = client.post(team_url(w), json=body, headers=w.headers())
    assert created.status_code == 200, created.text
    assert created.json()["data"]["max_active_runs"] == 3
    url = f"/v1/teams/{w.team_id}/backfills/{created.json()['data']['transfer_backfill_id']}"
    assert "max_active_runs" in team_error(
        client.patch(url, json={"max_active_runs": 2.5}, headers=w.headers()), 422, "UNPROCESSABLE_ENTITY"
    )
    assert client.patch(url, json={"max_active_runs": 2.0}, headers=w.headers()).json()["data"]["max_active_runs"] == 2
