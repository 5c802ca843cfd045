"""docs/deploy.md stays true: its SQL runs on a migrated PostgreSQL database, and its
pgbouncer.ini is the transaction-pooling set-up tests/deploy/test_pgbouncer.py runs."""

from __future__ import annotations

import configparser
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from tests.deploy.pgbouncer import CONNECT_QUERY, SERVER_URL, fresh_database

from backfill.store.db import Database, normalize_url
from backfill.store.migrate import upgrade

DOC = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text()


def fenced(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", DOC, re.MULTILINE | re.DOTALL)


@pytest.fixture
def migrated() -> Iterator[Database]:
    server = make_url(normalize_url(SERVER_URL)).difference_update_query(["options"])
    with fresh_database(server) as name:
        db = Database(server.set(database=name).render_as_string(hide_password=False))
        try:
            upgrade(db)
            yield db
        finally:
            db.dispose()


def test_every_sql_block_runs_on_the_schema(migrated: Database) -> None:
    statements = [s.strip() for block in fenced("sql") for s in re.sub(r"--[^\n]*", "", block).split(";") if s.strip()]
    assert any(s.startswith("ALTER TABLE interval_runs") for s in statements)
    assert any(s.startswith("DELETE FROM backfills") for s in statements)
    for statement in statements:
        with migrated.engine.begin() as conn:
            conn.exec_driver_sql(statement)


def test_the_pgbouncer_ini_is_transaction_pooling_with_the_tested_connect_query() -> None:
    (ini,) = [block for block in fenced("ini") if "[pgbouncer]" in block]
    config = configparser.ConfigParser(inline_comment_prefixes=None, comment_prefixes=(";", "#"))
    config.read_string(ini)
    assert config["pgbouncer"]["pool_mode"] == "transaction"
    (target,) = config["databases"].values()
    assert f"connect_query='{CONNECT_QUERY}'" in target
    assert "?pgbouncer=true" in DOC
