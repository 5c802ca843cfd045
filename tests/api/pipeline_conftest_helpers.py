"""Fixtures and helpers of the pipeline API tests (``/api``, docs/api.md).

Kept apart from ``tests/api/conftest.py`` (the team API's): every fixture here is prefixed
``papi_`` and imported explicitly by the test modules that use it.

The app is ``create_app(db, settings)``; when the app factory does not mount the pipeline
API yet, the fixture includes ``pipeline_api.router`` and registers this dialect's error
renderer for ``/api`` itself, so the tests run the same either way.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.engine.procs import wait_for

from backfill.api import pipeline_api, pipeline_errors
from backfill.app import create_app
from backfill.config import Settings
from backfill.domain.model import BlockType, Role, Scope
from backfill.domain.pipeline import Block, PipelineDefinition
from backfill.engine.worker import Worker, WorkerSettings
from backfill.store import auth
from backfill.store import pipelines as pipeline_store
from backfill.store.db import Database

SECRET = "papi-test-secret-of-at-least-32-bytes!"
PASSWORD = "correct horse battery staple"
PIPELINE_DATETIME = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"

# Every block appends "<block uuid> <ds>" to the file in variables["journal"]; block c
# fails for the days in variables["fail_days"] while the file variables["fail_flag"] exists.
JOURNAL_BLOCK = """
import os
def run(context):
    v = context.variables
    flag = v.get("fail_flag")
    if context.block_uuid == "c" and flag and os.path.exists(flag) and context.ds in v.get("fail_days", []):
        raise RuntimeError(f"planned failure on {context.ds}")
    journal = v.get("journal")
    if journal:
        with open(journal, "a") as fh:
            fh.write(f"{context.block_uuid} {context.ds}\\n")
    return {"rows": 1}
"""


def abc_pipeline(uuid: str = "arwen_starlight") -> PipelineDefinition:
    """Three python blocks a → b → c."""
    return PipelineDefinition(
        uuid=uuid,
        name=uuid.replace("_", " "),
        blocks=(
            Block(uuid="a", type=BlockType.PYTHON, source=JOURNAL_BLOCK),
            Block(uuid="b", type=BlockType.PYTHON, source=JOURNAL_BLOCK, upstream=("a",)),
            Block(uuid="c", type=BlockType.PYTHON, source=JOURNAL_BLOCK, upstream=("b",)),
        ),
        variables={"region": "eu"},
    )


def diamond_pipeline(uuid: str = "diamond") -> PipelineDefinition:
    """root → left, root → right, (left, right) → sink; plus an unrelated block "side"."""
    return PipelineDefinition(
        uuid=uuid,
        name=uuid,
        blocks=(
            Block(uuid="root", type=BlockType.PYTHON, source=JOURNAL_BLOCK),
            Block(uuid="left", type=BlockType.PYTHON, source=JOURNAL_BLOCK, upstream=("root",)),
            Block(uuid="right", type=BlockType.PYTHON, source=JOURNAL_BLOCK, upstream=("root",)),
            Block(uuid="sink", type=BlockType.PYTHON, source=JOURNAL_BLOCK, upstream=("left", "right")),
            Block(uuid="side", type=BlockType.PYTHON, source=JOURNAL_BLOCK),
        ),
    )


def papi_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"rate_limit": "100000/minute", "secret_key": SECRET, **overrides}
    return Settings(**values)


def pipeline_api_mounted(app: FastAPI) -> bool:
    for route in app.router.routes:
        if getattr(route, "original_router", None) is pipeline_api.router:
            return True
        if str(getattr(route, "path", "")).startswith("/api/"):
            return True
    return False


def papi_make_app(db: Database, settings: Settings | None = None) -> FastAPI:
    """``create_app`` with the pipeline API mounted (by the factory, or here if it does not yet)."""
    app = create_app(db, settings or papi_settings())
    renderers = app.state.error_renderers
    if renderers.for_path("/api/backfills") is renderers.default:
        renderers.register("/api", pipeline_errors.render_problem)
    if not pipeline_api_mounted(app):
        app.include_router(pipeline_api.router)
        app.openapi_schema = None
    return app


@dataclass
class PipelineWorld:
    """Team A (under test, with an API key and pipeline ``arwen_starlight``) and team B."""

    team_id: int
    other_team_id: int
    api_key: str
    other_api_key: str
    users: dict[str, int] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    pipeline_uuid: str = "arwen_starlight"
    pipeline_id: int = 0
    other_pipeline_uuid: str = "their_pipeline"
    other_pipeline_id: int = 0

    def headers(self, who: str = "owner", *, key: str | None = None) -> dict[str, str]:
        """X-API-KEY + ``Authorization: Bearer`` of ``who``."""
        return {"X-API-KEY": key or self.api_key, "Authorization": f"Bearer {self.tokens[who]}"}


def add_pipeline(db: Database, team_id: int, definition: PipelineDefinition) -> int:
    with db.write() as conn:
        pipeline_store.sync(conn, [definition], default_team_id=team_id)
        return int(pipeline_store.get_in_team(conn, team_id, uuid=definition.uuid)["id"])


def build_pipeline_world(db: Database) -> PipelineWorld:
    with db.write() as conn:
        team_a = auth.create_team(conn, "Team A")
        team_b = auth.create_team(conn, "Team B")
        emails = {
            "owner": "owner@a.example",
            "editor": "editor@a.example",
            "viewer": "viewer@a.example",
            "outsider": "owner@b.example",
        }
        teams = {"owner": team_a, "editor": team_a, "viewer": team_a, "outsider": team_b}
        roles = {"owner": Role.OWNER, "editor": Role.EDITOR, "viewer": Role.VIEWER, "outsider": Role.OWNER}
        # Only the owner signs in with a password (argon2 hashing is deliberately slow).
        users = {
            who: auth.create_user(
                conn, email, team_id=teams[who], role=roles[who], password=PASSWORD if who == "owner" else None
            )
            for who, email in emails.items()
        }
        scopes = (Scope.READ, Scope.WRITE)
        tokens = {who: auth.create_token(conn, uid, scopes=scopes).secret for who, uid in users.items()}
        tokens["expired"] = auth.create_token(
            conn, users["owner"], scopes=scopes, expires_in=timedelta(seconds=-1)
        ).secret
        tokens["read_only"] = auth.create_token(conn, users["editor"], scopes=(Scope.READ,)).secret
        key_a = auth.create_api_key(conn, team_a, name="client A").secret
        key_b = auth.create_api_key(conn, team_b, name="client B").secret
    w = PipelineWorld(team_a, team_b, key_a, key_b, users, emails, tokens)
    w.pipeline_id = add_pipeline(db, team_a, abc_pipeline(w.pipeline_uuid))
    w.other_pipeline_id = add_pipeline(db, team_b, abc_pipeline(w.other_pipeline_uuid))
    return w


@pytest.fixture
def papi_world(db: Database) -> PipelineWorld:
    return build_pipeline_world(db)


@pytest.fixture
def papi_app(db: Database) -> FastAPI:
    return papi_make_app(db)


@pytest.fixture
def papi_client(papi_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(papi_app, raise_server_exceptions=False) as c:
        yield c


# ---- assertions ----------------------------------------------------------------------------------


def assert_pipeline_error(response: Any, status: int, type_: str) -> str:
    """Exactly ``{"error": {"code": status, "message", "type": type_}}`` with that status;
    returns the message."""
    assert response.status_code == status, response.text
    assert response.headers.get("X-Request-ID")
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "type"}, body
    assert body["error"]["code"] == status
    assert body["error"]["type"] == type_, body
    message = body["error"]["message"]
    assert isinstance(message, str) and message
    assert "Traceback" not in response.text
    return str(message)


def ok(response: Any, key: str = "backfill") -> Any:
    assert response.status_code == 200, response.text
    assert response.headers.get("X-Request-ID")
    body = response.json()
    assert key in body, body
    return body[key]


# ---- API shortcuts -------------------------------------------------------------------------------


def login(client: TestClient, w: PipelineWorld, who: str = "owner") -> str:
    """``POST /api/sessions`` → the session JWT."""
    r = client.post(
        "/api/sessions",
        json={"session": {"email": w.emails[who], "password": PASSWORD}},
        headers={"X-API-KEY": w.api_key},
    )
    return str(ok(r, "session")["token"])


def create_backfill(
    client: TestClient, w: PipelineWorld, body: dict[str, Any] | None = None, who: str = "owner"
) -> dict[str, Any]:
    payload = body or {"start_datetime": "2024-01-01", "end_datetime": "2024-01-03", "name": "january"}
    r = client.post(f"/api/pipelines/{w.pipeline_uuid}/backfills", json={"backfill": payload}, headers=w.headers(who))
    created: dict[str, Any] = ok(r)
    return created


def put_backfill(
    client: TestClient, w: PipelineWorld, backfill_id: int, body: dict[str, Any], who: str = "owner"
) -> Any:
    return client.put(f"/api/backfills/{backfill_id}", json={"backfill": body}, headers=w.headers(who))


def get_backfill(client: TestClient, w: PipelineWorld, backfill_id: int, **params: Any) -> dict[str, Any]:
    got: dict[str, Any] = ok(client.get(f"/api/backfills/{backfill_id}", params=params, headers=w.headers()))
    return got


# ---- the engine, in process ----------------------------------------------------------------------


@contextmanager
def running_worker(db: Database, concurrency: int = 2) -> Iterator[Worker]:
    """``Worker.run`` in a thread until the block exits."""
    stop = threading.Event()
    worker = Worker(db, WorkerSettings(concurrency=concurrency, poll_seconds=0.05))
    thread = threading.Thread(target=worker.run, args=(stop,), kwargs={"drain_seconds": 10.0}, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the worker thread did not stop"


def run_until_status(
    client: TestClient, w: PipelineWorld, db: Database, backfill_id: int, statuses: tuple[str, ...], timeout: float = 40
) -> dict[str, Any]:
    """Run a worker until the backfill (read through the API) reaches one of ``statuses``."""
    seen: dict[str, Any] = {}

    def reached() -> bool:
        seen.update(get_backfill(client, w, backfill_id))
        return seen["status"] in statuses

    with running_worker(db):
        wait_for(reached, timeout=timeout, interval=0.1)
    return seen


def read_journal(path: Path) -> list[str]:
    return sorted(path.read_text().splitlines()) if path.exists() else []
