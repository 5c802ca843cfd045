"""Parsing and formatting of instants (docs/api.md "Interval arithmetic").

Every function returns or expects aware datetimes in UTC. The rules:

* A plain date (``2024-01-31``) means 00:00 wall-clock time in the given timezone.
* An explicit offset (``Z``, ``+01:00``, ``+0100``, ``+01``) wins over the timezone.
* A date with a time but no offset is UTC in the pipeline dialect (``naive="utc"``)
  and wall-clock time in the timezone in the team dialect (``naive="local"``).
* Wall-clock times are resolved like zoneinfo's ``fold=0``: a time that does not
  exist (inside a spring-forward gap) moves forward by the length of the gap
  (02:30 on 2024-03-31 in Europe/Berlin is 03:30 CEST), an ambiguous time (inside a
  fall-back overlap) takes its first occurrence.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, date, datetime, timedelta, tzinfo
from datetime import timezone as fixed_offset
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from backfill.domain.errors import ValidationError

__all__ = [
    "ACCEPTED_FORMATS",
    "format_iso_z",
    "format_pipeline",
    "is_date_only",
    "load_zone",
    "parse_instant",
    "resolve_wall_time",
    "to_utc",
]

ACCEPTED_FORMATS = (
    "YYYY-MM-DD, YYYY-MM-DD HH:MM:SS or ISO 8601 such as 2024-01-31T09:00:00Z or 2024-01-31T09:00:00.5+01:00"
)

_DATE_ONLY_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_DATETIME_RE = re.compile(
    r"""
    (?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})
    [Tt\ ]
    (?P<hour>\d{2}):(?P<minute>\d{2})
    (?::(?P<second>\d{2})(?:[.,](?P<fraction>\d{1,9}))?)?
    \ ?
    (?P<offset>[Zz]|[+-]\d{2}(?::?\d{2})?)?
    """,
    re.VERBOSE,
)


# Files of a zoneinfo directory that are not zones of the IANA database: the host's own
# zone (``localtime``), a template (``posixrules``) and a placeholder (``Factory``).
NOT_IANA_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@functools.cache
def iana_zone_names() -> frozenset[str]:
    """Every zone name of the IANA database (the tzdata package or the system's)."""
    return frozenset(available_timezones()) - NOT_IANA_ZONES


def load_zone(name: object, *, field: str = "timezone") -> ZoneInfo:
    """Return the IANA zone ``name`` or raise ValidationError naming ``field``.

    Only names of the IANA database count: ``ZoneInfo`` would also open any file under
    the zoneinfo directory (``localtime`` — whatever zone the server happens to run in —
    ``posixrules``, ``Factory``, ``posix/...``)."""
    if not isinstance(name, str) or not name.strip():
        raise ValidationError(
            f"timezone must be an IANA zone name such as 'Europe/Berlin' or 'UTC', got {name!r}",
            field=field,
        )
    unknown = ValidationError(
        f"unknown timezone {name!r}; use an IANA zone name such as 'Europe/Berlin' or 'UTC'",
        field=field,
    )
    if name.strip() not in iana_zone_names():
        raise unknown
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise unknown from None


def resolve_wall_time(wall: datetime, zone: tzinfo) -> datetime:
    """Turn the naive wall-clock time ``wall`` in ``zone`` into an aware UTC datetime.

    Nonexistent times move forward by the gap, ambiguous ones take the first
    occurrence (zoneinfo ``fold=0`` semantics). May raise OverflowError at the
    edges of the datetime range.
    """
    if wall.tzinfo is not None or wall.fold:
        wall = wall.replace(tzinfo=None, fold=0)
    offset = zone.utcoffset(wall)
    if offset is None:
        raise ValueError(f"{zone!r} has no UTC offset for {wall}")
    return (wall - offset).replace(tzinfo=UTC)


def to_utc(dt: datetime) -> datetime:
    """``dt`` converted to UTC; a naive ``dt`` is taken to be UTC already."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _invalid(value: object, field: str, detail: str = "") -> ValidationError:
    extra = f" ({detail})" if detail else ""
    return ValidationError(
        f"{field}: {value!r} is not a valid date or date-time{extra}; accepted formats: {ACCEPTED_FORMATS}",
        field=field,
    )


def is_date_only(value: str) -> bool:
    """True if ``value`` is a valid calendar date without a time (``YYYY-MM-DD``)."""
    if not isinstance(value, str):
        return False
    m = _DATE_ONLY_RE.fullmatch(value.strip())
    if m is None:
        return False
    try:
        date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return False
    return True


def _parse_offset(text: str) -> timedelta:
    if text in ("Z", "z"):
        return timedelta(0)
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours = int(digits[:2])
    minutes = int(digits[2:4]) if len(digits) > 2 else 0
    if hours > 23 or minutes > 59:
        raise ValueError("offset out of range")
    return sign * timedelta(hours=hours, minutes=minutes)


def parse_instant(
    value: str | date | datetime,
    *,
    field: str,
    timezone: str = "UTC",
    naive: Literal["utc", "local"] = "local",
) -> datetime:
    """Parse ``value`` into an aware UTC datetime (see the module docstring for the rules).

    ``field`` names the input in the ValidationError raised for bad input.
    """
    if naive not in ("utc", "local"):
        raise ValueError(f"naive must be 'utc' or 'local', not {naive!r}")
    zone = load_zone(timezone)
    try:
        if isinstance(value, datetime):
            if value.tzinfo is not None and value.utcoffset() is not None:
                return value.astimezone(UTC)
            wall = value.replace(tzinfo=None)
            return wall.replace(tzinfo=UTC) if naive == "utc" else resolve_wall_time(wall, zone)
        if isinstance(value, date):
            return resolve_wall_time(datetime(value.year, value.month, value.day), zone)
        if not isinstance(value, str):
            raise _invalid(value, field, f"expected a string, not {type(value).__name__}")
        text = value.strip()
        m = _DATE_ONLY_RE.fullmatch(text)
        if m is not None:
            wall = datetime(int(m.group(1)), int(m.group(2)), int(m.group(3)))
            return resolve_wall_time(wall, zone)
        m = _DATETIME_RE.fullmatch(text)
        if m is None:
            raise _invalid(value, field)
        fraction = m.group("fraction") or ""
        wall = datetime(
            int(m.group("year")),
            int(m.group("month")),
            int(m.group("day")),
            int(m.group("hour")),
            int(m.group("minute")),
            int(m.group("second") or 0),
            int((fraction + "000000")[:6]),
        )
        offset_text = m.group("offset")
        if offset_text is not None:
            offset = _parse_offset(offset_text)
            return wall.replace(tzinfo=fixed_offset(offset)).astimezone(UTC)
        if naive == "utc":
            return wall.replace(tzinfo=UTC)
        return resolve_wall_time(wall, zone)
    except ValidationError:
        raise
    except (ValueError, OverflowError) as exc:
        raise _invalid(value, field, str(exc)) from None


def format_pipeline(dt: datetime) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in UTC (pipeline dialect). Naive input is taken as UTC."""
    u = to_utc(dt)
    return f"{u.year:04d}-{u.month:02d}-{u.day:02d} {u.hour:02d}:{u.minute:02d}:{u.second:02d}"


def format_iso_z(dt: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` in UTC, microseconds dropped. Naive input is taken as UTC."""
    u = to_utc(dt)
    return f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}Z"
