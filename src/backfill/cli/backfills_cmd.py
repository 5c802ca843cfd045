"""``backfill create / list / show / runs / logs / cancel / retry / pause / resume / rerun``.

These commands talk to a running server through :mod:`backfill.client` (docs/cli.md). The
connection comes from ``--url`` / ``--token`` / ``--team``, else ``BACKFILL_URL`` /
``BACKFILL_TOKEN`` / ``BACKFILL_TEAM_ID``, else ``./.backfill/credentials.json`` (written by
``backfill serve`` on its first start). Every command prints the API object(s) with
``--json``; errors are one line on stderr (``error: ...``) and a non-zero exit status.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from backfill.cli.common import JsonOption, fail
from backfill.client import BackfillApiError, BackfillClient, BackfillConnectionError, BackfillError
from backfill.domain.spec import DEFAULT_UNITS, default_interval

# ---- connection options --------------------------------------------------------------------

CONNECTION = "Connection"
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="server URL (default: BACKFILL_URL, else ./.backfill/credentials.json)",
        rich_help_panel=CONNECTION,
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="API token (default: BACKFILL_TOKEN, else ./.backfill/credentials.json)",
        rich_help_panel=CONNECTION,
        show_default=False,
    ),
]
TeamOption = Annotated[
    int | None,
    typer.Option(
        "--team",
        help="team id (default: BACKFILL_TEAM_ID, else ./.backfill/credentials.json)",
        rich_help_panel=CONNECTION,
        show_default=False,
    ),
]
BackfillIdArg = Annotated[int, typer.Argument(help="backfill id", show_default=False)]

STATUS_STYLES = {
    "CREATED": "white",
    "SCHEDULED": "cyan",
    "QUEUED": "cyan",
    "RUNNING": "blue",
    "COMPLETED": "green",
    "FAILED": "red",
    "CANCELLED": "yellow",
}


def _client(url: str | None, token: str | None, team: int | None) -> BackfillClient:
    return BackfillClient.from_environment(url=url, token=token, team_id=team)


STATUS_FLAGS = {"status": "--status"}
# The API's names of the fields ``create`` sends, and the flags that set them.
CREATE_FLAGS = {
    "range_start": "--start",
    "range_end": "--end",
    "interval_type": "--interval",
    "interval_units": "--units",
    "cron": "--cron",
    "timezone": "--timezone",
    "name": "--name",
    "variables": "--var",
    "max_active_runs": "--max-active-runs",
    "run_order": "--run-order",
    "reprocess": "--reprocess",
    "retries": "--retries",
    "block_uuids": "--block",
}


def in_flag_words(message: str, flags: dict[str, str]) -> str:
    """``range_start: '2024-13-01' is not …`` → ``--start: '2024-13-01' is not …``: an
    API message that begins with a field name (or ``invalid query parameter NAME:``)
    begins with the flag instead."""
    query = re.match(r"invalid query parameter (\w+): ", message)
    if query and query.group(1) in flags:
        return f"{flags[query.group(1)]}: {message[query.end() :]}"
    field, sep, rest = message.partition(":")
    flag = flags.get(field.strip())
    if sep and flag:
        return f"{flag}:{rest}"
    head, space, tail = message.partition(" ")
    flag = flags.get(head)
    return f"{flag}{space}{tail}" if flag else message


@contextmanager
def _errors(flags: dict[str, str] | None = None) -> Iterator[None]:
    """Turn every failure into one error line (JSON with --json) and a non-zero exit status."""
    try:
        yield
    except (typer.Exit, typer.Abort, typer.TyperException):  # exits and usage errors: as they are
        raise
    except BackfillApiError as exc:
        fail(in_flag_words(str(exc), flags or {}), details={"code": exc.code, "status": exc.status})
    except BackfillConnectionError as exc:
        fail(str(exc), details={"code": "CONNECTION_ERROR", "url": exc.url})
    except BackfillError as exc:
        fail(str(exc))
    except TimeoutError as exc:
        fail(str(exc))
    except Exception as exc:  # never a traceback on the command line
        fail(f"{type(exc).__name__}: {' '.join(str(exc).split())}")


def _out() -> Console:
    # Piped output is read by people too (and by grep): wider than rich's 80-column default.
    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(highlight=False, soft_wrap=False, width=160 if wide else None)


def _err() -> Console:
    return Console(stderr=True, highlight=False)


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2))


def _status(value: Any) -> str:
    text = str(value)
    style = STATUS_STYLES.get(text)
    return f"[{style}]{text}[/{style}]" if style else escape(text)


def _when(value: Any) -> str:
    """``2024-02-01T09:00:00Z`` → ``2024-02-01 09:00:00`` (UTC), or ``-``."""
    if not value:
        return "-"
    return str(value).replace("T", " ").removesuffix("Z")


def _seconds(value: Any) -> str:
    if value is None:
        return "-"
    seconds = float(value)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _ended(bf: dict[str, Any]) -> int:
    """Runs that are over, whatever the outcome (what is neither queued nor running)."""
    return int(bf["transfer_runs_completed"]) + int(bf["transfer_runs_failed"]) + int(bf["transfer_runs_cancelled"])


def _progress_text(bf: dict[str, Any]) -> str:
    """Progress as the server defines it (``domain.progress``): finished intervals of
    those that will run; cancelled intervals are shown apart, never as done."""
    metrics = bf.get("metrics") or {}
    done = int(metrics.get("finished_runs", 0))
    to_run = int(metrics.get("runs_to_run", bf["transfer_runs_total"]))
    text = f"{done}/{to_run} ({100.0 * float(metrics.get('progress', 0.0)):.0f}%)"
    if bf.get("transfer_runs_failed"):
        text += f", {bf['transfer_runs_failed']} failed"
    if bf.get("transfer_runs_cancelled"):
        text += f", {bf['transfer_runs_cancelled']} cancelled"
    return text


def _range(bf: dict[str, Any]) -> str:
    units = bf.get("interval_units")
    if bf.get("cron"):
        interval = f"cron {bf['cron']!r}"
    elif units and units != 1:
        interval = f"every {units} {bf['interval_type']}s" if bf["interval_type"] != "custom" else f"every {units}s"
    else:
        interval = f"every {bf['interval_type']}" if bf["interval_type"] != "custom" else "custom"
    return f"{bf['range_start_date']} → {bf['range_end_date']} ({interval}, {bf.get('timezone')})"


def _one_line(text: Any, limit: int = 200) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _first_line(text: Any, limit: int = 300) -> str:
    """The first line of an error (the rest is usually a traceback: see --json or the logs)."""
    lines = [line for line in str(text or "").splitlines() if line.strip()]
    if not lines:
        return ""
    first = _one_line(lines[0], limit)
    return first + " …" if len(lines) > 1 and not first.endswith("…") else first


def _print_error_report(console: Console, bf: dict[str, Any], *, limit: int = 20) -> None:
    report = bf.get("error_report") or []
    if not report:
        return
    count = len(report)
    table = Table(title=f"error report: {count} failed interval{'s' if count != 1 else ''}", title_justify="left")
    table.add_column("data date", no_wrap=True)
    table.add_column("error (first line)", overflow="fold")
    for entry in report[:limit]:
        table.add_row(escape(str(entry.get("transfer_run_date"))), escape(_first_line(entry.get("error"))))
    console.print(table)
    backfill_id = bf["transfer_backfill_id"]
    more = f"{count - limit} more; " if count > limit else ""
    console.print(
        f"{more}full errors: backfill show {backfill_id} --json; logs: backfill runs {backfill_id} --issues-only, "
        "then backfill logs RUN_ID",
        markup=False,
    )


def _summary(bf: dict[str, Any]) -> str:
    paused = " (paused)" if bf.get("paused") else ""
    return (
        f"backfill {bf['transfer_backfill_id']} {bf['status']}{paused}: {_progress_text(bf)} of "
        f"{bf['transfer_uuid']} {bf['range_start_date']} → {bf['range_end_date']}"
    )


# ---- create ----------------------------------------------------------------------------------


def parse_vars(values: list[str] | None) -> dict[str, Any] | None:
    """``KEY=VALUE`` pairs; a VALUE that is valid JSON is parsed, else kept as a string."""
    if not values:
        return None
    out: dict[str, Any] = {}
    for raw in values:
        key, sep, value = raw.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"--var {raw!r}: expected KEY=VALUE, e.g. --var region=eu")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def _print_dry_run(console: Console, dry: dict[str, Any]) -> None:
    to_run = dry["transfer_runs_to_run"]
    skipped = dry["transfer_runs_skipped"]
    console.print(
        f"dry run of {escape(str(dry['name']))}: {dry['transfer_runs_total']} intervals, "
        f"{to_run} would run, {skipped} skipped (reprocess {dry['reprocess']}, {dry['run_order']}); nothing saved"
    )
    intervals = dry.get("intervals") or []
    if intervals:
        more = f" (the first {len(intervals)})" if len(intervals) < to_run else ""
        console.print(f"would run{more}, in run order:")
        for iv in intervals:
            console.print(f"  {iv['data_date']}  [{iv['interval_start']} → {iv['interval_end']})", markup=False)
    skipped_list = dry.get("skipped_intervals") or []
    if skipped_list:
        more = f" (the first {len(skipped_list)})" if len(skipped_list) < skipped else ""
        console.print(f"skipped{more}:")
        for iv in skipped_list:
            console.print(f"  {iv['data_date']}  {iv['interval_start']}", markup=False)


class _ProgressView:
    """The live bar of ``--wait``: completed / failed / running / total and the ETA."""

    def __init__(self, console: Console, title: str) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TextColumn("{task.fields[eta]}"),
            console=console,
        )
        self.task = self.progress.add_task(title, total=None, counts="", eta="")

    def __enter__(self) -> _ProgressView:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, bf: dict[str, Any]) -> None:
        counts = (
            f"[green]✓ {bf['transfer_runs_completed']}[/green] [red]✗ {bf['transfer_runs_failed']}[/red] "
            f"[blue]▶ {bf['transfer_runs_running']}[/blue]"
        )
        if bf.get("transfer_runs_cancelled"):
            counts += f" [yellow]⊘ {bf['transfer_runs_cancelled']}[/yellow]"
        status = str(bf["status"]) + (" paused" if bf.get("paused") else "")
        metrics = bf.get("metrics") or {}
        eta_seconds = metrics.get("estimated_seconds_remaining")
        eta = f"ETA {_seconds(eta_seconds)}" if eta_seconds is not None else ""
        self.progress.update(
            self.task,
            total=int(metrics.get("runs_to_run", bf["transfer_runs_total"])),
            completed=int(metrics.get("finished_runs", 0)),
            description=f"backfill {bf['transfer_backfill_id']} {_status(status)}",
            counts=counts,
            eta=eta,
        )


def _wait(client: BackfillClient, bf: dict[str, Any], *, poll: float, as_json: bool) -> dict[str, Any]:
    backfill_id = int(bf["transfer_backfill_id"])
    err = _err()
    started = time.monotonic()
    try:
        with _ProgressView(err, f"backfill {backfill_id}") as view:
            view.update(bf)
            final = client.wait(backfill_id, poll=poll, on_progress=view.update)
    except KeyboardInterrupt:
        err.print(f"stopped waiting; backfill {backfill_id} goes on on the server (backfill show {backfill_id})")
        raise typer.Exit(130) from None
    elapsed = time.monotonic() - started
    if as_json:
        _print_json(final)
    else:
        out = _out()
        out.print(f"{escape(_summary(final))} in {_seconds(elapsed)}")
        _print_error_report(out, final)
    return final


def create(
    pipeline: Annotated[str, typer.Argument(help="pipeline uuid (or numeric id)", show_default=False)],
    start: Annotated[
        str,
        typer.Option(
            "--start", help="first interval start, inclusive: YYYY-MM-DD or an ISO datetime", show_default=False
        ),
    ],
    end: Annotated[
        str, typer.Option("--end", help="last interval start, inclusive (same formats)", show_default=False)
    ],
    interval: Annotated[
        str | None,
        typer.Option(
            "--interval",
            help="second, minute, hour, day, week, month, year or custom (default: day; custom with --cron)",
            show_default=False,
        ),
    ] = None,
    units: Annotated[
        int | None,
        typer.Option("--units", help="units per interval, seconds for custom (default: 1)", show_default=False),
    ] = None,
    cron: Annotated[str | None, typer.Option("--cron", help="cron expression (implies --interval custom)")] = None,
    timezone: Annotated[
        str | None, typer.Option("--timezone", help="IANA time zone (default: the pipeline's, else UTC)")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="backfill name")] = None,
    var: Annotated[
        list[str] | None,
        typer.Option("--var", help="KEY=VALUE variable override, repeatable; VALUE is JSON when valid, else a string"),
    ] = None,
    max_active_runs: Annotated[
        int | None, typer.Option("--max-active-runs", help="runs of this backfill at once (default 4)")
    ] = None,
    run_order: Annotated[str | None, typer.Option("--run-order", help="newest_first (default) or oldest_first")] = None,
    reprocess: Annotated[
        str | None,
        typer.Option("--reprocess", help="all (default), failed (not yet completed) or missing (never run)"),
    ] = None,
    retries: Annotated[
        int | None, typer.Option("--retries", help="retries per interval (default: the pipeline's)")
    ] = None,
    block: Annotated[
        list[str] | None, typer.Option("--block", help="run only this block, repeatable (default: all)")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the intervals that would run and those skipped; save nothing")
    ] = False,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="show a live progress bar until it finishes; exit 1 if it failed or was cancelled"),
    ] = False,
    poll: Annotated[float, typer.Option("--poll", help="seconds between progress checks with --wait", min=0.05)] = 1.0,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    team: TeamOption = None,
) -> None:
    """Create a backfill of PIPELINE over [--start, --end] (both inclusive) and start it."""
    try:
        variables = parse_vars(var)
    except typer.BadParameter as exc:
        fail(str(exc))
    interval_type, interval_units = default_interval(interval, units if units is not None else DEFAULT_UNITS, cron)
    options: dict[str, Any] = {
        "interval_type": interval_type,
        "interval_units": interval_units,
        "cron": cron,
        "timezone": timezone,
        "name": name,
        "variables": variables,
        "max_active_runs": max_active_runs,
        "run_order": run_order,
        "reprocess": reprocess,
        "retries": retries,
        "block_uuids": block,
    }
    with _errors(CREATE_FLAGS):
        client = _client(url, token, team)
        target: int | str = pipeline
        if dry_run:
            dry = client.dry_run(target, start, end, **options)
            if as_json:
                _print_json(dry)
            else:
                _print_dry_run(_out(), dry)
            return
        bf = client.create_backfill(target, start, end, **options)
        if not wait:
            if as_json:
                _print_json(bf)
            else:
                _out().print(
                    f"backfill {bf['transfer_backfill_id']} created: {escape(str(bf['name']))}, "
                    f"{bf['transfer_runs_total']} interval runs, status {_status(bf['status'])}\n"
                    f"follow it with: backfill show {bf['transfer_backfill_id']}"
                )
            return
        final = _wait(client, bf, poll=poll, as_json=as_json)
    if final["status"] != "COMPLETED":
        fail(
            f"backfill {final['transfer_backfill_id']} {final['status']}: "
            f"{final['transfer_runs_failed']} failed, {final['transfer_runs_cancelled']} cancelled "
            f"of {final['transfer_runs_total']} interval runs"
        )


# ---- list / show ---------------------------------------------------------------------------------


def list_(
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="CREATED, SCHEDULED, RUNNING, COMPLETED, FAILED or CANCELLED (comma-separated for several)",
        ),
    ] = None,
    pipeline: Annotated[str | None, typer.Option("--pipeline", help="only this pipeline (uuid or id)")] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="every status (default: the unfinished ones, as the API does)")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", help="at most this many, newest first", min=1, max=1000)] = 100,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    team: TeamOption = None,
) -> None:
    """List the team's backfills, newest first (unfinished ones unless --all or --status)."""
    with _errors(STATUS_FLAGS):
        client = _client(url, token, team)
        statuses = "ALL" if all_ else status
        items = client.backfills(status=statuses, pipeline=pipeline, limit=limit)
        if as_json:
            _print_json(items)
            return
        out = _out()
        if not items:
            out.print("no backfills" + ("" if all_ or status else " in progress (use --all for finished ones)"))
            return
        table = Table()
        for column in ("id", "pipeline", "name", "status", "progress", "created"):
            table.add_column(column, no_wrap=column in ("id", "status", "created"))
        for bf in items:
            paused = " [yellow](paused)[/yellow]" if bf.get("paused") else ""
            table.add_row(
                str(bf["transfer_backfill_id"]),
                escape(str(bf["transfer_uuid"])),
                escape(str(bf["name"])),
                _status(bf["status"]) + paused,
                _progress_text(bf),
                _when(bf["created_time"]),
            )
        out.print(table)


def show(
    backfill_id: BackfillIdArg,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    team: TeamOption = None,
) -> None:
    """Show one backfill: settings, live counters, metrics and the error report."""
    with _errors():
        bf = _client(url, token, team).backfill(backfill_id)
        if as_json:
            _print_json(bf)
            return
        out = _out()
        metrics = bf.get("metrics") or {}
        queued = max(
            0,
            int(bf["transfer_runs_created"]) - _ended(bf) - int(bf["transfer_runs_running"]),
        )
        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold", no_wrap=True)
        table.add_column(overflow="fold")
        rows: list[tuple[str, str]] = [
            ("backfill", f"{bf['transfer_backfill_id']}  {escape(str(bf['name']))}"),
            ("pipeline", f"{escape(str(bf['transfer_uuid']))} (id {bf['transfer_id']})"),
            ("status", _status(bf["status"]) + ("  [yellow]paused[/yellow]" if bf.get("paused") else "")),
            ("range", escape(_range(bf))),
            ("progress", _progress_text(bf)),
            (
                "runs",
                f"total {bf['transfer_runs_total']}, materialized {bf['transfer_runs_created']}, "
                f"queued {queued}, running {bf['transfer_runs_running']}, "
                f"completed {bf['transfer_runs_completed']}, failed {bf['transfer_runs_failed']}, "
                f"cancelled {bf['transfer_runs_cancelled']}",
            ),
            (
                "settings",
                f"max_active_runs {bf['max_active_runs']}, run_order {bf['run_order']}, "
                f"reprocess {bf['reprocess']}, retries {bf.get('retries')}",
            ),
        ]
        if bf.get("variables"):
            rows.append(("variables", escape(json.dumps(bf["variables"]))))
        if bf.get("block_uuids") is not None:
            rows.append(("blocks", escape(", ".join(bf["block_uuids"]))))
        rows += [
            (
                "metrics",
                f"mean {_seconds(metrics.get('duration_mean_seconds'))}, "
                f"p95 {_seconds(metrics.get('duration_p95_seconds'))}, rows {metrics.get('rows', 0)}, "
                f"remaining {metrics.get('remaining_runs', 0)}"
                + (
                    f", ETA {_seconds(metrics['estimated_seconds_remaining'])}"
                    if metrics.get("estimated_seconds_remaining") is not None
                    else ""
                ),
            ),
            ("created", f"{_when(bf['created_time'])} UTC (user {bf.get('created_user_id') or '-'})"),
            ("started", _when(bf.get("start_time"))),
            ("ended", _when(bf.get("end_time"))),
        ]
        if bf.get("removed_time"):
            rows.append(("cancelled", f"{_when(bf['removed_time'])} (user {bf.get('removed_user_id') or '-'})"))
        for key, value in rows:
            table.add_row(key, value)
        out.print(table)
        _print_error_report(out, bf)


# ---- runs / logs -------------------------------------------------------------------------------------


def runs(
    backfill_id: BackfillIdArg,
    status: Annotated[
        str | None,
        typer.Option("--status", help="QUEUED, RUNNING, COMPLETED, FAILED or CANCELLED (comma-separated)"),
    ] = None,
    issues_only: Annotated[bool, typer.Option("--issues-only", help="only FAILED and CANCELLED runs")] = False,
    limit: Annotated[int, typer.Option("--limit", help="at most this many", min=1, max=10_000)] = 100,
    offset: Annotated[int, typer.Option("--offset", help="skip this many", min=0)] = 0,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    team: TeamOption = None,
) -> None:
    """List the interval runs of a backfill, by data date."""
    with _errors(STATUS_FLAGS):
        items = _client(url, token, team).runs(
            backfill_id, status=status, issues_only=issues_only, limit=limit, offset=offset
        )
        if as_json:
            _print_json(items)
            return
        out = _out()
        if not items:
            out.print("no runs match")
            return
        table = Table()
        for column in ("run", "data date", "status", "attempt", "version", "started", "duration", "rows", "message"):
            table.add_column(column, no_wrap=column != "message", overflow="fold")
        for run in items:
            table.add_row(
                str(run["id"]),
                escape(str(run["data_date"])),
                _status(run["status"]),
                str(run["attempt"]),
                escape(str(run.get("pipeline_version") or "-")),
                _when(run.get("started_time")),
                _seconds(run.get("total_duration")),
                "-" if run.get("total_rows") is None else str(run["total_rows"]),
                escape(_first_line(run.get("message"), 120)),
            )
        out.print(table)


def _attempt_header(run_id: int, chunk: dict[str, Any]) -> str:
    if not chunk.get("attempt"):
        return f"=== run {run_id}: no attempt yet ===\n"
    parts = [f"run {run_id}", f"attempt {chunk['attempt']} of {chunk['attempts']}"]
    parts.append(str(chunk.get("status") or "RUNNING"))
    if chunk.get("pipeline_version"):
        parts.append(f"pipeline version {chunk['pipeline_version']}")
    return f"=== {' · '.join(parts)} ===\n"


def _attempt_footer(chunk: dict[str, Any]) -> str:
    """A failed attempt's error with its traceback, after its output."""
    if chunk.get("status") == "FAILED" and chunk.get("error"):
        return f"--- error ---\n{str(chunk['error']).rstrip()}\n"
    return ""


def logs(
    run_id: Annotated[int, typer.Argument(help="interval run id (see `backfill runs ID`)", show_default=False)],
    attempt: Annotated[
        int | None, typer.Option("--attempt", help="attempt number (default: the latest)", min=1, show_default=False)
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing new output (and later attempts) until the run ends")
    ] = False,
    poll: Annotated[float, typer.Option("--poll", help="seconds between reads with --follow", min=0.05)] = 1.0,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    team: TeamOption = None,
) -> None:
    """Print one attempt's log (default the latest): a header, a line per block followed by
    its output, and for a failed attempt its error with the traceback."""
    with _errors():
        client = _client(url, token, team)
        chunk = client.logs(run_id, attempt=attempt)
        if as_json and not follow:
            _print_json(chunk)
            return
        content: list[str] = []
        last = "\n"

        def emit(text: str) -> None:
            nonlocal last
            if as_json:
                content.append(text)
            elif text:
                if last != "\n" and text.startswith("==="):
                    sys.stdout.write("\n")
                sys.stdout.write(text)
                sys.stdout.flush()
                last = text[-1]

        def note(text: str) -> None:  # headers and errors: for people, not in --json content
            if not as_json:
                emit(text)

        note(_attempt_header(run_id, chunk))
        emit(chunk["content"])
        try:
            while follow:
                if not chunk["complete"]:
                    time.sleep(poll)
                    chunk = client.logs(run_id, offset=int(chunk["next_offset"]), attempt=chunk["attempt"] or attempt)
                    emit(chunk["content"])
                    continue
                if chunk["run_final"] or attempt is not None:
                    break
                time.sleep(poll)  # between attempts (a retry waits for its delay)
                latest = client.logs(run_id)
                if latest["attempt"] > chunk["attempt"]:
                    note(_attempt_footer(chunk))
                    note(_attempt_header(run_id, latest))
                    emit(latest["content"])
                chunk = latest if latest["attempt"] >= chunk["attempt"] else chunk
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        note(_attempt_footer(chunk))
        if as_json:
            _print_json({**chunk, "offset": 0, "content": "".join(content)})
        elif last != "\n":
            sys.stdout.write("\n")


# ---- actions ----------------------------------------------------------------------------------------


def _action(verb: str, call: Callable[[BackfillClient, int], dict[str, Any]]) -> Callable[..., None]:
    def command(
        backfill_id: BackfillIdArg,
        as_json: JsonOption = False,
        url: UrlOption = None,
        token: TokenOption = None,
        team: TeamOption = None,
    ) -> None:
        with _errors():
            bf = call(_client(url, token, team), backfill_id)
            if as_json:
                _print_json(bf)
            else:
                _out().print(f"{verb}: {escape(_summary(bf))}")

    return command


cancel = _action("cancelled", BackfillClient.cancel)
cancel.__doc__ = "Cancel a backfill: queued runs are cancelled, running ones finish."
retry = _action("retried", BackfillClient.retry)
retry.__doc__ = "Retry the failed and cancelled intervals of a FAILED backfill."
pause = _action("paused", BackfillClient.pause)
pause.__doc__ = "Pause a backfill: no new runs start, running ones finish."
resume = _action("resumed", BackfillClient.resume)
resume.__doc__ = "Resume a paused backfill."


def rerun(
    backfill_id: BackfillIdArg,
    failed: Annotated[bool, typer.Option("--failed", help="every FAILED interval of the backfill")] = False,
    dates: Annotated[
        list[str] | None,
        typer.Option("--date", help="data date of an interval to re-run (repeat for more)", show_default=False),
    ] = None,
    run_ids: Annotated[
        list[int] | None,
        typer.Option("--run", help="interval run id to re-run (repeat for more)", min=1, show_default=False),
    ] = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    team: TeamOption = None,
) -> None:
    """Re-run chosen intervals of a backfill as new attempts (like Airflow's clear): the
    failed ones, or given data dates or run ids; running intervals are left alone."""
    chosen = [flag for flag, given in (("--failed", failed), ("--date", dates), ("--run", run_ids)) if given]
    if len(chosen) != 1:
        fail(
            "give exactly one of --failed, --date D ... or --run RUN_ID ..."
            + (f" (got {', '.join(chosen)})" if chosen else "")
        )
    with _errors():
        client = _client(url, token, team)
        if failed:
            result = client.rerun(backfill_id, statuses=["FAILED"])
        elif dates:
            result = client.rerun(backfill_id, data_dates=dates)
        else:
            result = client.rerun(backfill_id, run_ids=run_ids)
        if as_json:
            _print_json(result)
            return
        running = f", {result['running']} running left alone" if result["running"] else ""
        _out().print(f"re-queued {result['requeued']} interval(s){running}: {escape(_summary(result['backfill']))}")


COMMANDS: dict[str, Callable[..., None]] = {
    "create": create,
    "list": list_,
    "show": show,
    "runs": runs,
    "logs": logs,
    "cancel": cancel,
    "retry": retry,
    "pause": pause,
    "resume": resume,
    "rerun": rerun,
}


def register(app: typer.Typer) -> None:
    """Add the commands to ``app``; calling it again on the same app changes nothing."""
    present = {info.callback for info in app.registered_commands}
    for name, callback in COMMANDS.items():
        if callback not in present:
            app.command(name)(callback)
