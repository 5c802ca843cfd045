"""What both HTTP dialects render alike, each with its own datetime format.

The dialects differ in names and formats (``range_start`` / ``start_datetime``, ISO 8601
with ``Z`` / ``"YYYY-MM-DD HH:MM:SS"``); the rules behind the values are one: a data
date is the local date of a day-or-longer (or cron) interval, else its start instant; an
error text is cut to ``ERROR_TEXT_LIMIT`` characters; a pipeline shows the same settings.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy import RowMapping
from starlette.requests import Request
from starlette.responses import Response

from backfill.domain.timeparse import format_iso_z
from backfill.store.db import Database

ERROR_TEXT_LIMIT = 1000


def database(request: Request) -> Database:
    """The database of the app serving ``request``."""
    db: Database = request.app.state.db
    return db


def json_response(model: BaseModel, *, exclude: Any = None) -> Response:
    """``model`` as a JSON response (``exclude``: fields left out, as pydantic takes them)."""
    return Response(model.model_dump_json(exclude=exclude).encode(), media_type="application/json")


Instant = Callable[[datetime], str]


def data_date(start: datetime, timezone: str, calendar: bool, instant: Instant) -> str:
    """The local date for day-or-longer (and cron) intervals, else the start instant."""
    if calendar:
        return start.astimezone(ZoneInfo(timezone)).date().isoformat()
    return instant(start)


def iso_z(value: datetime | None) -> str | None:
    """An optional instant of the team dialect (ISO 8601 with ``Z``)."""
    return format_iso_z(value) if value is not None else None


def error_text(error: str | None) -> str:
    """The error of a failed interval as shown in an error report."""
    return (error or "failed without an error message")[:ERROR_TEXT_LIMIT]


def columns(row: RowMapping, *names: str) -> dict[str, Any]:
    """Columns a dialect shows as they are, under their own names."""
    return {name: row[name] for name in names}


# Settings of a backfill both dialects show under the column's name.
RUN_SETTINGS = ("max_active_runs", "run_order", "reprocess", "cron", "retries")


def pipeline_settings(row: RowMapping) -> dict[str, Any]:
    """The attributes of a pipeline both dialects show under the same names."""
    return {
        **columns(row, "id", "uuid", "name", "timezone", "retries", "retry_delay_seconds", "timeout_seconds"),
        **columns(row, "version", "load_error"),
        "variables": row["variables"] or {},
    }


def run_counts(row: RowMapping) -> dict[str, int]:
    """A backfill's interval runs by state: ``total``, ``created`` (materialized), ``queued``,
    ``running``, ``completed``, ``failed``, ``cancelled`` and ``pending`` (not created yet)."""
    created = int(row["runs_created"])
    ended_or_running = row["runs_completed"] + row["runs_failed"] + row["runs_cancelled"] + row["runs_running"]
    return {
        "total": int(row["runs_total"]),
        "created": created,
        "queued": max(0, created - ended_or_running),
        "running": int(row["runs_running"]),
        "completed": int(row["runs_completed"]),
        "failed": int(row["runs_failed"]),
        "cancelled": int(row["runs_cancelled"]),
        # not materialized yet; a cancel counts those as cancelled (and stops materializing)
        "pending": 0 if row["exhausted"] else max(0, int(row["runs_total"]) - created),
    }
