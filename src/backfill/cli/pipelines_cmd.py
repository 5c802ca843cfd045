"""``backfill pipelines``: load the project directory into the database and list it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from backfill.cli.common import DbOption, JsonOption, domain_errors, emit, fail, open_existing_db
from backfill.config import load_settings
from backfill.pipelines.loader import load_project
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
    with domain_errors():
        result = admin.sync_pipelines(open_existing_db(db), settings.project_dir)
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


@app.command("validate")
def validate(project: ProjectOption = None, as_json: JsonOption = False) -> None:
    """Check a project without a database: YAML, files, the DAG, python blocks (compile,
    define run(context)), templates (parse, use only context names). One line per
    problem, naming the file; exit status 1 if there is any."""
    settings = load_settings(project_dir=project)
    directory = settings.project_dir or Path.cwd()
    if not (directory / "pipelines").is_dir():
        fail(f"--project: {str(directory)!r} is not a project directory (it has no pipelines/ directory)")
    loaded = load_project(directory)
    problems = [{"path": e.path, "reason": e.reason} for e in loaded.errors]
    if not problems and not loaded.pipelines:
        problems.append(
            {"path": str(directory / "pipelines"), "reason": "no pipeline found (pipelines/*/pipeline.yaml)"}
        )
    valid = [{"uuid": p.uuid, "version": p.version, "blocks": len(p.blocks)} for p in loaded.pipelines]
    text = "\n".join(
        [f"{e['path']}: {e['reason']}" for e in problems]
        + [f"ok {v['uuid']} ({v['blocks']} blocks, version {v['version']})" for v in valid]
    )
    emit({"pipelines": valid, "errors": problems}, as_json, text)
    if problems:
        raise typer.Exit(1)


@app.command("list")
def list_(
    db: DbOption = None,
    team: Annotated[int | None, typer.Option("--team", help="team id (default: the first team)")] = None,
    as_json: JsonOption = False,
) -> None:
    """List the pipelines stored for a team."""
    with domain_errors():
        items = admin.list_pipelines(open_existing_db(db), team)
    emit(
        {"pipelines": items},
        as_json,
        "\n".join(f"{i['id']:>4}  {i['uuid']:<30} {i['name']}" for i in items) or "no pipelines",
    )
