"""Shared fixtures. The same suite runs on SQLite (default) and on PostgreSQL when
``BACKFILL_TEST_DATABASE_URL`` is set; every test gets its own database (SQLite file)
or schema (PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.databases import PG_URL, isolated_db_url
from tests.factories import add_pipeline, python_pipeline

from backfill.domain.model import Role
from backfill.services.actor import Actor
from backfill.store import auth
from backfill.store.db import Database
from backfill.store.tables import metadata


def pytest_report_header() -> str:
    return f"backfill database: {'PostgreSQL ' + PG_URL if PG_URL else 'SQLite (per-test files)'}"


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    """A URL of an empty, isolated database (tables not created)."""
    with isolated_db_url(tmp_path) as url:
        yield url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    metadata.create_all(database.engine)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def team(db: Database) -> Actor:
    with db.write() as conn:
        team_id = auth.create_team(conn, "Data team")
        user_id = auth.create_user(conn, "owner@example.com", team_id=team_id, role=Role.OWNER)
    return Actor(team_id=team_id, user_id=user_id)


@pytest.fixture
def pipeline_id(db: Database, team: Actor) -> int:
    return add_pipeline(db, team, python_pipeline())
