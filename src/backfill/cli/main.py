"""The ``backfill`` command line."""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from sqlalchemy.exc import SQLAlchemyError

# Typer vendors Click as typer._click and re-exports only some of its exceptions.
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from backfill.cli import admin, backfills_cmd, coverage_cmd, pipelines_cmd
from backfill.cli.common import (
    JSON_ERRORS,
    DbOption,
    JsonOption,
    emit,
    open_db,
    open_existing_db,
    report_error,
    timeouts_of,
)
from backfill.config import STATE_DIR, Settings, SettingsError, load_settings
from backfill.domain.errors import DomainError
from backfill.logging_setup import configure as configure_logging
from backfill.services.admin import shown_url
from backfill.store.db import Database

app = typer.Typer(
    name="backfill",
    help="Re-run data pipelines over historical time ranges.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(admin.app, name="admin")
app.add_typer(pipelines_cmd.app, name="pipelines")
backfills_cmd.register(app)
coverage_cmd.register(app)

log = logging.getLogger("backfill.cli")


@app.command()
def migrate(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Apply database migrations (creates a SQLite database file that does not exist yet)."""
    from backfill.store.migrate import current_revision, upgrade

    database = open_db(db)
    upgrade(database)
    revision = current_revision(database)
    emit({"revision": revision}, as_json, f"database schema is up to date (revision {revision})")


def _parse_create(value: str) -> tuple[str, str, str]:
    parts = value.split(",")
    if len(parts) != 3:
        raise typer.BadParameter(
            f"{value!r}: expected PIPELINE,START,END e.g. daily_sales,2024-01-01,2024-03-31", param_hint="'--backfill'"
        )
    return parts[0], parts[1], parts[2]


@app.command()
def serve(
    project: Annotated[Path | None, typer.Option(help="project directory with pipelines/")] = None,
    db: DbOption = None,
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on (default 6789)")] = None,
    workers: Annotated[
        int | None, typer.Option(min=0, help="worker slots in this process tree (0: API and scheduler only)")
    ] = None,
    backfill: Annotated[
        list[str] | None,
        typer.Option("--backfill", help="start a daily backfill on start-up: PIPELINE,START,END (once)"),
    ] = None,
) -> None:
    """Run the API, the scheduler and worker slots in one process tree."""
    import uvicorn

    from backfill.app import create_app, server_protocol
    from backfill.engine.notifier import Notifier
    from backfill.engine.runtime import Component, build_runtime
    from backfill.services import bootstrap
    from backfill.store.migrate import upgrade

    settings = load_settings(database_url=db, project_dir=project, host=host, port=port, workers=workers)
    configure_logging(settings.log_level, settings.log_format)
    requests = [_parse_create(v) for v in backfill or []]
    _check_project(settings.project_dir)
    database = open_db(settings.database_url, timeouts=timeouts_of(settings))
    upgrade(database)
    url = f"http://{settings.host}:{settings.port}"
    credentials_path = STATE_DIR / "credentials.json"
    creds = bootstrap.ensure_default_team(database, credentials_path, url)
    if creds:
        log.info(
            "first start: wrote %s (team %s, user %s)",
            credentials_path,
            creds.team_id,
            creds.email,
        )
    team_id = bootstrap.default_team_id(database)
    assert team_id is not None
    connections: dict[str, str] = {}
    if settings.project_dir:
        loaded = bootstrap.sync_project(database, settings.project_dir, team_id=team_id)
        connections = dict(loaded.connections)
    for pipeline_uuid, start, end in requests:
        _startup_backfill(database, team_id, pipeline_uuid, start, end)

    runtime = build_runtime(database, settings, workers=settings.workers, connections=connections)
    runtime.add(Component("notifier", Notifier(database, public_url=settings.public_url or url).run))
    if settings.project_dir:
        runtime.add(_project_watcher(database, settings.project_dir, team_id, runtime))
    runtime.start()
    app = create_app(database, settings)
    app.state.health = runtime.health  # /readyz names a component that died until it is back
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_config=None,
            # idle keep-alive connections are closed, and so are those whose request head
            # stalls; requests in flight get a bounded grace on shutdown; a request head
            # larger than 64 KiB is refused.
            http=server_protocol(settings),
            timeout_keep_alive=settings.http_keep_alive_seconds,
            timeout_graceful_shutdown=settings.http_graceful_shutdown_seconds,
            h11_max_incomplete_event_size=64 * 1024,
        )
    )
    log.info("serving on %s with %d worker slots", url, settings.workers)
    log.info(
        "open %s/ and sign in as %s with the password in %s",
        url,
        _owner_email(credentials_path),
        credentials_path.resolve(),
    )
    # Everything built so far (modules, app, routes) lives as long as the process: keep
    # it out of the collector's full passes, which otherwise scan it all (a 60 ms pause
    # of every request in flight, seen in benchmarks/api.py).
    gc.freeze()
    try:
        server.run()
    finally:
        runtime.shutdown()


def _project_watcher(database: Any, project_dir: Path, team_id: int, runtime: Any) -> Any:
    """Re-sync the project when its files change (docs/pipelines.md); the worker in this process
    forgets the definitions it cached and takes the project's connections as they are now.
    A component of the runtime (restarted if it dies)."""
    from backfill.engine.runtime import Component
    from backfill.pipelines.watch import ProjectWatcher
    from backfill.services import pipeline_sync

    def resync() -> None:
        runtime.pipelines_syncing()
        connections: Mapping[str, str] = {}
        try:
            report = pipeline_sync.sync_project(database, project_dir, team_id=team_id)
            connections = report.loaded.connections or {}
        finally:
            runtime.pipelines_changed(connections)

    return Component("pipeline-watch", ProjectWatcher(project_dir, resync).run)


def _check_project(project_dir: Path | None) -> None:
    if project_dir is not None and not project_dir.is_dir():
        raise typer.BadParameter(f"{str(project_dir)!r} is not a directory", param_hint="'--project'")


def _owner_email(credentials_path: Path) -> str:
    from backfill.services.bootstrap import DEFAULT_EMAIL

    try:
        return str(json.loads(credentials_path.read_text())["email"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_EMAIL


def _startup_backfill(database: Any, team_id: int, pipeline_uuid: str, start: str, end: str) -> None:
    from backfill.services import backfills
    from backfill.services.actor import Actor
    from backfill.store import pipelines as pipeline_store

    with database.read() as conn:
        pipeline = pipeline_store.get_in_team(conn, team_id, uuid=pipeline_uuid)
    key = f"serve:{pipeline_uuid}:{start}:{end}"
    actor = Actor(team_id=team_id, user_id=None)
    backfill_id = backfills.create(
        database,
        actor,
        int(pipeline["id"]),
        backfills.BackfillSpec(start=start, end=end, interval_type="day", interval_units=1),
        start=True,
        idempotency_key=key,
    )
    log.info("start-up backfill %s of %s %s → %s", backfill_id, pipeline_uuid, start, end)


@app.command()
def worker(
    db: DbOption = None,
    concurrency: Annotated[int, typer.Option(min=1, help="runs executed at once")] = 4,
    project: Annotated[
        Path | None, typer.Option(help="project directory: connections.yaml, and pipeline changes to re-sync")
    ] = None,
    scheduler: Annotated[bool, typer.Option(help="also expire leases of lost workers")] = True,
    lease_seconds: Annotated[float | None, typer.Option(help="lease length; heartbeats every third")] = None,
    notify: Annotated[
        bool, typer.Option(help="also deliver webhook notifications (set public_url for the links)")
    ] = True,
) -> None:
    """Run a worker only (for other machines; point --db at the shared PostgreSQL)."""
    from backfill.engine.notifier import Notifier
    from backfill.engine.runtime import Component, build_runtime
    from backfill.pipelines.loader import load_project
    from backfill.services import bootstrap

    settings = load_settings(database_url=db, project_dir=project, lease_seconds=lease_seconds)
    _check_project(settings.project_dir)
    database = _open_worker_database(settings)
    configure_logging(settings.log_level, settings.log_format)
    connections = dict(load_project(settings.project_dir).connections) if settings.project_dir else {}
    runtime = build_runtime(database, settings, workers=concurrency, scheduler=scheduler, connections=connections)

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %s: finishing running runs, claiming no more", signum)
        runtime.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    team_id = bootstrap.default_team_id(database) if settings.project_dir else None
    if settings.project_dir and team_id is not None:
        runtime.add(_project_watcher(database, settings.project_dir, team_id, runtime))
    if notify:  # any number of notifiers share the outbox (claims are leased)
        public_url = settings.public_url or f"http://{settings.host}:{settings.port}"
        runtime.add(Component("notifier", Notifier(database, public_url=public_url).run))
    runtime.start()
    runtime.stop.wait()
    runtime.shutdown()


def _open_worker_database(settings: Settings) -> Database:
    """The worker's database; an unreachable one (starting, or in an outage) is waited for
    up to ``db_startup_wait_seconds`` with the loops' backoff, then it is an error."""
    from backfill.engine.backoff import Backoff
    from backfill.services.admin import DatabaseUnreachable

    backoff = Backoff("worker start", log)
    deadline = time.monotonic() + settings.db_startup_wait_seconds
    while True:
        try:
            return open_existing_db(settings.database_url, timeouts=timeouts_of(settings))
        except DatabaseUnreachable as exc:
            wait = backoff.failed(exc.cause)
            if time.monotonic() + wait > deadline:
                raise
            time.sleep(wait)


def run(args: Sequence[str] | None = None) -> int:
    """Run one command line; every failure is one line on stderr and a non-zero status.

    Usage errors (a bad flag value, a missing argument) exit 2 with Click's message and
    where to find help, instead of Typer's boxed panel. An unexpected error is one line
    too; ``BACKFILL_TRACEBACK=1`` shows its traceback."""
    argv = list(sys.argv[1:] if args is None else args)
    as_json = "--json" in argv
    JSON_ERRORS.set(as_json)
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="backfill", standalone_mode=False)
    except NoArgsIsHelpError as exc:
        exc.show()
        return exc.exit_code
    except UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "backfill"
        report_error(f"{exc.format_message()} (see `{where} --help`)", as_json=as_json, type="usage")
        return exc.exit_code
    except ClickException as exc:
        report_error(exc.format_message(), as_json=as_json)
        return exc.exit_code
    except typer.Abort:
        report_error("aborted", as_json=as_json)
        return 130
    except (DomainError, SettingsError) as exc:
        report_error(str(getattr(exc, "message", exc)), as_json=as_json)
        return 1
    except SQLAlchemyError as exc:
        url = getattr(getattr(exc, "engine", None), "url", None)
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
        report_error(f"database error{f' ({shown_url(str(url))})' if url else ''}: {reason}", as_json=as_json)
        return 1
    except Exception as exc:
        if os.environ.get("BACKFILL_TRACEBACK"):
            raise
        reason = " ".join(str(exc).split())
        report_error(f"unexpected {type(exc).__name__}: {reason} (BACKFILL_TRACEBACK=1 shows where)", as_json=as_json)
        return 1
    return result if isinstance(result, int) else 0


def main() -> NoReturn:
    sys.exit(run())
