"""Backfill use cases: validation that names fields, interval edge cases through the
engine's materialization, settings edits, idempotency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select

from backfill.domain.errors import Conflict, InvalidTransition, NotFound, ValidationError
from backfill.services import backfills as svc
from backfill.services.actor import Actor
from backfill.store import queue
from backfill.store.db import Database
from backfill.store.tables import interval_runs

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def drain(db: Database) -> list[tuple[datetime, datetime]]:
    """Claim and complete every run; return (interval_start, interval_end) in claim order."""
    seen: list[tuple[datetime, datetime]] = []
    while True:
        with db.write() as conn:
            runs = queue.claim(conn, "w", 50, lease_seconds=30, now=T0)
        if not runs:
            return seen
        for r in runs:
            seen.append((r.interval_start, r.interval_end))
            with db.write() as conn:
                assert queue.record_attempt(conn, r.key, "w", queue.AttemptResult(ok=True), T0)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"start": "2024-02-01", "end": "2024-01-01"}, "end"),
        ({"interval_units": 0}, "interval_units"),
        ({"interval_units": -3}, "interval_units"),
        ({"interval_type": "fortnight"}, "interval_type"),
        ({"interval_type": "custom", "interval_units": None, "cron": "61 * * * *"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"start": "yesterday"}, "start"),
        ({"max_active_runs": 0}, "max_active_runs"),
        ({"run_order": "random"}, "run_order"),
        ({"reprocess": "some"}, "reprocess"),
        ({"retries": -1}, "retries"),
        ({"block_uuids": ["nope"]}, "block_uuids"),
        ({"start": "2000-01-01T00:00:00", "end": "2030-01-01T00:00:00", "interval_type": "minute"}, "end"),
    ],
)
def test_validation_names_the_field(
    db: Database, team: Actor, pipeline_id: int, changes: dict[str, object], field: str
) -> None:
    spec = svc.BackfillSpec(start="2024-01-01", end="2024-01-31")
    for k, v in changes.items():
        setattr(spec, k, v)
    with pytest.raises(ValidationError) as info:
        svc.create(db, team, pipeline_id, spec, start=True)
    assert info.value.field == field


def test_monthly_from_jan_31_never_drifts(db: Database, team: Actor, pipeline_id: int) -> None:
    spec = svc.BackfillSpec(start="2024-01-31", end="2024-05-31", interval_type="month", run_order="oldest_first")
    svc.create(db, team, pipeline_id, spec, start=True)
    got = drain(db)

    def d(m: int, day: int) -> datetime:
        return datetime(2024, m, day, tzinfo=UTC)

    assert got == [
        (d(1, 31), d(2, 29)),
        (d(2, 29), d(3, 31)),
        (d(3, 31), d(4, 30)),
        (d(4, 30), d(5, 31)),
        (d(5, 31), d(6, 30)),
    ]


def test_last_interval_ends_at_next_boundary(db: Database, team: Actor, pipeline_id: int) -> None:
    spec = svc.BackfillSpec(start="2024-02-01", end="2024-03-01", interval_type="month")
    svc.create(db, team, pipeline_id, spec, start=True)
    assert sorted(drain(db))[-1] == (datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC))


def test_daily_in_berlin_stays_on_local_midnight_across_dst(db: Database, team: Actor, pipeline_id: int) -> None:
    spec = svc.BackfillSpec(start="2024-03-30", end="2024-04-01", timezone="Europe/Berlin", run_order="oldest_first")
    svc.create(db, team, pipeline_id, spec, start=True)
    got = drain(db)

    def utc(y: int, m: int, day: int, h: int = 0) -> datetime:
        return datetime(y, m, day, h, tzinfo=UTC)

    assert got == [
        (utc(2024, 3, 29, 23), utc(2024, 3, 30, 23)),  # midnight CET = 23:00 UTC
        (utc(2024, 3, 30, 23), utc(2024, 3, 31, 22)),  # the 23-hour day
        (utc(2024, 3, 31, 22), utc(2024, 4, 1, 22)),  # midnight CEST = 22:00 UTC
    ]


def test_default_name_and_pipeline_timezone(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = svc.create(db, team, pipeline_id, svc.BackfillSpec(start="2024-01-01", end="2024-01-31"), start=False)
    detail = svc.get(db, team, bf)
    assert detail.row["name"] == "noop 2024-01-01 → 2024-01-31"
    assert detail.row["timezone"] == "UTC"
    assert detail.row["status"] == "created"
    assert detail.row["runs_total"] == 31


def test_settings_edit_before_start_only(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = svc.create(db, team, pipeline_id, svc.BackfillSpec(start="2024-01-01", end="2024-01-31"), start=False)
    svc.update_settings(db, team, bf, {"end": "2024-01-10", "variables": {"region": "eu"}, "name": "short"})
    row = svc.get(db, team, bf).row
    assert (row["runs_total"], row["variables"], row["name"]) == (10, {"region": "eu"}, "short")
    svc.start(db, team, bf)
    with pytest.raises(InvalidTransition) as info:
        svc.update_settings(db, team, bf, {"end": "2024-01-20"})
    assert "before the backfill starts" in info.value.message
    svc.update_settings(db, team, bf, {"max_active_runs": 9, "name": "renamed"})
    row = svc.get(db, team, bf).row
    assert (row["max_active_runs"], row["name"], row["runs_total"]) == (9, "renamed", 10)


def test_request_status_refuses_with_allowed(db: Database, team: Actor, pipeline_id: int) -> None:
    from backfill.domain.model import BackfillStatus

    bf = svc.create(db, team, pipeline_id, svc.BackfillSpec(start="2024-01-01", end="2024-01-02"), start=True)
    with pytest.raises(InvalidTransition) as info:
        svc.request_status(db, team, bf, BackfillStatus.COMPLETED)
    assert info.value.allowed == ("cancelled",)
    svc.request_status(db, team, bf, BackfillStatus.CANCELLED)
    with pytest.raises(InvalidTransition):
        svc.request_status(db, team, bf, BackfillStatus.CANCELLED)


def test_idempotency_key_returns_same_backfill(db: Database, team: Actor, pipeline_id: int) -> None:
    spec = svc.BackfillSpec(start="2024-01-01", end="2024-01-02")
    a = svc.create(db, team, pipeline_id, spec, start=True, idempotency_key="abc")
    b = svc.create(db, team, pipeline_id, spec, start=True, idempotency_key="abc")
    assert a == b


def test_other_team_cannot_see(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = svc.create(db, team, pipeline_id, svc.BackfillSpec(start="2024-01-01", end="2024-01-02"), start=True)
    stranger = Actor(team_id=team.team_id + 100, user_id=None)
    with pytest.raises(NotFound):
        svc.get(db, stranger, bf)
    with pytest.raises(NotFound):
        svc.cancel(db, stranger, bf)


def test_delete_only_when_not_running(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = svc.create(db, team, pipeline_id, svc.BackfillSpec(start="2024-01-01", end="2024-01-02"), start=True)
    with pytest.raises(InvalidTransition):
        svc.delete(db, team, bf)
    svc.cancel(db, team, bf)
    svc.delete(db, team, bf)
    with pytest.raises(NotFound):
        svc.get(db, team, bf)


def test_dry_run_lists_intervals_without_saving(db: Database, team: Actor, pipeline_id: int) -> None:
    spec = svc.BackfillSpec(start="2024-01-01T00:00:00", end="2024-01-01T05:00:00", interval_type="hour")
    result = svc.dry_run(db, team, pipeline_id, spec)
    assert result["total"] == 6
    assert [iv.start.hour for iv in result["intervals"]] == [5, 4, 3, 2, 1, 0]  # newest first
    with db.read() as conn:
        assert conn.execute(select(interval_runs.c.id)).first() is None


def test_metrics_after_completion(db: Database, team: Actor, pipeline_id: int) -> None:
    bf = svc.create(db, team, pipeline_id, svc.BackfillSpec(start="2024-01-01", end="2024-01-04"), start=True)
    while True:
        with db.write() as conn:
            runs = queue.claim(conn, "w", 10, lease_seconds=30, now=T0)
        if not runs:
            break
        for i, r in enumerate(runs):
            with db.write() as conn:
                queue.record_attempt(
                    conn, r.key, "w", queue.AttemptResult(ok=True, rows=10, duration=1.0 + i), T0 + timedelta(seconds=1)
                )
    m = svc.get(db, team, bf).metrics
    assert m["rows"] == 40
    assert m["progress"] == 1.0
    assert m["duration_mean_seconds"] == pytest.approx(2.5)
    assert m["duration_p95_seconds"] == pytest.approx(4.0)
    assert m["estimated_seconds_remaining"] is None


def test_error_report_and_p95_follow_every_change_and_are_not_requeried(
    db: Database, team: Actor, pipeline_id: int
) -> None:
    spec = svc.BackfillSpec(start="2024-01-01", end="2024-01-03", retries=0)
    bf = svc.create(db, team, pipeline_id, spec, start=True)
    with db.write() as conn:
        runs = queue.claim(conn, "w", 3, lease_seconds=30, now=T0)
    with db.write() as conn:
        queue.record_attempt(conn, runs[0].key, "w", queue.AttemptResult(ok=False, error="first error"), T0)
        queue.record_attempt(conn, runs[1].key, "w", queue.AttemptResult(ok=True, duration=7.0), T0)
        queue.record_attempt(conn, runs[2].key, "w", queue.AttemptResult(ok=True, duration=3.0), T0)
    first = svc.get(db, team, bf)
    assert first.row["status"] == "failed"
    assert [e["error"] for e in first.error_report] == ["first error"]
    assert first.metrics["duration_p95_seconds"] == pytest.approx(7.0)

    statements: list[str] = []
    listen = lambda *args: statements.append(args[2])  # noqa: E731 (conn, cursor, statement, ...)
    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        again = svc.get(db, team, bf)  # unchanged: the backfill row only
        assert len(statements) == 1 and "FROM backfills" in statements[0]
        assert again.error_report == first.error_report and again.metrics == first.metrics
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)

    # a retry, then another failure with another message: the report follows (same clock)
    svc.retry(db, team, bf)
    assert svc.get(db, team, bf).error_report == []
    with db.write() as conn:
        (rerun,) = [r for r in queue.claim(conn, "w", 3, lease_seconds=30, now=T0) if r.run_id == runs[0].run_id]
    with db.write() as conn:
        queue.record_attempt(conn, rerun.key, "w", queue.AttemptResult(ok=False, error="second error"), T0)
    assert [e["error"] for e in svc.get(db, team, bf).error_report] == ["second error"]


def test_rendered_renders_once_per_version(db: Database, team: Actor, pipeline_id: int) -> None:
    from backfill.services.row_memo import RowVersionMemo

    bf = svc.create(db, team, pipeline_id, svc.BackfillSpec(start="2024-01-01", end="2024-01-03"), start=True)
    memo: RowVersionMemo[tuple[int, int]] = RowVersionMemo()
    renders: list[int] = []

    def render(d: svc.BackfillDetail) -> tuple[int, int]:
        renders.append(d.row["id"])
        return (d.row["runs_running"], d.row["version"])

    first = svc.rendered(db, team, bf, memo, render)
    assert svc.rendered(db, team, bf, memo, render) == first and len(renders) == 1
    with db.write() as conn:
        queue.claim(conn, "w", 1, lease_seconds=30, now=T0)
    running, version = svc.rendered(db, team, bf, memo, render)
    assert running == 1 and version > first[1] and len(renders) == 2
    with pytest.raises(NotFound):
        svc.rendered(db, Actor(team_id=team.team_id + 1, user_id=team.user_id), bf, memo, render)


def test_rendered_is_renewed_after_max_age_even_when_the_row_is_unchanged(
    db: Database, team: Actor, pipeline_id: int
) -> None:
    """A rendering that carries the clock (the ETA) must not outlive its max age."""
    from backfill.services.row_memo import RowVersionMemo

    bf = svc.create(db, team, pipeline_id, svc.BackfillSpec(start="2024-01-01", end="2024-01-03"), start=True)
    now = [100.0]
    memo: RowVersionMemo[int] = RowVersionMemo(max_age_seconds=2.0, clock=lambda: now[0])
    renders: list[int] = []

    def render(d: svc.BackfillDetail) -> int:
        renders.append(d.row["id"])
        return len(renders)

    assert svc.rendered(db, team, bf, memo, render) == 1
    now[0] += 1.5
    assert svc.rendered(db, team, bf, memo, render) == 1  # same version, young enough
    now[0] += 1.0
    assert svc.rendered(db, team, bf, memo, render) == 2  # same version, too old: rendered again


def test_update_is_one_transaction(db: Database, team: Actor, pipeline_id: int) -> None:
    from backfill.domain.model import BackfillStatus

    bf = svc.create(db, team, pipeline_id, svc.BackfillSpec(start="2024-01-01", end="2024-01-31"), start=False)
    with pytest.raises(InvalidTransition):
        svc.update(db, team, bf, settings={"name": "renamed", "end": "2024-01-05"}, status=BackfillStatus.COMPLETED)
    row = svc.get(db, team, bf).row
    assert (row["name"], row["runs_total"], row["status"]) == ("noop 2024-01-01 → 2024-01-31", 31, "created")
    # edit the range and start, in one request
    svc.update(db, team, bf, settings={"end": "2024-01-05"}, status=BackfillStatus.SCHEDULED)
    row = svc.get(db, team, bf).row
    assert (row["runs_total"], row["status"]) == (5, "scheduled")
    with pytest.raises(ValidationError) as info:
        svc.update(db, team, bf, settings={"colour": "blue"})
    assert info.value.field == "colour"


@pytest.mark.parametrize(
    ("field", "value"), [("name", "a\x00b"), ("variables", {"k": "a\x00"}), ("variables", {"\x00": 1})]
)
def test_nul_characters_are_refused_on_every_database(
    db: Database, team: Actor, pipeline_id: int, field: str, value: object
) -> None:
    spec = svc.BackfillSpec(start="2024-01-01", end="2024-01-02")
    setattr(spec, field, value)
    with pytest.raises(ValidationError) as info:
        svc.create(db, team, pipeline_id, spec, start=True)
    assert info.value.field == field
    bf = svc.create(db, team, pipeline_id, svc.BackfillSpec(start="2024-01-01", end="2024-01-02"), start=False)
    with pytest.raises(ValidationError):
        svc.update(db, team, bf, settings={field: value})


def test_a_failed_backfill_in_the_way_is_to_be_retried_or_cancelled(
    db: Database, team: Actor, pipeline_id: int
) -> None:
    first = svc.create(db, team, pipeline_id, svc.BackfillSpec(start="2024-01-01", end="2024-01-02"), start=True)
    with pytest.raises(Conflict) as running:
        svc.create(db, team, pipeline_id, svc.BackfillSpec(start="2024-01-02", end="2024-01-03"), start=True)
    assert running.value.message.endswith("cancel it or wait for it to finish")
    while runs := claim_all(db):
        for r in runs:
            with db.write() as conn:
                queue.record_attempt(conn, r.key, "w", queue.AttemptResult(ok=False, error="boom"), T0)
    assert svc.get(db, team, first).row["status"] == "failed"
    with pytest.raises(Conflict) as failed:
        svc.create(db, team, pipeline_id, svc.BackfillSpec(start="2024-01-02", end="2024-01-03"), start=True)
    assert f"backfill {first}" in failed.value.message
    assert failed.value.message.endswith("; retry or cancel it")


def claim_all(db: Database) -> list[queue.ClaimedRun]:
    with db.write() as conn:
        return queue.claim(conn, "w", 50, lease_seconds=30, now=T0)
