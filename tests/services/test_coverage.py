"""Coverage of a pipeline (services.coverage) on real runs made through the queue, and
on random histories checked against a run-by-run oracle. SQLite and PostgreSQL."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select
from tests.factories import add_pipeline, python_pipeline

from backfill.domain.coverage import CoverageStatus
from backfill.domain.errors import NotFound, ValidationError
from backfill.services import backfills as svc
from backfill.services import coverage
from backfill.services.actor import Actor
from backfill.store import queue
from backfill.store.db import Database
from backfill.store.tables import interval_runs

C, F, M, Q, X, R = (
    CoverageStatus.COMPLETED,
    CoverageStatus.FAILED,
    CoverageStatus.MISSING,
    CoverageStatus.QUEUED,
    CoverageStatus.CANCELLED,
    CoverageStatus.RUNNING,
)
T0 = datetime(2030, 1, 1, tzinfo=UTC)
_clock = [T0]  # work()'s clock


@pytest.fixture(autouse=True)
def _reset_clock() -> None:
    _clock[0] = T0


def start(db: Database, actor: Actor, pipeline_id: int, first: str, last: str, **kw: object) -> int:
    spec = svc.BackfillSpec(start=first, end=last, **kw)  # type: ignore[arg-type]
    return svc.create(db, actor, pipeline_id, spec, start=True)


def work(
    db: Database, backfill_id: int, fails: Callable[[datetime], bool] = lambda _: False, limit: int = 10**6
) -> None:
    """Claim and finish up to ``limit`` runs of one backfill; ``fails`` picks the failures.
    The clock goes on from the last call: a backfill worked later is queued later."""
    done = 0
    now = _clock[0]
    while done < limit:
        with db.write() as conn:
            runs = [r for r in queue.claim(conn, "w", 1, lease_seconds=60, now=now) if r.backfill_id == backfill_id]
        if not runs:
            return
        for r in runs:
            now += timedelta(seconds=1)
            with db.write() as conn:
                queue.record_attempt(conn, r.key, "w", queue.AttemptResult(ok=not fails(r.interval_start)), now)
            done += 1
        _clock[0] = now


def statuses(result: coverage.Coverage) -> list[CoverageStatus]:
    return [span.status for span in result.spans for _ in range(span.count)]


def day(n: int) -> datetime:
    return datetime(2024, 1, n, tzinfo=UTC)


def test_mixed_statuses_over_several_backfills(db: Database, team: Actor, pipeline_id: int) -> None:
    a = start(db, team, pipeline_id, "2024-01-01", "2024-01-10", retries=0)
    work(db, a)
    # A later backfill over Jan 8-15 fails on Jan 9: the latest run of Jan 9 is that failure.
    b = start(db, team, pipeline_id, "2024-01-08", "2024-01-15", retries=0)
    work(db, b, fails=lambda t: t == day(9))
    # Jan 20-25: two runs finish, one is left running, the queued rest is cancelled.
    c = start(db, team, pipeline_id, "2024-01-20", "2024-01-25", retries=0, run_order="oldest_first")
    work(db, c, limit=2)
    with db.write() as conn:
        running = queue.claim(conn, "w", 1, lease_seconds=60, now=T0)
    assert [r.interval_start for r in running] == [day(22)]
    with db.write() as conn:  # the rest as queued runs (a claim creates only what it takes)
        assert queue.materialize(conn, dict(svc.get(db, team, c).row), 10, T0) == 3
    svc.cancel(db, team, c)
    # Jan 28-29: queued, not started.
    d = start(db, team, pipeline_id, "2024-01-28", "2024-01-29")
    with db.write() as conn:
        queue.materialize(conn, dict(svc.get(db, team, d).row), 10, T0)

    result = coverage.coverage(db, team, pipeline_id, "2024-01-01", "2024-01-31")
    assert result.series.count == 31
    expected = [C] * 8 + [F] + [C] * 6 + [M] * 4 + [C, C, R, X, X, X] + [M] * 2 + [Q, Q] + [M] * 2
    assert statuses(result) == expected
    spans = [(s.start, s.last_start, s.end, s.status, s.count, s.backfill_id) for s in result.spans]
    assert spans[:3] == [
        (day(1), day(8), day(9), C, 8, a),  # Jan 8 ran in a and b: b's run is the latest, but a gave 7 of 8
        (day(9), day(9), day(10), F, 1, b),
        (day(10), day(15), day(16), C, 6, b),
    ]
    assert spans[3] == (day(16), day(19), day(20), M, 4, None)
    assert result.totals()[X] == 3 and result.totals()[M] == 8


def test_reprocess_failed_fills_only_the_failures(db: Database, team: Actor, pipeline_id: int) -> None:
    a = start(db, team, pipeline_id, "2024-01-01", "2024-01-10", retries=0)
    work(db, a, fails=lambda t: t in (day(3), day(4)))
    before = coverage.coverage(db, team, pipeline_id, "2024-01-01", "2024-01-12")
    assert statuses(before) == [C, C, F, F] + [C] * 6 + [M, M]
    svc.cancel(db, team, a)  # failed: it would block an overlapping backfill
    b = start(db, team, pipeline_id, "2024-01-01", "2024-01-12", reprocess="failed", retries=0)
    assert svc.get(db, team, b).row["runs_total"] == 4  # Jan 3, 4, 11, 12
    work(db, b, fails=lambda t: t == day(12))
    after = coverage.coverage(db, team, pipeline_id, "2024-01-01", "2024-01-12")
    assert statuses(after) == [C] * 11 + [F]
    assert [(s.count, s.backfill_id) for s in after.spans] == [(11, a), (1, b)]
    # reprocess missing: only the never-run intervals; Jan 12 (failed) has run, so it stays.
    svc.cancel(db, team, b)
    m = start(db, team, pipeline_id, "2024-01-01", "2024-01-14", reprocess="missing")
    assert svc.get(db, team, m).row["runs_total"] == 2
    work(db, m)
    assert statuses(coverage.coverage(db, team, pipeline_id, "2024-01-01", "2024-01-14")) == [C] * 11 + [F, C, C]


def test_dst_days_in_the_pipelines_timezone(db: Database, team: Actor) -> None:
    berlin = add_pipeline(db, team, python_pipeline("berlin", timezone="Europe/Berlin"))
    hourly = start(db, team, berlin, "2024-03-31", "2024-03-31T23:00", interval_type="hour")
    work(db, hourly, fails=lambda t: t == datetime(2024, 3, 31, 1, tzinfo=UTC))  # 03:00 CEST
    spring = coverage.coverage(db, team, berlin, "2024-03-31", "2024-03-31T23:00", interval_type="hour")
    assert spring.series.count == 23  # the spring-forward day has 23 hours
    assert spring.series.timezone == "Europe/Berlin"
    assert statuses(spring) == [C, C, F] + [C] * 20
    assert spring.spans[0].start == datetime(2024, 3, 30, 23, tzinfo=UTC)  # local midnight
    daily = start(db, team, berlin, "2024-10-26", "2024-10-28")
    work(db, daily)
    autumn = coverage.coverage(db, team, berlin, "2024-10-25", "2024-10-29")
    assert statuses(autumn) == [M, C, C, C, M]
    span = autumn.spans[1]
    assert (span.start, span.end) == (datetime(2024, 10, 25, 22, tzinfo=UTC), datetime(2024, 10, 28, 23, tzinfo=UTC))
    # The 25-hour day as an hourly series: none of its hours has a run of its own.
    fall = coverage.coverage(db, team, berlin, "2024-10-27", "2024-10-27T23:00", interval_type="hour")
    assert fall.series.count == 25
    assert statuses(fall) == [C] + [M] * 24  # the daily run of Oct 27 starts at its first hour


def test_unknown_pipeline_and_bad_series(db: Database, team: Actor, pipeline_id: int) -> None:
    with pytest.raises(NotFound):
        coverage.coverage(
            db, Actor(team_id=team.team_id + 1, user_id=team.user_id), pipeline_id, "2024-01-01", "2024-01-02"
        )
    for kwargs, field in [
        ({"start": "2024-02-01", "end": "2024-01-01"}, "end"),
        ({"start": "yesterday", "end": "2024-01-01"}, "start"),
        ({"start": "2024-01-01", "end": "2024-01-02", "timezone": "Mars/Olympus"}, "timezone"),
        ({"start": "2024-01-01", "end": "2024-01-02", "interval_type": "fortnight"}, "interval_type"),
    ]:
        with pytest.raises(ValidationError) as caught:
            coverage.coverage(db, team, pipeline_id, **kwargs)  # type: ignore[arg-type]
        assert caught.value.field == field


# ---- random histories against an oracle -------------------------------------------------------

RUN = ["completed", "completed", "completed", "failed", "queued", "running", "cancelled"]
SHAPES = [("hour", 1), ("hour", 1), ("hour", 2), ("minute", 30), ("day", 1)]


def oracle(db: Database, pipeline_id: int, series_starts: list[datetime]) -> list[CoverageStatus]:
    with db.read() as conn:
        rows = conn.execute(
            select(
                interval_runs.c.interval_start, interval_runs.c.queued_at, interval_runs.c.id, interval_runs.c.status
            ).where(interval_runs.c.pipeline_id == pipeline_id)
        ).all()
    latest: dict[datetime, tuple[datetime, int, str]] = {}
    for start_, queued, run_id, status in rows:
        if start_ not in latest or (queued, run_id) > latest[start_][:2]:
            latest[start_] = (queued, run_id, status)
    return [CoverageStatus(latest[t][2]) if t in latest else M for t in series_starts]


@pytest.mark.parametrize("seed", range(12))
def test_random_histories_match_the_oracle(db: Database, team: Actor, pipeline_id: int, seed: int) -> None:
    rng = random.Random(seed)
    base = datetime(2024, 5, 1, tzinfo=UTC)
    for b in range(rng.randint(1, 5)):
        itype, units = rng.choice(SHAPES)
        first = base + timedelta(hours=rng.randint(0, 60))
        last = first + timedelta(hours=rng.randint(0, 50))
        spec = svc.BackfillSpec(start=first, end=last, interval_type=itype, interval_units=units, timezone="UTC")
        backfill_id = svc.create(db, team, pipeline_id, spec, start=False)
        series = queue.series_of(dict(svc.get(db, team, backfill_id).row))
        mostly = rng.choice(RUN)
        purity, kept = rng.choice((1.0, 0.8)), rng.choice((1.0, 1.0, 0.9))
        rows = [
            {
                "backfill_id": backfill_id,
                "pipeline_id": pipeline_id,
                "interval_start": iv.start,
                "interval_end": iv.end,
                "status": mostly if rng.random() < purity else rng.choice(RUN),
                "attempt": 1,
                "tries": 1,
                "created_at": T0,
                # Later backfills are mostly queued later, sometimes interleaved with earlier ones.
                "queued_at": T0 + timedelta(minutes=b * 10 + rng.choice((0, 0, 0, -15, 15))),
            }
            for iv in series
            if rng.random() < kept
        ]
        if rows:
            with db.write() as conn:
                conn.execute(insert(interval_runs), rows)
    for itype, units, last in [("hour", 1, base + timedelta(hours=119)), ("minute", 30, base + timedelta(hours=50))]:
        result = coverage.coverage(db, team, pipeline_id, base, last, interval_type=itype, interval_units=units)
        expected = oracle(db, pipeline_id, [iv.start for iv in result.series])
        assert statuses(result) == expected, (itype, seed)
        assert sum(s.count for s in result.spans) == result.series.count


# ---- split=day: spans cut at local midnight ----------------------------------------------------


def local_dates(result: coverage.Coverage) -> list[tuple[str, str, int]]:
    """(local date of the span's first start, of its last start, intervals) of every span."""
    zone = ZoneInfo(result.series.timezone)
    return [
        (s.start.astimezone(zone).date().isoformat(), s.last_start.astimezone(zone).date().isoformat(), s.count)
        for s in result.spans
    ]


def per_day(result: coverage.Coverage) -> dict[str, dict[CoverageStatus, int]]:
    days: dict[str, dict[CoverageStatus, int]] = {}
    for (first, last, count), span in zip(local_dates(result), result.spans, strict=True):
        assert first == last  # every interval of a span starts on one local day
        days.setdefault(first, {}).setdefault(span.status, 0)
        days[first][span.status] += count
    return days


def test_split_by_day_on_dst_days_with_mixed_statuses(db: Database, team: Actor) -> None:
    berlin = add_pipeline(db, team, python_pipeline("berlin", timezone="Europe/Berlin"))
    # Mar 30 - Apr 1 2024 and Oct 26 - 28 2024, hourly in Berlin: 24, 23, 24 and 24, 25, 24 hours
    fails = {datetime(2024, 3, 31, 0, tzinfo=UTC), datetime(2024, 3, 31, 1, tzinfo=UTC), datetime(2024, 10, 27, 0, 30)}
    fall = start(db, team, berlin, "2024-10-26", "2024-10-28T23:00", interval_type="hour", retries=0)
    work(db, fall, fails=lambda t: t == datetime(2024, 10, 27, 0, tzinfo=UTC))  # 02:00 CEST, before the repeat
    spring = start(db, team, berlin, "2024-03-30", "2024-04-01T23:00", interval_type="hour", retries=0)
    work(db, spring, fails=lambda t: t in fails, limit=60)  # newest first: 11 hours of Mar 30 not run
    for first, last, days in [
        ("2024-03-30", "2024-04-01T23:00", (24, 23, 24)),
        ("2024-10-26", "2024-10-28T23:00", (24, 25, 24)),
    ]:
        whole = coverage.coverage(db, team, berlin, first, last, interval_type="hour")
        split = coverage.coverage(db, team, berlin, first, last, interval_type="hour", split="day")
        assert statuses(split) == statuses(whole) and split.totals() == whole.totals()
        counted = per_day(split)
        assert [sum(c.values()) for c in counted.values()] == list(days)
        assert len(split.spans) > len(whole.spans)
    spring_days = per_day(
        coverage.coverage(db, team, berlin, "2024-03-30", "2024-04-01T23:00", interval_type="hour", split="day")
    )
    # Mar 30's first 11 hours have not run (queued, or not materialized yet: missing)
    assert spring_days["2024-03-30"][C] == 13 and sum(spring_days["2024-03-30"].values()) == 24
    assert set(spring_days["2024-03-30"]) - {C} and set(spring_days["2024-03-30"]) - {C} <= {Q, M}
    assert spring_days["2024-03-31"] == {C: 21, F: 2}  # 01:00 CET and 03:00 CEST: the hour between does not exist
    assert spring_days["2024-04-01"] == {C: 24}
    fall_days = per_day(
        coverage.coverage(db, team, berlin, "2024-10-26", "2024-10-28T23:00", interval_type="hour", split="day")
    )
    assert fall_days["2024-10-27"] == {C: 24, F: 1}
    # The backfill's own coverage, cut in its zone.
    mine = coverage.of_backfill(db, team, spring, split="day")
    assert [sum(c.values()) for c in per_day(mine).values()] == [24, 23, 24]
    assert per_day(mine) == spring_days


def test_split_by_day_of_a_weekday_cron_leaves_weekends_empty(db: Database, team: Actor) -> None:
    ny = add_pipeline(db, team, python_pipeline("ny", timezone="America/New_York"))
    cron = {"interval_type": "custom", "cron": "0 9 * * 1-5"}
    # Mon 2024-03-04 to Fri 2024-03-29 in New York: 20 weekdays, the clocks change on Sun Mar 10
    weekdays = start(db, team, ny, "2024-03-04", "2024-03-29T09:00", retries=0, **cron)
    work(db, weekdays, fails=lambda t: t.day in (14, 20), limit=15)
    result = coverage.coverage(db, team, ny, "2024-03-02", "2024-03-31", split="day", **cron)  # type: ignore[arg-type]
    assert result.series.count == 20
    days = per_day(result)
    assert all(datetime.fromisoformat(d).weekday() < 5 for d in days)  # no span starts on a weekend day
    assert [sum(c.values()) for c in days.values()] == [1] * 20  # one interval on each weekday
    assert days["2024-03-14"] == {F: 1} and days["2024-03-20"] == {F: 1} and days["2024-03-11"] == {C: 1}
    totals = result.totals()  # newest first: Mar 4-8 have not run
    assert totals[C] == 13 and totals[F] == 2 and totals[Q] + totals[M] == 5
    # Without the cut, a weekend lies inside a span: its dates say nothing about the days inside.
    whole = coverage.coverage(db, team, ny, "2024-03-02", "2024-03-31", **cron)  # type: ignore[arg-type]
    assert statuses(whole) == statuses(result) and any(first != last for first, last, _ in local_dates(whole))
    own = coverage.of_backfill(db, team, weekdays, split="day")
    assert per_day(own) == days


def test_a_split_other_than_day_names_its_field(db: Database, team: Actor, pipeline_id: int) -> None:
    backfill_id = start(db, team, pipeline_id, "2024-01-01", "2024-01-03")
    calls: list[Callable[[], coverage.Coverage]] = [
        lambda: coverage.coverage(db, team, pipeline_id, "2024-01-01", "2024-01-02", split="hour"),
        lambda: coverage.of_backfill(db, team, backfill_id, split="Day"),
    ]
    for call in calls:
        with pytest.raises(ValidationError) as caught:
            call()
        assert caught.value.field == "split"
