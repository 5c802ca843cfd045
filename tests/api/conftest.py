"""Fixtures of the HTTP tests: an app over the per-test database, a client, and a
"world" of two teams with users of every role and tokens of every scope set."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.databases import isolated_db_url

from backfill.app import create_app
from backfill.config import Settings
from backfill.domain.model import BlockType, Role, Scope
from backfill.domain.pipeline import Block, PipelineDefinition
from backfill.services import backfills as backfill_service
from backfill.services.actor import Actor
from backfill.services.backfills import BackfillSpec
from backfill.store import auth, queue
from backfill.store import pipelines as pipeline_store
from backfill.store.db import Database
from backfill.store.tables import metadata

ALL_SCOPES = (Scope.READ, Scope.WRITE)


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"rate_limit": "100000/minute", "secret_key": "test-secret", **overrides}
    return Settings(**values)


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
def app(db: Database, settings: Settings) -> FastAPI:
    return create_app(db, settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class World:
    """Team A (the one under test) and team B (someone else's)."""

    team_id: int
    other_team_id: int
    pipeline_id: int
    other_pipeline_id: int
    users: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    backfill_id: int = 0
    other_backfill_id: int = 0
    run_id: int = 0
    other_run_id: int = 0

    def actor(self, user: str = "owner") -> Actor:
        return Actor(team_id=self.team_id, user_id=self.users[user])

    def auth(self, who: str) -> dict[str, str]:
        return bearer(self.tokens[who])


def add_pipeline(db: Database, team_id: int, uuid: str, **kw: Any) -> int:
    definition = PipelineDefinition(
        uuid=uuid,
        name=uuid.replace("_", " "),
        blocks=(
            Block(uuid="extract", type=BlockType.PYTHON, source="def run(context):\n    return {'rows': 1}\n"),
            Block(uuid="load", type=BlockType.SQL, source="select 1", upstream=("extract",), connection="dwh"),
        ),
        **kw,
    )
    with db.write() as conn:
        pipeline_store.sync(conn, [definition], default_team_id=team_id)
        return int(pipeline_store.get_in_team(conn, team_id, uuid=uuid)["id"])


def materialize_one(db: Database, backfill_id: int) -> int:
    """Claim one run of a backfill as a worker would (so a run row exists); returns its id."""
    with db.write() as conn:
        claimed = queue.claim(conn, "test-worker", 1, lease_seconds=60, now=datetime.now(UTC))
    assert claimed
    assert claimed[0].backfill_id == backfill_id
    return claimed[0].run_id


def build_world(db: Database) -> World:
    with db.write() as conn:
        team_a = auth.create_team(conn, "Team A")
        team_b = auth.create_team(conn, "Team B")
        users = {
            "owner": auth.create_user(conn, "owner@a.example", team_id=team_a, role=Role.OWNER),
            "admin": auth.create_user(conn, "admin@a.example", team_id=team_a, role=Role.ADMIN),
            "editor": auth.create_user(conn, "editor@a.example", team_id=team_a, role=Role.EDITOR),
            "viewer": auth.create_user(conn, "viewer@a.example", team_id=team_a, role=Role.VIEWER),
            "outsider": auth.create_user(conn, "owner@b.example", team_id=team_b, role=Role.OWNER),
        }
        grants: dict[str, tuple[str, tuple[Scope, ...]]] = {
            "owner": ("owner", ALL_SCOPES),
            "admin": ("admin", (Scope.ADMIN,)),
            "editor": ("editor", ALL_SCOPES),
            "viewer": ("viewer", ALL_SCOPES),
            "read_only": ("editor", (Scope.READ,)),
            "write_only": ("editor", (Scope.WRITE,)),
            "viewer_read_only": ("viewer", (Scope.READ,)),
            "outsider": ("outsider", ALL_SCOPES),
            "outsider_read_only": ("outsider", (Scope.READ,)),
        }
        tokens = {
            name: auth.create_token(conn, users[user], scopes=scopes).secret for name, (user, scopes) in grants.items()
        }
        tokens["expired"] = auth.create_token(
            conn, users["owner"], scopes=ALL_SCOPES, expires_in=timedelta(seconds=-1)
        ).secret
    a = Actor(team_id=team_a, user_id=users["owner"])
    b = Actor(team_id=team_b, user_id=users["outsider"])
    pipeline_a = add_pipeline(db, team_a, "daily_sales")
    pipeline_b = add_pipeline(db, team_b, "their_pipeline")
    w = World(team_a, team_b, pipeline_a, pipeline_b, users, tokens)
    w.other_backfill_id = backfill_service.create(
        db, b, pipeline_b, BackfillSpec(start="2023-01-01", end="2023-01-10"), start=True
    )
    w.other_run_id = materialize_one(db, w.other_backfill_id)
    backfill_service.set_paused(db, b, w.other_backfill_id, True)  # claims in tests see team A only
    w.backfill_id = backfill_service.create(
        db, a, pipeline_a, BackfillSpec(start="2023-01-01", end="2023-01-10"), start=True
    )
    w.run_id = materialize_one(db, w.backfill_id)
    return w


@pytest.fixture
def world(db: Database) -> World:
    return build_world(db)


# ---- one world per module, for tests that do not change what they read ----------------------------


@pytest.fixture(scope="module")
def module_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """Like the root ``db`` fixture, shared by a module (SQLite file or PostgreSQL schema)."""
    with isolated_db_url(tmp_path_factory.mktemp("api"), prefix="m") as url:
        database = Database(url)
        try:
            metadata.create_all(database.engine)
            yield database
        finally:
            database.dispose()


@pytest.fixture(scope="module")
def shared_world(module_db: Database) -> World:
    return build_world(module_db)


@pytest.fixture(scope="module")
def shared_client(module_db: Database) -> Iterator[TestClient]:
    with TestClient(create_app(module_db, make_settings()), raise_server_exceptions=False) as c:
        yield c


def assert_envelope_headers(response: Any) -> None:
    """Every response carries the request id and the rate-limit headers."""
    rid = response.headers.get("X-Request-ID")
    assert rid
    assert 8 <= len(rid) <= 64
    assert int(response.headers["X-RateLimit-Limit"]) > 0
    assert int(response.headers["X-RateLimit-Remaining"]) >= 0
    body = response.json()
    assert body["meta"]["request_id"] == rid


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The exact error envelope: meta.request_id + error{code, message[, description]}."""
    assert response.status_code == status, response.text
    assert_envelope_headers(response)
    body = response.json()
    assert set(body) == {"meta", "error"}, body
    assert set(body["meta"]) == {"request_id"}
    assert set(body["error"]) <= {"code", "message", "description"}
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert "Traceback" not in response.text
    return dict(body["error"])


def assert_ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    assert_envelope_headers(response)
    body = response.json()
    assert set(body) == {"meta", "data"}, body
    return body["data"]
