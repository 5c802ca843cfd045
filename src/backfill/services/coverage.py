"""Coverage of a pipeline (docs/api.md): for every interval of a series, the status of its
latest run in any backfill of the pipeline, compressed into spans of equal status.

An interval counts a run when the run starts exactly at the interval's start (the same
rule ``reprocess`` uses to skip intervals).

Reading goes by buckets of runs (``store.coverage.groups``). In a bucket, the *winner*
is the backfill whose runs were all queued after every other backfill's runs there,
when it has the shape of the requested series, one run on each boundary from its first
to its last run and none of the others' runs outside that stretch: then its runs are
the latest everywhere in the bucket. With one status it is one piece, read from the
groups alone; with several, only its runs that are not completed are read (one query
for all such buckets) and the rest is completed. A bucket without a winner (backfills
re-run over each other in turns, other series shapes) is read run by run. Figures for
87,600 hourly intervals: BENCHMARKS.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby

from sqlalchemy import Connection

from backfill.domain.coverage import CoverageStatus, Piece, Span, check_split, compress
from backfill.domain.intervals import IntervalSeries
from backfill.domain.model import IntervalType, RunStatus, is_calendar
from backfill.domain.timeparse import parse_instant
from backfill.services.actor import Actor
from backfill.store import backfills as backfill_store
from backfill.store import coverage as store
from backfill.store import pipelines as pipeline_store
from backfill.store import queue
from backfill.store.db import Database

# Bucket units (seconds, roughly) from the finest; a bucket holds ≥ 64 intervals on average
# (hourly: months; fewer, larger buckets cost less than many small ones, BENCHMARKS.md).
_UNITS: tuple[tuple[store.BucketUnit, float], ...] = (
    ("minute", 60),
    ("hour", 3600),
    ("day", 86_400),
    ("month", 28 * 86_400),
    ("year", 365 * 86_400),
)
_INTERVALS_PER_BUCKET = 64


@dataclass(frozen=True)
class CoverageSpan:
    start: datetime  # start of the span's first interval
    end: datetime  # end (exclusive) of its last interval
    last_start: datetime  # start of its last interval: a backfill [start, last_start] covers it
    status: CoverageStatus
    count: int
    backfill_id: int | None


@dataclass(frozen=True)
class Coverage:
    pipeline_id: int
    series: IntervalSeries
    spans: list[CoverageSpan]

    def totals(self) -> dict[CoverageStatus, int]:
        counts = dict.fromkeys(CoverageStatus, 0)
        for span in self.spans:
            counts[span.status] += span.count
        return counts


def _bucket_unit(series: IntervalSeries) -> store.BucketUnit:
    average = (series.last_end - series.first_start).total_seconds() / series.count
    for unit, seconds in _UNITS:
        if seconds >= _INTERVALS_PER_BUCKET * average:
            return unit
    return "year"


def _same_shape(shape: store.SeriesShape | None, series: IntervalSeries) -> bool:
    """Whether a backfill's intervals fall on the boundaries of ``series`` wherever both
    have one (then its runs need not be matched one by one)."""
    if shape is None or shape.interval_type != series.interval_type.value:
        return False
    if shape.cron is not None or series.cron is not None:
        return shape.cron == series.cron and shape.timezone == series.timezone
    if shape.interval_units != series.interval_units:
        return False
    return shape.timezone == series.timezone or not is_calendar(shape.interval_type)


@dataclass
class _Plan:
    """How one bucket is placed on the series.

    ``winner`` set: that backfill's runs are the latest of every interval from ``first``
    to ``last`` (indices) and there is one on each; with one ``status`` the bucket is a
    single piece, else the runs not completed are read and the rest is completed. Without
    a winner, every latest run of ``[lo, hi]`` is read and placed one by one.
    """

    lo: datetime
    hi: datetime
    winner: int | None = None
    first: int = 0
    last: int = 0
    status: CoverageStatus | None = None
    exceptions: list[tuple[int, CoverageStatus]] = field(default_factory=list)
    runs: list[Piece] = field(default_factory=list)


def _plan(groups: list[store.Group], series: IntervalSeries, shape_of: dict[int, store.SeriesShape]) -> _Plan:
    lo = min(g.first_start for g in groups)
    hi = max(g.last_start for g in groups)
    plan = _Plan(lo, hi)
    by_backfill: dict[int, list[store.Group]] = {}
    for g in groups:
        by_backfill.setdefault(g.backfill_id, []).append(g)
    # The backfill queued last, if every one of its runs was queued after all the others'.
    winner = max(by_backfill, key=lambda b: min(g.first_queued for g in by_backfill[b]))
    mine = by_backfill[winner]
    others = [g for b, gs in by_backfill.items() if b != winner for g in gs]
    if others and min(g.first_queued for g in mine) <= max(g.last_queued for g in others):
        return plan
    first = series.index_of(min(g.first_start for g in mine))
    last = series.index_of(max(g.last_start for g in mine))
    if (
        not _same_shape(shape_of.get(winner), series)
        or first is None
        or last is None
        or last - first + 1 != sum(g.runs for g in mine)
        or (others and (series[first].start > lo or series[last].start < hi))
    ):
        return plan
    plan.winner, plan.first, plan.last = winner, first, last
    if len(mine) == 1:
        plan.status = CoverageStatus(mine[0].status)
    return plan


def _pieces_of(plan: _Plan) -> Iterator[Piece]:
    if plan.winner is None:
        yield from plan.runs
        return
    if plan.status is not None:
        yield Piece(plan.first, plan.last - plan.first + 1, plan.status, plan.winner)
        return
    position = plan.first
    for index, status in plan.exceptions:
        if index > position:
            yield Piece(position, index - position, CoverageStatus.COMPLETED, plan.winner)
        yield Piece(index, 1, status, plan.winner)
        position = index + 1
    if position <= plan.last:
        yield Piece(position, plan.last - position + 1, CoverageStatus.COMPLETED, plan.winner)


def _read_exceptions(
    conn: Connection, pipeline_id: int, series: IntervalSeries, plans: list[_Plan], backfill_id: int | None
) -> None:
    """The runs not completed of the buckets with a winner of several statuses, in one
    query over their whole range."""
    mixed = [p for p in plans if p.winner is not None and p.status is None]
    if not mixed:
        return
    rows = store.runs_not_in_status(
        conn, pipeline_id, mixed[0].lo, mixed[-1].hi, RunStatus.COMPLETED.value, backfill_id
    )
    at = 0
    for start, status, backfill_id in rows:
        while at < len(mixed) and mixed[at].hi < start:
            at += 1
        if at == len(mixed):
            break
        plan = mixed[at]
        if start < plan.lo or backfill_id != plan.winner:
            continue
        index = series.index_of(start)
        if index is not None:
            plan.exceptions.append((index, CoverageStatus(status)))


def _read_runs(
    conn: Connection, pipeline_id: int, series: IntervalSeries, plans: list[_Plan], backfill_id: int | None
) -> None:
    """Every latest run of the buckets without a winner, consecutive ones in one query."""
    batch: list[_Plan] = []

    def flush() -> None:
        if not batch:
            return
        pieces = [
            Piece(index, 1, CoverageStatus(run.status), run.backfill_id)
            for run in store.latest_runs(conn, pipeline_id, batch[0].lo, batch[-1].hi, backfill_id)
            if (index := series.index_of(run.interval_start)) is not None
        ]
        batch[0].runs = pieces
        batch.clear()

    for plan in plans:
        if plan.winner is None:
            batch.append(plan)
        else:
            flush()
    flush()


def _pieces(conn: Connection, pipeline_id: int, series: IntervalSeries, backfill_id: int | None = None) -> list[Piece]:
    unit = _bucket_unit(series)
    groups = store.groups(conn, pipeline_id, series.first_start, series.last_end, unit, backfill_id)
    shape_of = store.shapes(conn, {g.backfill_id for g in groups})
    plans = [_plan(list(gs), series, shape_of) for _, gs in groupby(groups, key=lambda g: g.bucket)]
    _read_exceptions(conn, pipeline_id, series, plans, backfill_id)
    _read_runs(conn, pipeline_id, series, plans, backfill_id)
    return [piece for plan in plans for piece in _pieces_of(plan)]


def series_for(
    start: str | datetime,
    end: str | datetime,
    *,
    interval_type: str = IntervalType.DAY.value,
    interval_units: int | None = 1,
    cron: str | None = None,
    timezone: str,
) -> IntervalSeries:
    """The series a coverage is asked for; ValidationError naming the field otherwise."""
    begin = parse_instant(start, field="start", timezone=timezone)
    finish = parse_instant(end, field="end", timezone=timezone)
    return IntervalSeries(begin, finish, interval_type, interval_units, timezone=timezone, cron=cron)


def coverage(
    db: Database,
    actor: Actor,
    pipeline_id: int,
    start: str | datetime,
    end: str | datetime,
    *,
    interval_type: str = IntervalType.DAY.value,
    interval_units: int | None = 1,
    cron: str | None = None,
    timezone: str | None = None,
    split: str | None = None,
) -> Coverage:
    """The coverage of a pipeline of the actor's team (NotFound otherwise). The series
    defaults to days in the pipeline's timezone (else UTC). ``split="day"``: spans cut at
    every local midnight of the series' zone (ValidationError naming ``split`` otherwise)."""
    split = check_split(split)
    with db.read() as conn:
        pipeline = pipeline_store.get_in_team(conn, actor.team_id, pipeline_id=pipeline_id)
        zone = timezone or pipeline["timezone"] or "UTC"
        units = None if cron is not None else interval_units
        series = series_for(start, end, interval_type=interval_type, interval_units=units, cron=cron, timezone=zone)
        spans = compress(series.count, _pieces(conn, pipeline_id, series), _breaks(series, split))
    return Coverage(pipeline_id=pipeline_id, series=series, spans=_located(series, spans))


def of_backfill(db: Database, actor: Actor, backfill_id: int, *, split: str | None = None) -> Coverage:
    """The intervals of one backfill by the status of its own runs, as spans (``missing``:
    not queued yet, or skipped by ``reprocess``): what its grid draws when it is large.
    ``split`` as for :func:`coverage`, in the backfill's timezone."""
    split = check_split(split)
    with db.read() as conn:
        row = backfill_store.get(conn, backfill_id, team_id=actor.team_id)
        series = queue.series_of(row)
        pieces = _pieces(conn, row["pipeline_id"], series, backfill_id)
        spans = compress(series.count, pieces, _breaks(series, split))
    return Coverage(pipeline_id=row["pipeline_id"], series=series, spans=_located(series, spans))


def _breaks(series: IntervalSeries, split: str | None) -> Iterator[int]:
    """Where spans are cut: the first interval of every local day for ``day``, else nowhere."""
    return series.day_starts() if split == "day" else iter(())


def _located(series: IntervalSeries, spans: list[Span]) -> list[CoverageSpan]:
    """The spans in time: each one's first start, last start and end (the next one's
    start), the boundaries read in one ascending pass."""
    at = series.boundaries(k for span in spans for k in (span.first, span.last))
    starts = [(next(at), next(at)) for _ in spans]
    ends = [start for start, _ in starts[1:]] + [series.last_end]
    return [
        CoverageSpan(
            start=start,
            end=end,
            last_start=last_start,
            status=span.status,
            count=span.count,
            backfill_id=span.backfill_id,
        )
        for span, (start, last_start), end in zip(spans, starts, ends, strict=True)
    ]
