"""Options and helpers shared by the commands.

Errors: one line on stderr and exit status 1 (2 for a usage error). With ``--json`` the
line is a JSON object ``{"error": {"message": ..., ...}}`` (still on stderr, so stdout
only ever carries results)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Annotated, Any, NoReturn

import typer

from backfill.config import Settings, load_settings
from backfill.domain.errors import DomainError
from backfill.services import admin
from backfill.store.db import Database, DatabaseTimeouts

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="database URL (default: BACKFILL_DATABASE_URL, else database_url in backfill.toml, "
        "else ./.backfill/backfill.db)",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable output (errors too)")]


def database_url(flag: str | None) -> str:
    """The database as ``serve`` finds it: --db, then BACKFILL_DATABASE_URL, then
    backfill.toml, then ./.backfill/backfill.db."""
    return flag or load_settings().database_url


def timeouts_of(settings: Settings) -> DatabaseTimeouts:
    """The configured bounds of every wait on the database."""
    return DatabaseTimeouts(
        busy=settings.db_busy_timeout_seconds,
        connect=settings.db_connect_timeout_seconds,
        statement=settings.db_statement_timeout_seconds,
        lock=settings.db_lock_timeout_seconds,
        tcp_user=settings.db_tcp_user_timeout_seconds,
        pool=settings.db_pool_timeout_seconds,
    )


def open_db(url: str | None, *, timeouts: DatabaseTimeouts | None = None) -> Database:
    """The database, created when it is a SQLite file that does not exist yet (serve, migrate)."""
    return Database(database_url(url), timeouts=timeouts)


def open_existing_db(url: str | None, *, timeouts: DatabaseTimeouts | None = None) -> Database:
    """A database that already has the schema; never creates an empty one."""
    return admin.open_existing(database_url(url), timeouts=timeouts)


JSON_ERRORS: ContextVar[bool] = ContextVar("json_errors", default=False)
"""Set by ``backfill.cli.main.run`` when the command line has ``--json``."""


def report_error(message: str, *, as_json: bool, **details: Any) -> None:
    """Write one error line to stderr: ``error: ...`` or, for --json, a JSON object."""
    line = " ".join(message.split())
    if as_json:
        typer.echo(json.dumps({"error": {"message": line, **details}}), err=True)
    else:
        typer.echo(f"error: {line}", err=True)


def fail(message: str, code: int = 1, *, details: dict[str, Any] | None = None) -> NoReturn:
    """Report ``message`` (with ``details`` in the JSON form) and exit with ``code``."""
    report_error(message, as_json=JSON_ERRORS.get(), **(details or {}))
    raise typer.Exit(code)


@contextmanager
def domain_errors() -> Iterator[None]:
    """A refusal of the services (``DomainError``: the user's mistake, such as an unknown
    id) is one error line and exit status 1, never a traceback."""
    try:
        yield
    except DomainError as exc:
        fail(exc.message)


def emit(data: dict[str, Any], as_json: bool, text: str) -> None:
    typer.echo(json.dumps(data) if as_json else text)
