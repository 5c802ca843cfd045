"""Options and helpers shared by the commands.

Errors: one line on stderr and exit status 1 (2 for a usage error). With ``--json`` the
line is a JSON object ``{"error": {"message": ..., ...}}`` (still on stderr, so stdout
only ever carries results)."""

from __future__ import annotations

import json
from contextvars import ContextVar
from typing import Annotated, Any, NoReturn

import typer

from backfill.config import load_settings
from backfill.services import admin
from backfill.store.db import Database

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


def open_db(url: str | None) -> Database:
    """The database, created when it is a SQLite file that does not exist yet (serve, migrate)."""
    return Database(database_url(url))


def open_existing_db(url: str | None) -> Database:
    """A database that already has the schema; never creates an empty one."""
    return admin.open_existing(database_url(url))


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


def emit(data: dict[str, Any], as_json: bool, text: str) -> None:
    typer.echo(json.dumps(data) if as_json else text)
