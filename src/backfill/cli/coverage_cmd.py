"""``backfill coverage PIPELINE --start --end [--interval] [--split day]`` (docs/cli.md): which intervals of a
pipeline are completed, failed, running, queued, cancelled or never ran, over all its
backfills, as spans of equal status (a table, or the API object with ``--json``)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from backfill.cli import backfills_cmd
from backfill.cli.backfills_cmd import TeamOption, TokenOption, UrlOption, _errors, _out, _print_json, _status, _when
from backfill.cli.common import JsonOption

STATUS_ORDER = ("COMPLETED", "FAILED", "RUNNING", "QUEUED", "CANCELLED", "MISSING")
# The API's query parameters and the flags that set them (errors are said as flags).
FLAGS = {
    "start": "--start",
    "end": "--end",
    "interval_type": "--interval",
    "interval_units": "--units",
    "cron": "--cron",
    "timezone": "--timezone",
    "split": "--split",
}


def coverage(
    pipeline: Annotated[str, typer.Argument(help="pipeline uuid or id", show_default=False)],
    start: Annotated[str, typer.Option("--start", help="first interval start (date or datetime)", show_default=False)],
    end: Annotated[str, typer.Option("--end", help="last interval start, inclusive", show_default=False)],
    interval: Annotated[
        str, typer.Option("--interval", help="second, minute, hour, day, week, month, year or custom")
    ] = "day",
    units: Annotated[int, typer.Option("--units", help="units per interval", min=1)] = 1,
    cron: Annotated[str | None, typer.Option("--cron", help="cron expression (with --interval custom)")] = None,
    timezone: Annotated[str | None, typer.Option("--timezone", help="IANA zone; default the pipeline's")] = None,
    split: Annotated[
        str | None, typer.Option("--split", help="day: cut spans at local midnight (one line per day at least)")
    ] = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    team: TeamOption = None,
) -> None:
    """Show which intervals of a pipeline are done, failed or never ran, over all its backfills."""
    with _errors(FLAGS):
        data = backfills_cmd._client(url, token, team).coverage(
            pipeline,
            start,
            end,
            interval_type=interval,
            interval_units=units,
            cron=cron,
            timezone=timezone,
            split=split,
        )
        if as_json:
            _print_json(data)
            return
        out = _out()
        counts = data.get("counts", {})
        summary = ", ".join(f"{counts[name]} {name.lower()}" for name in STATUS_ORDER if counts.get(name))
        out.print(f"{data['total']} intervals ({escape(data['timezone'])}): {summary or 'none'}")
        table = Table()
        for column in ("status", "first interval", "last interval", "intervals", "backfill"):
            table.add_column(column, no_wrap=True)
        for span in data["spans"]:
            table.add_row(
                _status(span["status"]),
                _when(span["start"]),
                _when(span["last_start"]),
                str(span["count"]),
                "-" if span["backfill_id"] is None else str(span["backfill_id"]),
            )
        out.print(table)


def register(app: typer.Typer) -> None:
    """Add the command to ``app``; calling it again changes nothing."""
    if coverage not in {info.callback for info in app.registered_commands}:
        app.command("coverage")(coverage)
