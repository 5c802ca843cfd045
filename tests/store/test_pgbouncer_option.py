"""``?pgbouncer=true`` in a database URL (store.pgbouncer): stripped before the driver
sees it, prepared statements off, no ``options`` startup parameter, bad uses refused
with a message naming the option. (The real PgBouncer runs in tests/deploy.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from backfill.store import pgbouncer
from backfill.store.db import Database

PG = "postgresql+psycopg://backfill@db.internal:6432/backfill"


@pytest.mark.parametrize(
    ("query", "expected"),
    [("?pgbouncer=true", True), ("?pgbouncer=TRUE", True), ("?pgbouncer=false", False), ("", False)],
)
def test_the_option_is_stripped_and_read(query: str, expected: bool) -> None:
    url, enabled = pgbouncer.split_option(make_url(PG + query))
    assert enabled is expected
    assert "pgbouncer" not in url.query
    assert url.render_as_string() == PG


def test_other_query_options_are_kept() -> None:
    url, enabled = pgbouncer.split_option(make_url(PG + "?sslmode=require&pgbouncer=true"))
    assert enabled and dict(url.query) == {"sslmode": "require"}


def test_a_database_behind_pgbouncer_gives_the_driver_a_url_without_the_option() -> None:
    db = Database("postgresql://backfill@db.internal:6432/backfill?pgbouncer=true&sslmode=require")
    try:
        assert db.behind_pgbouncer
        assert dict(db.engine.url.query) == {"sslmode": "require"}
    finally:
        db.dispose()
    plain = Database("postgresql://backfill@db.internal:5432/backfill")
    try:
        assert not plain.behind_pgbouncer
    finally:
        plain.dispose()


def test_connect_args_turn_off_prepared_statements_and_drop_startup_options() -> None:
    args = {"connect_timeout": 2, "options": "-c statement_timeout=30000", "keepalives": 1}
    assert pgbouncer.connect_args(args) == {"connect_timeout": 2, "keepalives": 1, "prepare_threshold": None}
    assert "options" in args  # the caller's mapping is left alone


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (PG + "?pgbouncer=yes-please", "pgbouncer='yes-please': expected true or false"),
        (PG + "?pgbouncer=true&options=-csearch_path%3Dx", "ALTER ROLE"),
        ("sqlite:///{tmp}/x.db?pgbouncer=true", "only for PostgreSQL"),
    ],
)
def test_bad_uses_are_refused_naming_the_option(url: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pgbouncer") as caught:
        Database(url.format(tmp=tmp_path))
    assert message in str(caught.value)


def test_the_cli_says_a_bad_option_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from backfill.cli.main import run

    assert run(["migrate", "--db", PG + "?pgbouncer=maybe"]) == 1
    err = capsys.readouterr().err
    assert err == "error: database URL option pgbouncer='maybe': expected true or false\n"
