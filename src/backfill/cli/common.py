"""Options and helpers shared by the commands."""

from __future__ import annotations

import json
from typing import Annotated, Any, NoReturn

import typer

from backfill.config import load_settings
from backfill.store.db import Database

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="database URL (default: BACKFILL_DATABASE_URL or ./.backfill/backfill.db)"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def open_db(url: str | None) -> Database:
    return Database(url or load_settings().database_url)


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def emit(data: dict[str, Any], as_json: bool, text: str) -> None:
    typer.echo(json.dumps(data) if as_json else text)
