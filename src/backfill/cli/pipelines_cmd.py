"""``backfill pipelines``: load the project directory into the database and list it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from backfill.cli.common import DbOption, JsonOption, emit, fail, open_existing_db
from backfill.config import load_settings
from backfill.domain.errors import DomainError
from backfill.services import admin

app = typer.Typer(help="Pipelines of the project directory.", no_args_is_help=True)

ProjectOption = Annotated[
    Path | None, typer.Option("--project", help="project directory (default: BACKFILL_PROJECT_DIR)")
]


@app.command("sync")
def sync(project: ProjectOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Load pipelines/*/pipeline.yaml and store them; invalid files are reported."""
    settings = load_settings(project_dir=project)
    if settings.project_dir is None:
        fail("no project directory: pass --project DIR or set BACKFILL_PROJECT_DIR")
    if not settings.project_dir.is_dir():
        fail(f"--project: {str(settings.project_dir)!r} is not a directory")
    try:
        result = admin.sync_pipelines(open_existing_db(db), settings.project_dir)
    except DomainError as exc:
        fail(exc.message)
    errors = [{"path": e.path, "reason": e.reason} for e in result.errors]
    text = (
        "\n".join(
            [f"created {u}" for u in result.created]
            + [f"updated {u}" for u in result.updated]
            + [f"rejected {e['path']}: {e['reason']}" for e in errors]
        )
        or "pipelines are up to date"
    )
    emit({"created": list(result.created), "updated": list(result.updated), "errors": errors}, as_json, text)
    if errors:
        raise typer.Exit(1)


@app.command("list")
def list_(
    db: DbOption = None,
    team: Annotated[int | None, typer.Option("--team", help="team id (default: the first team)")] = None,
    as_json: JsonOption = False,
) -> None:
    """List the pipelines stored for a team."""
    try:
        items = admin.list_pipelines(open_existing_db(db), team)
    except DomainError as exc:
        fail(exc.message)
    emit(
        {"pipelines": items},
        as_json,
        "\n".join(f"{i['id']:>4}  {i['uuid']:<30} {i['name']}" for i in items) or "no pipelines",
    )
