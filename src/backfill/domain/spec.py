"""A backfill as a user asks for it, and the one validation every adapter goes through.

Both HTTP dialects and the CLI build a :class:`BackfillSpec` (renaming their fields, and
nothing else) and the services validate it with :func:`validate` against the pipeline
it is for: the datetimes parsed in the backfill's timezone, the interval series built
(which checks the range, the interval and the cron expression), the block selection
checked against the pipeline's blocks, the pipeline's defaults applied, and every other
value range-checked. Each refusal is a ``ValidationError`` naming its (canonical) field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Final, Literal

from backfill.domain import limits
from backfill.domain.errors import ValidationError
from backfill.domain.intervals import IntervalSeries
from backfill.domain.model import IntervalType, Reprocess, RunOrder, is_calendar
from backfill.domain.notifications import Webhook, parse_webhooks
from backfill.domain.pipeline import PipelineDefinition, validate_selection
from backfill.domain.timeparse import load_zone, parse_instant

DEFAULT_MAX_ACTIVE_RUNS = 4
MAX_MAX_ACTIVE_RUNS = 1000
MAX_RETRIES = 100
MAX_NAME_LENGTH = limits.MAX_NAME_LENGTH
Naive = Literal["utc", "local"]

# Settings that shape the intervals or what a run does: editable only before the start.
SHAPE_FIELDS = (
    "start",
    "end",
    "interval_type",
    "interval_units",
    "cron",
    "timezone",
    "variables",
    "block_uuids",
)
EDITABLE_BEFORE_START = (
    *SHAPE_FIELDS,
    "run_order",
    "reprocess",
    "retries",
    "retry_delay_seconds",
    "timeout_seconds",
)


class Default(Enum):
    """Marks a value the request left out, whose default depends on other values."""

    INTERVAL_UNITS = "default interval units"


DEFAULT_UNITS: Final = Default.INTERVAL_UNITS


def default_interval(
    interval_type: str | None, interval_units: int | Default | None, cron: str | None
) -> tuple[str, int | None]:
    """The interval of a request that leaves parts of it out: steps of one day; with a cron
    expression the ``custom`` type, stepping from fire time to fire time (no units)."""
    itype = interval_type or (IntervalType.CUSTOM.value if cron else IntervalType.DAY.value)
    units = (None if cron else 1) if interval_units is DEFAULT_UNITS else interval_units
    return itype, units


@dataclass
class BackfillSpec:
    """A backfill as requested by a user, before validation. Datetimes may be strings
    (parsed in the backfill's timezone, ``naive`` deciding what an offset-less time means)."""

    start: str | datetime
    end: str | datetime
    interval_type: str | None = None  # None: see default_interval
    interval_units: int | Default | None = DEFAULT_UNITS
    cron: str | None = None
    timezone: str | None = None
    name: str | None = None  # None: a name made of the pipeline and the range
    variables: Mapping[str, Any] | None = None
    block_uuids: list[str] | None = None  # None: every block
    max_active_runs: int = DEFAULT_MAX_ACTIVE_RUNS
    run_order: str = RunOrder.NEWEST_FIRST.value
    reprocess: str = Reprocess.ALL.value
    retries: int | None = None  # None: the pipeline's (also for the two below)
    retry_delay_seconds: float | None = None
    timeout_seconds: float | None = None
    notify: Sequence[Mapping[str, Any]] | None = None
    naive: Naive = "local"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineDefaults:
    """What a backfill takes from its pipeline when the request does not say."""

    uuid: str
    timezone: str | None
    retries: int
    retry_delay_seconds: float
    timeout_seconds: float | None
    definition: PipelineDefinition


@dataclass(frozen=True)
class ValidBackfill:
    """A validated spec: every value checked and every default applied."""

    name: str
    start: datetime
    end: datetime
    interval_type: str
    interval_units: int | None
    cron: str | None
    timezone: str
    block_uuids: tuple[str, ...] | None
    variables: dict[str, Any] | None
    max_active_runs: int
    run_order: str
    reprocess: str
    retries: int
    retry_delay_seconds: float
    timeout_seconds: float | None
    series: IntervalSeries
    notify: tuple[Webhook, ...] = ()

    def values(self) -> dict[str, Any]:
        """The columns of a backfill row this spec decides."""
        return {
            "name": self.name,
            "start": self.start,
            "end": self.end,
            "interval_type": self.interval_type,
            "interval_units": self.interval_units,
            "cron": self.cron,
            "timezone": self.timezone,
            "block_uuids": list(self.block_uuids) if self.block_uuids is not None else None,
            "variables": self.variables,
            "max_active_runs": self.max_active_runs,
            "run_order": self.run_order,
            "reprocess": self.reprocess,
            "retries": self.retries,
            "retry_delay_seconds": self.retry_delay_seconds,
            "timeout_seconds": self.timeout_seconds,
            "range_end_exclusive": self.series.last_end,
            "runs_total": self.series.count,
            "notify": [h.to_json() for h in self.notify] if self.notify else None,
        }


# ---- checks of single values ---------------------------------------------------------


def _timezone(name: str | None, pipeline: PipelineDefaults) -> str:
    tz = name or pipeline.timezone or "UTC"
    load_zone(tz)  # a name of the IANA database, not any file under zoneinfo/
    return tz


def check_int(value: Any, field: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{field} must be an integer", field=field)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ValidationError(f"{field} must be {bound}", field=field)
    return value


def _non_negative(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValidationError(f"{field} must be a number ≥ 0", field=field)
    return float(value)


def reject_nul(value: Any, field: str) -> None:
    """Text with NUL characters cannot be stored (PostgreSQL refuses it); refuse it on
    every database alike, naming the field, instead of failing at the INSERT."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationError(f"{field} must not contain NUL (\\u0000) characters", field=field)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            reject_nul(key, field)
            reject_nul(item, field)
    elif isinstance(value, list | tuple):
        for item in value:
            reject_nul(item, field)


def check_name(value: Any) -> str:
    """A backfill's name: non-empty text of at most ``MAX_NAME_LENGTH`` characters."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("name must not be empty", field="name")
    if len(value) > MAX_NAME_LENGTH:
        raise ValidationError(f"name must be at most {MAX_NAME_LENGTH} characters", field="name")
    reject_nul(value, "name")
    return value


def _enum(value: Any, enum: type[RunOrder] | type[Reprocess], field: str) -> str:
    try:
        return str(enum(value).value)
    except ValueError as exc:
        allowed = ", ".join(e.value for e in enum)
        raise ValidationError(f"{field} must be one of: {allowed}", field=field) from exc


def _selection(definition: PipelineDefinition, block_uuids: list[str] | None) -> tuple[str, ...] | None:
    if block_uuids is None:
        return None
    if not isinstance(block_uuids, list) or not all(isinstance(b, str) for b in block_uuids):
        raise ValidationError("block_uuids must be a list of block uuids", field="block_uuids")
    try:
        return validate_selection(definition, block_uuids)
    except ValidationError as exc:
        raise ValidationError(exc.message, field="block_uuids") from exc


def _default_name(pipeline_uuid: str, calendar: bool, start: datetime, end: datetime) -> str:
    fmt = "%Y-%m-%d" if calendar else "%Y-%m-%d %H:%M:%S"
    return f"{pipeline_uuid} {start.strftime(fmt)} → {end.strftime(fmt)}"


# ---- the validation --------------------------------------------------------------------


def validate(spec: BackfillSpec, pipeline: PipelineDefaults) -> ValidBackfill:
    """Check every value of ``spec`` for a backfill of ``pipeline`` and apply the defaults."""
    tz = _timezone(spec.timezone, pipeline)
    start = parse_instant(spec.start, field="start", timezone=tz, naive=spec.naive)
    end = parse_instant(spec.end, field="end", timezone=tz, naive=spec.naive)
    interval_type, interval_units = default_interval(spec.interval_type, spec.interval_units, spec.cron)
    series = IntervalSeries(start, end, interval_type, interval_units, timezone=tz, cron=spec.cron)
    if spec.variables is not None and not isinstance(spec.variables, Mapping):
        raise ValidationError("variables must be an object", field="variables")
    reject_nul(spec.variables, "variables")
    limits.check_variables(spec.variables)
    selection = _selection(pipeline.definition, spec.block_uuids)
    retries = (
        pipeline.retries if spec.retries is None else check_int(spec.retries, "retries", minimum=0, maximum=MAX_RETRIES)
    )
    delay = (
        pipeline.retry_delay_seconds
        if spec.retry_delay_seconds is None
        else _non_negative(spec.retry_delay_seconds, "retry_delay_seconds")
    )
    timeout = pipeline.timeout_seconds if spec.timeout_seconds is None else spec.timeout_seconds
    if timeout is not None and (_non_negative(timeout, "timeout_seconds") <= 0):
        raise ValidationError("timeout_seconds must be > 0", field="timeout_seconds")
    calendar = is_calendar(interval_type, spec.cron)
    name = (
        check_name(spec.name)
        if spec.name is not None
        else _default_name(pipeline.uuid, calendar, start, end)[:MAX_NAME_LENGTH]
    )
    return ValidBackfill(
        name=name,
        start=start,
        end=end,
        interval_type=interval_type,
        interval_units=interval_units,
        cron=spec.cron,
        timezone=tz,
        block_uuids=selection,
        variables=dict(spec.variables) if spec.variables is not None else None,
        max_active_runs=check_int(spec.max_active_runs, "max_active_runs", maximum=MAX_MAX_ACTIVE_RUNS),
        run_order=_enum(spec.run_order, RunOrder, "run_order"),
        reprocess=_enum(spec.reprocess, Reprocess, "reprocess"),
        retries=retries,
        retry_delay_seconds=delay,
        timeout_seconds=timeout,
        series=series,
        notify=tuple(parse_webhooks(spec.notify)),
    )
