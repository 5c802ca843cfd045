"""Random cron expressions and an independent evaluator (cronsim) to check ours against.

Every expression is drawn as a structure and written twice: the text we parse, and a
text with the same meaning under our conventions (docs/pipelines.md, "Cron expressions") that
cronsim evaluates. The translation only respells, never computes fire times:

* seconds are our 6th field and cronsim's 1st; aliases are spelled out;
* ``N/S`` is ``N-6/S`` in day-of-week for us (croniter's reading), so cronsim gets that;
  ``LN`` (croniter's spelling of "last weekday N") is ``NL`` for cronsim;
* the day-of-month/day-of-week OR rule: cronsim ANDs the two fields whenever one starts
  with ``*`` (Debian cron); we follow croniter (see ``cron_expr``). When we OR, a leading
  ``*`` is respelled ``low-high``; when we AND, the unrestricted field is written ``*``.
  Whether a field names every value is read with cronsim's own field parser;
* cronsim 2.8 reads ``A-A/S`` as ``A/S`` (from A to the end of the field); it means A
  alone (Vixie cron, croniter), so cronsim gets ``A``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError
from cronsim.cronsim import Field
from hypothesis import strategies as st

MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


@dataclass(frozen=True)
class FieldSpec:
    low: int
    high: int  # highest number allowed
    cycle_high: int  # end of "*" and of "N/S"
    names: list[str] | None = None


MINUTE = FieldSpec(0, 59, 59)
HOUR = FieldSpec(0, 23, 23)
DOM = FieldSpec(1, 31, 31)
MONTH = FieldSpec(1, 12, 12, MONTH_NAMES)
DOW = FieldSpec(0, 7, 6, DAY_NAMES)
SECOND = FieldSpec(0, 59, 59)


@dataclass(frozen=True)
class CronCase:
    ours: str
    cronsim: str  # 6 fields, seconds first


@st.composite
def _value(draw: st.DrawFn, spec: FieldSpec, upto: int | None = None) -> tuple[int, str]:
    v = draw(st.integers(spec.low, spec.high if upto is None else upto))
    if spec.names is not None and v - spec.low < len(spec.names) and draw(st.booleans()):
        return v, spec.names[v - spec.low]
    return v, str(v)


@st.composite
def _item(draw: st.DrawFn, spec: FieldSpec) -> tuple[str, str]:
    """One list item: (our text, cronsim text)."""
    kind = draw(st.sampled_from(["value", "value", "range", "star_step", "range_step", "start_step", "star"]))
    span = spec.cycle_high - spec.low + 1
    if kind == "value":
        text = draw(_value(spec))[1]
        return text, text
    if kind == "star":
        return "*", "*"
    step = draw(st.integers(1, span + 1))
    if kind == "star_step":
        return f"*/{step}", f"*/{step}"
    if kind == "start_step":
        start, text = draw(_value(spec, upto=spec.cycle_high))
        # "N/S" is N to the cycle's end; at the end itself that is "N-N/S", which cronsim
        # misreads (see above), so it gets N alone.
        return f"{text}/{step}", (text if start == spec.cycle_high else f"{text}-{spec.cycle_high}/{step}")
    (a, a_text), (b, b_text) = draw(_value(spec)), draw(_value(spec))
    if a > b:
        (a, a_text), (b, b_text) = (b, b_text), (a, a_text)
    rng = f"{a_text}-{b_text}"
    if kind == "range":
        return rng, rng
    # cronsim reads "A-A/S" as "A/S" (A to the field's end); it is A alone.
    return f"{rng}/{step}", (a_text if a == b else f"{rng}/{step}")


@st.composite
def _plain_field(draw: st.DrawFn, spec: FieldSpec, star_weight: int = 2) -> tuple[str, str]:
    if draw(st.integers(0, 9)) < star_weight:
        return "*", "*"
    items = draw(st.lists(_item(spec), min_size=1, max_size=3))
    return ",".join(i[0] for i in items), ",".join(i[1] for i in items)


@st.composite
def _dom_field(draw: st.DrawFn) -> tuple[str, str]:
    special = draw(st.integers(0, 9))
    if special == 0:
        return "L", "L"
    if special == 1:
        return "LW", "LW"
    if special == 2:
        ours, theirs = draw(_plain_field(DOM, star_weight=0))
        return f"{ours},L", f"{theirs},L"
    return draw(_plain_field(DOM, star_weight=4))


@st.composite
def _dow_field(draw: st.DrawFn) -> tuple[str, str]:
    special = draw(st.integers(0, 9))
    if special == 0:
        n, text = draw(_value(DOW))
        k = draw(st.integers(1, 5))
        return f"{text}#{k}", f"{text}#{k}"
    if special == 1:
        n = draw(st.integers(0, 7))
        return draw(st.sampled_from([(f"{n}L", f"{n}L"), (f"L{n}", f"{n}L")]))
    if special == 2:
        ours, theirs = draw(_plain_field(DOW, star_weight=0))
        n = draw(st.integers(0, 6))
        return f"{ours},{n}#2", f"{theirs},{n}#2"
    return draw(_plain_field(DOW, star_weight=4))


def _covers(text: str, field: Field, values: range) -> bool:
    """Whether the plain values of a field (cronsim's parser) include every one of values."""
    parsed = {v for v in field.parse(text.upper()) if isinstance(v, int)}
    if field is Field.DOW:
        parsed = {v % 7 for v in parsed}
    return set(values) <= parsed


def _day_fields_for_cronsim(dom: tuple[str, str], dow: tuple[str, str]) -> tuple[str, str]:
    """Respell day-of-month and day-of-week so cronsim applies our OR rule."""
    (dom_ours, dom_theirs), (dow_ours, dow_theirs) = dom, dow
    dom_any = dom_ours == "*" or ("*" in dow_ours and _covers(dom_theirs, Field.DAY, range(1, 32)))
    dow_any = dow_ours == "*" or ("*" in dom_ours and _covers(dow_theirs, Field.DOW, range(7)))
    if dom_any or dow_any:  # AND: the unrestricted field matches every day
        return ("*" if dom_any else dom_theirs), ("*" if dow_any else dow_theirs)

    def no_leading_star(text: str, spec: FieldSpec) -> str:
        return f"{spec.low}-{spec.cycle_high}{text[1:]}" if text.startswith("*") else text

    return no_leading_star(dom_theirs, DOM), no_leading_star(dow_theirs, DOW)


ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


@st.composite
def cron_cases(draw: st.DrawFn) -> CronCase:
    if draw(st.integers(0, 19)) == 0:
        alias = draw(st.sampled_from(sorted(ALIASES)))
        return CronCase(alias, "0 " + ALIASES[alias])
    minute = draw(st.one_of(_value(MINUTE).map(lambda v: (v[1], v[1])), _plain_field(MINUTE, star_weight=1)))
    hour = draw(_plain_field(HOUR, star_weight=3))
    dom, month, dow = draw(_dom_field()), draw(_plain_field(MONTH, star_weight=5)), draw(_dow_field())
    second = draw(st.one_of(st.none(), _plain_field(SECOND, star_weight=0)))
    dom_c, dow_c = _day_fields_for_cronsim(dom, dow)
    ours = [minute[0], hour[0], dom[0], month[0], dow[0]]
    theirs = [second[1] if second else "0", minute[1], hour[1], dom_c, month[1], dow_c]
    if second is not None:
        ours.append(second[0])
    return CronCase(" ".join(ours), " ".join(theirs))


def cronsim_fires(expr: str, zone: ZoneInfo, start: datetime, end: datetime, cap: int) -> list[datetime] | None:
    """cronsim's fire times in [start, end] (UTC), at most ``cap`` of them; None if
    cronsim rejects the expression or finds no fire time within its 50-year horizon."""
    try:
        it = CronSim(expr, (start - timedelta(seconds=1)).astimezone(zone))
    except CronSimError:
        return None
    out: list[datetime] = []
    for t in it:
        u = t.astimezone(UTC)
        if u > end or len(out) == cap:
            break
        if u >= start:
            out.append(u)
    return out


def cronsim_days(day_fields: str, first: date, last: date) -> list[date] | None:
    """Days in [first, last] on which ``"DOM MONTH DOW"`` (cronsim spelling) matches."""
    try:
        it = CronSim(f"0 0 0 {day_fields}", datetime.combine(first, time()) - timedelta(seconds=1))
        days = []
        for t in it:
            if t.date() > last:
                break
            days.append(t.date())
        return days
    except (CronSimError, StopIteration):
        return None


def times_per_day(case: CronCase) -> int:
    """How many times of day the expression has (cronsim's field parser)."""
    fields = case.cronsim.upper().split(" ")
    return len(Field.SECOND.parse(fields[0])) * len(Field.MINUTE.parse(fields[1])) * len(Field.HOUR.parse(fields[2]))


def reference_fires(case: CronCase, zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime] | None:
    """Fire times in [start, end] by our rule (docs/pipelines.md): every time of day of every matching
    day (days from cronsim), resolved with zoneinfo fold=0 (a gap moves forward, an
    overlap takes its first occurrence); duplicates merge. None if cronsim rejects."""
    fields = case.cronsim.split(" ")
    try:
        seconds, minutes, hours = (sorted(Field(i).parse(fields[i].upper())) for i in range(3))
    except CronSimError:
        return None
    first = start.astimezone(zone).date() - timedelta(days=2)
    last = end.astimezone(zone).date() + timedelta(days=1)
    days = cronsim_days(" ".join(fields[3:]), first, last)
    if days is None:
        return None
    out: set[datetime] = set()
    for day, h, m, s in itertools.product(days, hours, minutes, seconds):
        wall = datetime(day.year, day.month, day.day, int(h), int(m), int(s))  # type: ignore[arg-type]  # time fields are ints
        out.add(wall.replace(tzinfo=zone, fold=0).astimezone(UTC))
    return sorted(t for t in out if start <= t <= end)
