"""Cron expressions: parsing, validation and which calendar days match.

This module is the whole cron syntax of the product; croniter is not used. Measured
against cronsim (see "Cron expressions" in ``docs/pipelines.md``), croniter
7.0.0 gets expressions wrong that users write: an equal range such as ``5-5`` or
``JAN-JAN`` means the *whole* field to it, and ``#`` with a restricted day-of-month
intersects instead of OR-ing; it also rejects ``5L`` and ``LW``.

Syntax (case-insensitive): 5 fields, or 6 with seconds as the **last** field. Every
field takes ``*``, ``N``, ``A-B``, ``*/S``, ``A-B/S``, ``N/S`` and lists of them.

* minute 0-59, hour 0-23, second 0-59;
* day-of-month 1-31; also ``?``, ``L`` (last day), ``LW`` (last weekday), ``NW`` (the
  weekday nearest to day N within the month; N past the month's end means its last day);
* month 1-12 or ``JAN`` ... ``DEC``;
* day-of-week 0-7 (0 and 7 are Sunday) or ``SUN`` ... ``SAT``; also ``?``, ``N#K`` (the
  K-th weekday N of the month, K 1-5), ``NL`` or ``LN`` (the last weekday N of the month).

``N/S`` means ``N-max/S``; in day-of-week max is 6 (Saturday), so ``1/2`` is Monday,
Wednesday, Friday. A range must not run backwards (``22-2`` is rejected with a hint to
write ``22-23,0-2``). Aliases: ``@yearly``/``@annually``, ``@monthly``, ``@weekly``,
``@daily``/``@midnight``, ``@hourly``. Hashed (``H``) and random (``R``) values are
rejected.

Day-of-month and day-of-week (croniter's rule, which Airflow uses): when both are
restricted a day matches if **either** matches; otherwise both must. A field counts as
unrestricted when it is ``*`` or ``?``, or when it names every value while the other
field is written with a ``*`` (so ``*/2`` is restricted: ``0 0 */2 * 1`` fires on odd
days and on Mondays). ``#``, ``L`` and ``W`` items are ordinary items of their field
under that rule.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date

from backfill.domain.errors import ValidationError

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_HASH_RE = re.compile(r"[hr](\(\d+-\d+\))?(/\d+)?")
_MONTH_NAMES = {
    name: i + 1
    for i, name in enumerate(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"])
}
_DAY_NAMES = {name: i for i, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
_NUMBER_RE = re.compile(r"\d+")


def cron_error(expr: object, detail: str) -> ValidationError:
    return ValidationError(f"invalid cron expression {expr!r}: {detail}", field="cron")


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int  # the highest value a number may take
    cycle_high: int  # the end of ``*`` and of ``N/S`` (day-of-week: 6, although 7 is Sunday too)
    names: dict[str, int] | None = None


_MINUTE = _Field("minute", 0, 59, 59)
_HOUR = _Field("hour", 0, 23, 23)
_DOM = _Field("day-of-month", 1, 31, 31)
_MONTH = _Field("month", 1, 12, 12, _MONTH_NAMES)
_DOW = _Field("day-of-week", 0, 7, 6, _DAY_NAMES)
_SECOND = _Field("second", 0, 59, 59)


class _FieldError(Exception):
    pass


def _value(text: str, field: _Field) -> int:
    if field.names is not None and text in field.names:
        return field.names[text]
    if not _NUMBER_RE.fullmatch(text):
        raise _FieldError(f"{text!r} is not a number" + (" or a name" if field.names else ""))
    value = int(text)
    if not field.low <= value <= field.high:
        raise _FieldError(f"{value} is out of range {field.low}-{field.high}")
    return value


def _step(text: str) -> int:
    if not _NUMBER_RE.fullmatch(text) or int(text) < 1:
        raise _FieldError(f"step {text!r} must be a whole number of at least 1")
    return int(text)


def _plain_item(item: str, field: _Field) -> set[int]:
    """Values of ``*``, ``N``, ``A-B``, ``*/S``, ``A-B/S`` or ``N/S``."""
    body, slash, step_text = item.partition("/")
    step = _step(step_text) if slash else 1
    if body == "*":
        low, high = field.low, field.cycle_high
    elif "-" in body:
        a, _, b = body.partition("-")
        low, high = _value(a, field), _value(b, field)
        if low > high:
            raise _FieldError(
                f"range {item} runs backwards; write it as two ranges, e.g. {a}-{field.high},{field.low}-{b}"
            )
    else:
        low = _value(body, field)
        high = field.cycle_high if slash else low
    return set(range(low, high + 1, step))


def _parse_plain(text: str, field: _Field) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise _FieldError("empty list item")
        values |= _plain_item(item, field)
    return frozenset(values)


@dataclass(frozen=True, slots=True)
class _DomSpec:
    days: frozenset[int]
    last: bool  # L
    last_weekday: bool  # LW
    nearest_weekday: frozenset[int]  # NW


@dataclass(frozen=True, slots=True)
class _DowSpec:
    days: frozenset[int]  # cron weekdays, Sunday = 0
    nth: frozenset[tuple[int, int]]  # N#K
    last: frozenset[int]  # NL


def _parse_dom(text: str) -> _DomSpec:
    plain: list[str] = []
    last = last_weekday = False
    nearest: set[int] = set()
    for item in text.split(","):
        if item == "L":
            last = True
        elif item == "LW":
            last_weekday = True
        elif item.endswith("W") and item[:-1].isdigit():
            nearest.add(_value(item[:-1], _DOM))
        elif item == "?":
            plain.append("*")
        else:
            plain.append(item)
    days = _parse_plain(",".join(plain), _DOM) if plain else frozenset()
    return _DomSpec(days, last, last_weekday, frozenset(nearest))


def _parse_dow(text: str) -> _DowSpec:
    plain: list[str] = []
    nth: set[tuple[int, int]] = set()
    last: set[int] = set()
    for item in text.split(","):
        if "#" in item:
            day, _, k = item.partition("#")
            if not (k.isdigit() and 1 <= int(k) <= 5):
                raise _FieldError(f"{item}: the week number after # must be 1-5")
            nth.add((_value(day, _DOW) % 7, int(k)))
        elif len(item) > 1 and item.endswith("L"):
            last.add(_value(item[:-1], _DOW) % 7)
        elif len(item) > 1 and item.startswith("L"):
            last.add(_value(item[1:], _DOW) % 7)
        elif item == "?":
            plain.append("*")
        else:
            plain.append(item)
    days = frozenset(d % 7 for d in _parse_plain(",".join(plain), _DOW)) if plain else frozenset()
    return _DowSpec(days, frozenset(nth), frozenset(last))


def _nearest_weekday(year: int, month: int, day: int, length: int) -> int:
    """The weekday (Mon-Fri) nearest to ``day`` without leaving the month."""
    day = min(day, length)
    weekday = calendar.weekday(year, month, day)  # Monday = 0
    if weekday == 5:  # Saturday: the Friday before, or the Monday after on the 1st
        return day - 1 if day > 1 else day + 2
    if weekday == 6:  # Sunday: the Monday after, or the Friday before on the last day
        return day + 1 if day < length else day - 2
    return day


def _last_weekday(year: int, month: int, length: int) -> int:
    weekday = calendar.weekday(year, month, length)
    return length - max(0, weekday - 4)


class CronExpression:
    """A parsed cron expression: its times of day and the days it fires on."""

    def __init__(self, expr: object) -> None:
        if not isinstance(expr, str) or not expr.strip():
            raise cron_error(expr, "expected a cron expression such as '0 6 * * 1-5'")
        text = " ".join(expr.split())
        text = _ALIASES.get(text.lower(), text)
        parts = text.upper().split(" ")
        if len(parts) not in (5, 6):
            raise cron_error(
                expr,
                "use 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds as the last field",
            )
        for part in parts:
            if any(_HASH_RE.fullmatch(item) for item in part.lower().split(",")):
                raise cron_error(expr, "hashed (H) and random (R) values are not supported")
        self.text = text
        field = _MINUTE
        try:
            self.minutes = sorted(_parse_plain(parts[0], _MINUTE))
            field = _HOUR
            self.hours = sorted(_parse_plain(parts[1], _HOUR))
            field = _DOM
            self._dom = _parse_dom(parts[2])
            field = _MONTH
            self._months = _parse_plain(parts[3], _MONTH)
            field = _DOW
            self._dow = _parse_dow(parts[4])
            field = _SECOND
            self.seconds = sorted(_parse_plain(parts[5], _SECOND)) if len(parts) == 6 else [0]
        except _FieldError as exc:
            raise cron_error(expr, f"{field.name} field: {exc}") from None
        dom_text, dow_text = parts[2], parts[4]
        dom_full = len(self._dom.days) == 31
        dow_full = len(self._dow.days) == 7
        self._dom_any = dom_text in ("*", "?") or (dom_full and "*" in dow_text)
        self._dow_any = dow_text in ("*", "?") or (dow_full and "*" in dom_text)

    def _dom_matches(self, year: int, month: int, day: int, length: int) -> bool:
        spec = self._dom
        if day in spec.days:
            return True
        if spec.last and day == length:
            return True
        if spec.last_weekday and day == _last_weekday(year, month, length):
            return True
        return any(day == _nearest_weekday(year, month, n, length) for n in spec.nearest_weekday)

    def _dow_matches(self, day: int, cron_weekday: int, length: int) -> bool:
        spec = self._dow
        if cron_weekday in spec.days:
            return True
        if (cron_weekday, (day - 1) // 7 + 1) in spec.nth:
            return True
        return cron_weekday in spec.last and day + 7 > length

    def matching_days(self, year: int) -> list[int]:
        """The days of ``year`` the expression fires on, as 0-based days of the year."""
        out: list[int] = []
        doy = 0
        cron_weekday = (date(year, 1, 1).weekday() + 1) % 7  # Sunday = 0
        for month in range(1, 13):
            length = calendar.monthrange(year, month)[1]
            if month in self._months:
                for day in range(1, length + 1):
                    wd = (cron_weekday + day - 1) % 7
                    if self._dom_any and self._dow_any:
                        ok = True
                    elif self._dom_any:
                        ok = self._dow_matches(day, wd, length)
                    elif self._dow_any:
                        ok = self._dom_matches(year, month, day, length)
                    else:
                        ok = self._dom_matches(year, month, day, length) or self._dow_matches(day, wd, length)
                    if ok:
                        out.append(doy + day - 1)
            doy += length
            cron_weekday = (cron_weekday + length) % 7
        return out
