"""The team API (docs/api.md) through HTTP: the seed's cancel replayed field by field,
every endpoint, the envelope on every error path, validation, conflicts, rate limits."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from backfill.app import create_app
from backfill.store import backfills as backfill_store
from backfill.store import queue
from backfill.store.db import Database
from backfill.store.tables import pipelines

from .conftest import World, add_pipeline, assert_envelope_headers, assert_error, assert_ok, make_settings

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
JANUARY = {"range_start": "2024-01-01", "range_end": "2024-01-31"}


def claim(db: Database, n: int = 10) -> list[queue.ClaimedRun]:
    with db.write() as conn:
        return queue.claim(conn, "w1", n, lease_seconds=60, now=datetime.now(UTC))


def finish(db: Database, run: queue.ClaimedRun, *, ok: bool = True, error: str | None = None, log: str = "") -> None:
    with db.write() as conn:
        assert queue.record_attempt(
            conn,
            run.key,
            "w1",
            queue.AttemptResult(
                ok=ok,
                error=error,
                rows=3,
                log=log or None,
                block_results=[
                    {
                        "uuid": "extract",
                        "status": "completed" if ok else "failed",
                        "started_at": "2024-02-01T10:00:00+00:00",
                        "ended_at": "2024-02-01T10:00:02.500000+00:00",
                        "rows": 3,
                        "error": error,
                        "output": '{"rows": 3}',
                    }
                ],
            ),
            datetime.now(UTC),
        )


def create(client: TestClient, w: World, body: dict[str, Any] | None = None, who: str = "editor", **kw: Any) -> Any:
    url = f"/v1/teams/{w.team_id}/transfers/{w.pipeline_id}/backfills"
    return client.post(url, json=body or JANUARY, headers={**w.auth(who), **kw.pop("headers", {})}, **kw)


def patch(client: TestClient, w: World, backfill_id: int, body: Any, who: str = "owner") -> Any:
    return client.patch(f"/v1/teams/{w.team_id}/backfills/{backfill_id}", json=body, headers=w.auth(who))


def cancel_world_backfill(client: TestClient, w: World) -> None:
    """The world's backfill (2023-01-01..10) would not overlap January 2024 anyway; cancel it
    so list assertions only see what a test creates."""
    assert_ok(patch(client, w, w.backfill_id, {"status": "CANCELLED"}))


# ---- the seed (004): cancel ---------------------------------------------------------------


def test_seed_cancel_replayed_field_by_field(client: TestClient, db: Database, world: World) -> None:
    w = world
    created = assert_ok(create(client, w))
    bf_id = created["transfer_backfill_id"]
    assert created["transfer_runs_total"] == 31
    assert created["status"] == "SCHEDULED"
    assert created["created_user_id"] == w.users["editor"]

    # A worker makes progress: 2 runs complete, 1 fails, 1 is still running at the cancel.
    cancel_world_backfill(client, w)
    runs = claim(db, 4)
    assert len(runs) == 4
    assert {r.backfill_id for r in runs} == {bf_id}
    finish(db, runs[0])
    finish(db, runs[1])
    finish(db, runs[2], ok=False, error="x" * 5000)
    still_running = runs[3]

    response = patch(client, w, bf_id, {"status": "CANCELLED"}, who="owner")
    data = assert_ok(response)
    # every field of the seed's example response, with its type and format
    seed_fields = {
        "transfer_backfill_id", "transfer_id", "range_start_date", "range_end_date", "created_time",
        "created_user_id", "removed_time", "removed_user_id", "start_time", "end_time", "status",
        "transfer_runs_total", "transfer_runs_created", "transfer_runs_completed", "transfer_runs_failed",
        "error_report",
    }  # fmt: skip
    assert seed_fields <= set(data)
    assert data["transfer_backfill_id"] == bf_id
    assert isinstance(data["transfer_backfill_id"], int)
    assert data["transfer_id"] == w.pipeline_id
    assert isinstance(data["transfer_id"], int)
    assert data["range_start_date"] == "2024-01-01"
    assert data["range_end_date"] == "2024-01-31"
    for key in ("created_time", "removed_time", "start_time", "end_time"):
        assert ISO_Z.match(data[key]), (key, data[key])
    assert data["created_user_id"] == w.users["editor"]
    assert data["removed_user_id"] == w.users["owner"]  # the canceller, not the creator
    assert data["end_time"] == data["removed_time"]
    assert data["created_time"] <= data["start_time"] <= data["end_time"]
    assert data["status"] == "CANCELLED"
    assert data["transfer_runs_total"] == 31
    assert data["transfer_runs_completed"] == 2
    assert data["transfer_runs_failed"] == 1
    assert data["transfer_runs_running"] == 1  # running runs are left to finish
    created_runs = data["transfer_runs_created"]
    assert 4 <= created_runs <= 31
    # every interval that will not run is cancelled: the queued runs (in the same
    # transaction) and those never materialized (docs/api.md)
    assert data["transfer_runs_cancelled"] == 31 - 4
    assert len(data["error_report"]) == 1
    entry = data["error_report"][0]
    assert set(entry) == {"transfer_run_date", "error"}
    assert DATE.match(entry["transfer_run_date"])
    assert entry["error"] == "x" * 1000  # at most 1000 characters

    # The running run completes after the cancel: its result is recorded, nothing new starts.
    finish(db, still_running)
    assert claim(db, 10) == []
    again = assert_ok(client.get(f"/v1/teams/{w.team_id}/backfills/{bf_id}", headers=w.auth("viewer")))
    assert again["status"] == "CANCELLED"
    assert again["transfer_runs_completed"] == 3
    assert again["transfer_runs_running"] == 0
    for key in ("removed_time", "removed_user_id", "end_time", "created_time", "range_start_date"):
        assert again[key] == data[key]

    # A final backfill cannot be cancelled again; another team's id does not exist.
    error = assert_error(patch(client, w, bf_id, {"status": "CANCELLED"}), 422, "UNPROCESSABLE_ENTITY")
    assert "CANCELLED" in error["message"]
    assert_error(patch(client, w, w.other_backfill_id, {"status": "CANCELLED"}), 404, "NOT_FOUND")
    other = client.get(f"/v1/teams/{w.team_id}/backfills/{w.other_backfill_id}", headers=w.auth("owner"))
    assert_error(other, 404, "NOT_FOUND")


def test_backfill_object_shape(client: TestClient, world: World) -> None:
    w = world
    body = {
        **JANUARY,
        "name": "January",
        "max_active_runs": 2,
        "run_order": "oldest_first",
        "variables": {"a": 1},
    }
    data = assert_ok(create(client, w, body))
    expected: dict[str, Any] = {
        "transfer_backfill_id": int, "transfer_id": int, "range_start_date": str, "range_end_date": str,
        "created_time": str, "created_user_id": int, "removed_time": type(None),
        "removed_user_id": type(None),
        "start_time": type(None), "end_time": type(None), "status": str, "transfer_runs_total": int,
        "transfer_runs_created": int, "transfer_runs_completed": int, "transfer_runs_failed": int,
        "error_report": list, "name": str, "interval_type": str, "interval_units": int, "timezone": str,
        "max_active_runs": int, "run_order": str, "reprocess": str, "paused": bool,
        "transfer_runs_running": int, "transfer_runs_cancelled": int, "metrics": dict,
    }  # fmt: skip
    for key, kind in expected.items():
        assert isinstance(data[key], kind), (key, data[key])
    assert data["name"] == "January"
    assert data["interval_type"] == "day"
    assert data["interval_units"] == 1
    assert data["timezone"] == "UTC"
    assert data["max_active_runs"] == 2
    assert data["run_order"] == "oldest_first"
    assert data["variables"] == {"a": 1}
    assert data["paused"] is False
    assert data["metrics"]["progress"] == 0
    assert data["metrics"]["remaining_runs"] == 31


def test_sub_day_intervals_render_datetimes(client: TestClient, world: World) -> None:
    body = {
        "range_start": "2024-03-01T00:00:00Z",
        "range_end": "2024-03-01T20:00:00Z",
        "interval_type": "hour",
        "interval_units": 4,
    }
    data = assert_ok(create(client, world, body))
    assert data["transfer_runs_total"] == 6
    assert data["range_start_date"] == "2024-03-01T00:00:00Z"
    assert data["range_end_date"] == "2024-03-01T20:00:00Z"


def test_timezone_dates_are_local(client: TestClient, world: World) -> None:
    body = {**JANUARY, "timezone": "America/New_York"}
    data = assert_ok(create(client, world, body))
    assert data["timezone"] == "America/New_York"
    assert data["range_start_date"] == "2024-01-01"
    assert data["range_end_date"] == "2024-01-31"
    assert data["transfer_runs_total"] == 31


# ---- validation, conflicts, idempotency ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"range_start": "2024-02-01", "range_end": "2024-01-01"}, "range_"),
        ({**JANUARY, "interval_units": 0}, "interval_units"),
        ({**JANUARY, "interval_type": "fortnight"}, "interval_type"),
        ({**JANUARY, "interval_type": "custom", "cron": "not a cron"}, "cron"),
        ({**JANUARY, "timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"range_start": "yesterday-ish", "range_end": "2024-01-01"}, "range_start"),
        ({**JANUARY, "max_active_runs": 0}, "max_active_runs"),
        ({**JANUARY, "block_uuids": ["nope"]}, "block_uuids"),
        ({"range_end": "2024-01-31"}, "range_start"),
        ({**JANUARY, "interval_units": "1"}, "interval_units"),
    ],
)
def test_invalid_create_is_422_naming_the_field(
    client: TestClient, world: World, body: dict[str, Any], field: str
) -> None:
    error = assert_error(create(client, world, body), 422, "UNPROCESSABLE_ENTITY")
    assert field in error["message"], error


def test_unknown_fields_are_422_naming_them(client: TestClient, world: World) -> None:
    error = assert_error(create(client, world, {**JANUARY, "colour": "red", "size": 3}), 422, "UNPROCESSABLE_ENTITY")
    assert "colour" in error["message"]
    assert "size" in error["message"]
    error = assert_error(patch(client, world, world.backfill_id, {"start": "2024-01-01"}), 422, "UNPROCESSABLE_ENTITY")
    assert "start" in error["message"]


def test_malformed_json_is_400(client: TestClient, world: World) -> None:
    url = f"/v1/teams/{world.team_id}/transfers/{world.pipeline_id}/backfills"
    headers = {**world.auth("editor"), "Content-Type": "application/json"}
    response = client.post(url, content=b'{"range_start": "2024-01-01",', headers=headers)
    assert_error(response, 400, "BAD_REQUEST")
    response = client.patch(f"/v1/teams/{world.team_id}/backfills/{world.backfill_id}", content=b"{", headers=headers)
    assert_error(response, 400, "BAD_REQUEST")


def test_body_must_be_an_object(client: TestClient, world: World) -> None:
    assert_error(create(client, world, body=[1, 2]), 422, "UNPROCESSABLE_ENTITY")  # type: ignore[arg-type]


def test_overlap_is_409_naming_the_other_backfill(client: TestClient, world: World) -> None:
    first = assert_ok(create(client, world))
    body = {"range_start": "2024-01-15", "range_end": "2024-02-15"}
    error = assert_error(create(client, world, body), 409, "CONFLICT_ERROR")
    assert str(first["transfer_backfill_id"]) in error["message"]
    assert "SCHEDULED" in error["message"]
    assert "same transfer" in error["message"]  # this dialect's word for a pipeline


def test_idempotency_key_returns_the_same_backfill(client: TestClient, world: World) -> None:
    first = assert_ok(create(client, world, headers={"Idempotency-Key": "k-1"}))
    again = assert_ok(create(client, world, headers={"Idempotency-Key": "k-1"}))
    assert again["transfer_backfill_id"] == first["transfer_backfill_id"]
    assert_error(create(client, world, headers={"Idempotency-Key": "k-2"}), 409, "CONFLICT_ERROR")


def test_dry_run_saves_nothing(client: TestClient, db: Database, world: World) -> None:
    w = world
    url = f"/v1/teams/{w.team_id}/transfers/{w.pipeline_id}/backfills:dry_run"
    before = assert_ok(
        client.get(f"/v1/teams/{w.team_id}/backfills?status=CREATED,SCHEDULED", headers=w.auth("viewer"))
    )
    data = assert_ok(client.post(url, json=JANUARY, headers=w.auth("viewer")))
    assert data["transfer_runs_total"] == 31
    assert data["transfer_runs_to_run"] == 31
    assert data["transfer_runs_skipped"] == 0
    assert len(data["intervals"]) == 31
    newest = data["intervals"][0]
    assert newest == {
        "interval_start": "2024-01-31T00:00:00Z",
        "interval_end": "2024-02-01T00:00:00Z",
        "data_date": "2024-01-31",
    }
    after = assert_ok(client.get(f"/v1/teams/{w.team_id}/backfills?status=CREATED,SCHEDULED", headers=w.auth("viewer")))
    assert len(after) == len(before)

    # reprocess=failed skips intervals another backfill completed
    cancel_world_backfill(client, w)
    done = assert_ok(create(client, w, {"range_start": "2024-01-30", "range_end": "2024-01-31"}))
    for run in claim(db, 2):
        finish(db, run)
    status = assert_ok(
        client.get(f"/v1/teams/{w.team_id}/backfills/{done['transfer_backfill_id']}", headers=w.auth("viewer"))
    )
    assert status["status"] == "COMPLETED"
    data = assert_ok(client.post(url, json={**JANUARY, "reprocess": "failed"}, headers=w.auth("viewer")))
    assert data["transfer_runs_total"] == 31
    assert data["transfer_runs_to_run"] == 29
    assert data["transfer_runs_skipped"] == 2
    assert [s["data_date"] for s in data["skipped_intervals"]] == ["2024-01-30", "2024-01-31"]
    assert data["intervals"][0]["data_date"] == "2024-01-29"


def test_dry_run_rejects_invalid_values(client: TestClient, world: World) -> None:
    url = f"/v1/teams/{world.team_id}/transfers/{world.pipeline_id}/backfills:dry_run"
    body = {**JANUARY, "timezone": "Nowhere/Never"}
    error = assert_error(client.post(url, json=body, headers=world.auth("viewer")), 422, "UNPROCESSABLE_ENTITY")
    assert "timezone" in error["message"]


# ---- list, get, latest ---------------------------------------------------------------------------


def test_list_defaults_to_unfinished_newest_first(client: TestClient, world: World) -> None:
    w = world
    cancel_world_backfill(client, w)
    ids = []
    for month in ("2024-01", "2024-02", "2024-03"):
        body = {"range_start": f"{month}-01", "range_end": f"{month}-10"}
        ids.append(assert_ok(create(client, w, body))["transfer_backfill_id"])
    assert_ok(patch(client, w, ids[1], {"status": "CANCELLED"}))
    url = f"/v1/teams/{w.team_id}/backfills"
    response = client.get(url, headers=w.auth("viewer"))
    data = assert_ok(response)
    assert [b["transfer_backfill_id"] for b in data] == [ids[2], ids[0]]
    meta = response.json()["meta"]
    assert meta["total"] == 2
    assert meta["limit"] == 100
    assert meta["offset"] == 0

    data = assert_ok(client.get(url, params={"status": "CANCELLED"}, headers=w.auth("viewer")))
    assert [b["transfer_backfill_id"] for b in data] == [ids[1], w.backfill_id]
    data = assert_ok(client.get(url, params={"status": "cancelled,scheduled"}, headers=w.auth("viewer")))
    assert len(data) == 4
    response = client.get(
        url, params={"status": "SCHEDULED,CANCELLED", "limit": 1, "offset": 1}, headers=w.auth("viewer")
    )
    data = assert_ok(response)
    assert [b["transfer_backfill_id"] for b in data] == [ids[1]]
    assert response.json()["meta"] == {**response.json()["meta"], "total": 4, "limit": 1, "offset": 1}

    other = add_pipeline(client.app.state.db, w.team_id, "other_pipeline")  # type: ignore[attr-defined]
    data = assert_ok(client.get(url, params={"transfer_id": other}, headers=w.auth("viewer")))
    assert data == []

    error = assert_error(client.get(url, params={"status": "DONE"}, headers=w.auth("viewer")), 400, "BAD_REQUEST")
    assert "status" in error["message"]
    error = assert_error(client.get(url, params={"limit": 0}, headers=w.auth("viewer")), 400, "BAD_REQUEST")
    assert "limit" in error["message"]
    assert_error(client.get(url, params={"limit": 1001}, headers=w.auth("viewer")), 400, "BAD_REQUEST")
    assert_error(client.get(url, params={"offset": -1}, headers=w.auth("viewer")), 400, "BAD_REQUEST")


def test_latest_backfill_of_a_transfer(client: TestClient, world: World) -> None:
    w = world
    cancel_world_backfill(client, w)
    created = assert_ok(create(client, w))
    url = f"/v1/teams/{w.team_id}/transfers/{w.pipeline_id}/backfills/latest"
    assert (
        assert_ok(client.get(url, headers=w.auth("viewer")))["transfer_backfill_id"] == created["transfer_backfill_id"]
    )
    assert_ok(patch(client, w, created["transfer_backfill_id"], {"status": "CANCELLED"}))
    latest = assert_ok(client.get(url, headers=w.auth("viewer")))
    assert latest["transfer_backfill_id"] == created["transfer_backfill_id"]
    assert latest["status"] == "CANCELLED"
    empty = add_pipeline(client.app.state.db, w.team_id, "never_backfilled")  # type: ignore[attr-defined]
    url = f"/v1/teams/{w.team_id}/transfers/{empty}/backfills/latest"
    assert_error(client.get(url, headers=w.auth("viewer")), 404, "NOT_FOUND")


# ---- PATCH ------------------------------------------------------------------------------------------


def test_patch_pause_resume_settings(client: TestClient, world: World) -> None:
    w = world
    bf = w.backfill_id
    paused = assert_ok(patch(client, w, bf, {"paused": True}, who="editor"))
    assert (paused["paused"], paused["allowed_actions"]) == (True, ["rerun", "cancel", "resume"])
    resumed = assert_ok(patch(client, w, bf, {"paused": False}, who="editor"))
    assert (resumed["paused"], resumed["allowed_actions"]) == (False, ["rerun", "cancel", "pause"])
    data = assert_ok(patch(client, w, bf, {"max_active_runs": 9, "name": "renamed"}, who="editor"))
    assert data["max_active_runs"] == 9
    assert data["name"] == "renamed"
    error = assert_error(patch(client, w, bf, {"status": "RUNNING"}), 422, "UNPROCESSABLE_ENTITY")
    assert "CANCELLED" in error["message"]  # names the allowed transition
    assert "status" in error["message"]
    assert_error(patch(client, w, bf, {"status": "DONE"}), 422, "UNPROCESSABLE_ENTITY")
    assert_error(patch(client, w, bf, {}), 422, "UNPROCESSABLE_ENTITY")
    assert_error(patch(client, w, bf, {"paused": "yes"}), 422, "UNPROCESSABLE_ENTITY")
    assert_error(patch(client, w, bf, {"max_active_runs": 0}), 422, "UNPROCESSABLE_ENTITY")
    assert_error(patch(client, w, bf, {"status": None}), 422, "UNPROCESSABLE_ENTITY")
    assert_error(patch(client, w, 10**12, {"paused": True}), 404, "NOT_FOUND")
    # once final, nothing but the name changes
    assert assert_ok(patch(client, w, bf, {"status": "CANCELLED"}))["allowed_actions"] == ["delete"]
    assert_error(patch(client, w, bf, {"paused": True}), 422, "UNPROCESSABLE_ENTITY")
    assert_error(patch(client, w, bf, {"max_active_runs": 2}), 422, "UNPROCESSABLE_ENTITY")
    assert_error(patch(client, w, bf, {"status": "SCHEDULED"}), 422, "UNPROCESSABLE_ENTITY")


def test_patch_scheduled_retries_a_failed_backfill(client: TestClient, db: Database, world: World) -> None:
    w = world
    cancel_world_backfill(client, w)
    data = assert_ok(create(client, w, {"range_start": "2024-01-01", "range_end": "2024-01-02"}))
    bf = data["transfer_backfill_id"]
    first, second = claim(db, 2)
    finish(db, first)
    finish(db, second, ok=False, error="boom")
    failed = assert_ok(client.get(f"/v1/teams/{w.team_id}/backfills/{bf}", headers=w.auth("viewer")))
    assert failed["status"] == "FAILED"
    assert failed["error_report"] == [
        {"transfer_run_date": failed["error_report"][0]["transfer_run_date"], "error": "boom"}
    ]
    assert ISO_Z.match(failed["end_time"])
    retried = assert_ok(patch(client, w, bf, {"status": "SCHEDULED"}, who="editor"))
    assert retried["status"] == "SCHEDULED"
    assert retried["transfer_runs_failed"] == 0
    assert retried["transfer_runs_completed"] == 1
    assert retried["error_report"] == []
    (again,) = claim(db, 5)
    assert again.run_id == second.run_id  # only the failed interval runs again
    finish(db, again)
    done = assert_ok(client.get(f"/v1/teams/{w.team_id}/backfills/{bf}", headers=w.auth("viewer")))
    assert done["status"] == "COMPLETED"
    assert done["metrics"]["progress"] == 1


def test_a_polled_backfill_follows_every_change(client: TestClient, db: Database, world: World) -> None:
    """GET backfill answers an unchanged backfill from the JSON rendered for its row
    version; every change (a run, a rename, a pause) must show at once, and what is
    served must be what rendering afresh gives."""
    from backfill.api import team_api
    from backfill.services import backfills as backfill_service

    w = world
    cancel_world_backfill(client, w)
    bf = assert_ok(create(client, w, {"range_start": "2024-01-01", "range_end": "2024-01-03"}))["transfer_backfill_id"]
    url = f"/v1/teams/{w.team_id}/backfills/{bf}"

    def get() -> Any:
        return assert_ok(client.get(url, headers=w.auth("viewer")))

    def fresh() -> Any:
        detail = backfill_service.get(db, w.actor(), bf)
        return team_api._backfill(detail).model_dump(mode="json")

    first = get()
    assert get() == first == fresh()
    runs = claim(db, 3)
    assert get()["transfer_runs_running"] == 3
    finish(db, runs[0], ok=False, error="first failure")
    finish(db, runs[1])
    polled = get()
    assert polled["transfer_runs_failed"] == 1 and polled["transfer_runs_completed"] == 1
    assert [e["error"] for e in polled["error_report"]] == ["first failure"]
    assert polled == fresh()
    assert_ok(patch(client, w, bf, {"name": "renamed", "paused": True}))
    assert (get()["name"], get()["paused"]) == ("renamed", True)
    assert get() == fresh()


# ---- runs and logs ------------------------------------------------------------------------------------


def test_runs_of_a_backfill_filters_sort_and_detail(client: TestClient, db: Database, world: World) -> None:
    w = world
    cancel_world_backfill(client, w)
    bf = assert_ok(create(client, w, {**JANUARY, "max_active_runs": 3}))["transfer_backfill_id"]
    a, b, c = claim(db, 3)
    finish(db, a, log="hello\n")
    finish(db, b, ok=False, error="bad data", log="partial\n")
    url = f"/v1/teams/{w.team_id}/backfills/{bf}/runs"
    response = client.get(url, headers=w.auth("viewer"))
    runs = assert_ok(response)
    meta = response.json()["meta"]
    assert meta["total"] == len(runs) >= 3
    assert [r["data_date"] for r in runs] == sorted(r["data_date"] for r in runs)
    run = next(r for r in runs if r["id"] == b.run_id)
    assert run["status"] == "FAILED"
    assert run["type"] == "Backfill"
    assert run["transfer_backfill_id"] == bf
    assert run["transfer_id"] == w.pipeline_id
    assert run["message"] == "bad data"
    assert run["attempt"] == 1
    assert run["total_rows"] == 3
    assert DATE.match(run["data_date"])
    for key in (
        "interval_start",
        "interval_end",
        "created_time",
        "queued_time",
        "started_time",
        "ended_time",
    ):
        assert ISO_Z.match(run[key]), (key, run[key])
    assert run["interval_start"].startswith(run["data_date"])

    issues = assert_ok(client.get(url, params={"filter_issues_only": "true"}, headers=w.auth("viewer")))
    assert [r["id"] for r in issues] == [b.run_id]
    running = assert_ok(client.get(url, params={"status": "RUNNING"}, headers=w.auth("viewer")))
    assert [r["id"] for r in running] == [c.run_id]
    two = assert_ok(client.get(url, params={"status": "COMPLETED,FAILED"}, headers=w.auth("viewer")))
    assert {r["id"] for r in two} == {a.run_id, b.run_id}
    desc = assert_ok(
        client.get(
            url,
            params={"sort_direction": "desc", "sort_field": "data_date", "limit": 2},
            headers=w.auth("viewer"),
        )
    )
    assert len(desc) == 2
    assert desc[0]["data_date"] > desc[1]["data_date"]
    ended = assert_ok(client.get(url, params={"sort_field": "ended_time"}, headers=w.auth("viewer")))
    assert {ended[0]["id"], ended[1]["id"]} == {a.run_id, b.run_id}  # ended first, never-ended last
    assert_error(client.get(url, params={"status": "LOST"}, headers=w.auth("viewer")), 400, "BAD_REQUEST")
    assert_error(client.get(url, params={"sort_field": "colour"}, headers=w.auth("viewer")), 400, "BAD_REQUEST")
    assert_error(client.get(url, params={"limit": 10001}, headers=w.auth("viewer")), 400, "BAD_REQUEST")
    assert_ok(client.get(url, params={"limit": 10000}, headers=w.auth("viewer")))

    detail = assert_ok(client.get(f"/v1/teams/{w.team_id}/transfer_runs/{b.run_id}", headers=w.auth("viewer")))
    assert detail["id"] == b.run_id
    assert detail["query_details"] == [
        {
            "block_uuid": "extract",
            "status": "FAILED",
            "started_time": "2024-02-01T10:00:00Z",
            "ended_time": "2024-02-01T10:00:02Z",
            "duration_seconds": 2.5,
            "rows": 3,
            "error": "bad data",
            "output": '{"rows": 3}',
        }
    ]
    assert_error(
        client.get(f"/v1/teams/{w.team_id}/transfer_runs/{w.other_run_id}", headers=w.auth("viewer")),
        404,
        "NOT_FOUND",
    )


def test_run_logs_tail_with_offset(client: TestClient, db: Database, world: World) -> None:
    w = world
    cancel_world_backfill(client, w)
    assert_ok(create(client, w, {"range_start": "2024-01-01", "range_end": "2024-01-01"}))
    (run,) = claim(db, 1)
    url = f"/v1/teams/{w.team_id}/transfer_runs/{run.run_id}/logs"
    empty = assert_ok(client.get(url, headers=w.auth("viewer")))
    assert empty == {
        "transfer_run_id": run.run_id,
        "content": "",
        "offset": 0,
        "next_offset": 0,
        "complete": False,
        "attempt": 1,
        "attempts": 1,
        "status": "RUNNING",
        "pipeline_version": None,
        "error": None,
        "run_final": False,
    }
    finish(db, run, log="line 1\nline 2\n")
    first = assert_ok(client.get(url, params={"limit": 7}, headers=w.auth("viewer")))
    assert first["content"] == "line 1\n"
    assert first["next_offset"] == 7
    assert first["complete"] is False
    rest = assert_ok(client.get(url, params={"offset": first["next_offset"]}, headers=w.auth("viewer")))
    assert rest["content"] == "line 2\n"
    assert rest["offset"] == 7
    assert rest["next_offset"] == 14
    assert rest["complete"] is True
    assert (rest["attempt"], rest["status"], rest["run_final"]) == (1, "COMPLETED", True)
    assert_error(client.get(url, params={"offset": -1}, headers=w.auth("viewer")), 400, "BAD_REQUEST")
    assert_error(client.get(url, params={"attempt": 2}, headers=w.auth("viewer")), 404, "NOT_FOUND")
    assert assert_ok(client.get(url, params={"attempt": 1}, headers=w.auth("viewer")))["content"] == "line 1\nline 2\n"
    other = f"/v1/teams/{w.team_id}/transfer_runs/{w.other_run_id}/logs"
    assert_error(client.get(other, headers=w.auth("viewer")), 404, "NOT_FOUND")


def test_runs_of_a_transfer_by_date(client: TestClient, db: Database, world: World) -> None:
    w = world
    cancel_world_backfill(client, w)
    january = assert_ok(create(client, w, {**JANUARY, "max_active_runs": 5, "run_order": "oldest_first"}))
    for r in claim(db, 5):
        finish(db, r)
    with db.write() as conn:  # the other 26 days as queued runs
        bf = backfill_store.get(conn, january["transfer_backfill_id"])
        assert queue.materialize(conn, bf, 31, datetime.now(UTC)) == 26
    url = f"/v1/teams/{w.team_id}/transfers/{w.pipeline_id}/runs"
    runs = assert_ok(
        client.get(url, params={"start_date": "2024-01-02", "end_date": "2024-01-03"}, headers=w.auth("viewer"))
    )
    assert [r["data_date"] for r in runs] == ["2024-01-02", "2024-01-03"]
    older = assert_ok(
        client.get(url, params={"start_date": "2023-01-01", "end_date": "2023-12-31"}, headers=w.auth("viewer"))
    )
    # the world's earlier backfill: its 1 claimed run is its only run (a claim creates
    # the runs it takes; the 9 intervals it never reached were cancelled as counts)
    assert {r["transfer_backfill_id"] for r in older} == {w.backfill_id}
    assert len(older) == 1
    desc = assert_ok(
        client.get(
            url,
            params={
                "start_date": "2024-01-01",
                "end_date": "2024-01-31",
                "sort_direction": "desc",
                "limit": 3,
            },
            headers=w.auth("viewer"),
        )
    )
    assert [r["data_date"] for r in desc] == ["2024-01-31", "2024-01-30", "2024-01-29"]  # all materialized
    # instants bound the interval starts, both ends inclusive (the web page's day view asks so)
    instants = assert_ok(
        client.get(
            url,
            params={"start_date": "2024-01-02T00:00:00Z", "end_date": "2024-01-04T00:00:00Z"},
            headers=w.auth("viewer"),
        )
    )
    assert [r["data_date"] for r in instants] == ["2024-01-02", "2024-01-03", "2024-01-04"]
    error = assert_error(
        client.get(url, params={"end_date": "2024-01-03"}, headers=w.auth("viewer")), 400, "BAD_REQUEST"
    )
    assert "start_date" in error["message"]
    error = assert_error(
        client.get(url, params={"start_date": "2024-01-03"}, headers=w.auth("viewer")), 400, "BAD_REQUEST"
    )
    assert "end_date" in error["message"]
    error = assert_error(
        client.get(url, params={"start_date": "someday", "end_date": "2024-01-03"}, headers=w.auth("viewer")),
        400,
        "BAD_REQUEST",
    )
    assert "start_date" in error["message"]
    other = f"/v1/teams/{w.team_id}/transfers/{w.other_pipeline_id}/runs"
    params = {"start_date": "2023-01-01", "end_date": "2023-12-31"}
    assert_error(client.get(other, params=params, headers=w.auth("viewer")), 404, "NOT_FOUND")


# ---- transfers -------------------------------------------------------------------------------------------


def test_transfers(client: TestClient, db: Database, world: World) -> None:
    w = world
    response = client.get(f"/v1/teams/{w.team_id}/transfers", headers=w.auth("viewer"))
    data = assert_ok(response)
    assert [t["id"] for t in data] == [w.pipeline_id]
    assert response.json()["meta"]["total"] == 1
    one = assert_ok(client.get(f"/v1/teams/{w.team_id}/transfers/{w.pipeline_id}", headers=w.auth("viewer")))
    assert one == data[0]
    assert one["uuid"] == "daily_sales"
    assert one["blocks"] == [
        {"uuid": "extract", "type": "python", "upstream": [], "connection": None},
        {"uuid": "load", "type": "sql", "upstream": ["extract"], "connection": "dwh"},
    ]
    assert ISO_Z.match(one["created_time"])
    assert one["load_error"] is None
    with db.write() as conn:  # its files stopped loading: the last good version stays
        conn.execute(
            pipelines.update().where(pipelines.c.id == w.pipeline_id).values(load_error="p.yaml: bad", version="v1")
        )
    one = assert_ok(client.get(f"/v1/teams/{w.team_id}/transfers/{w.pipeline_id}", headers=w.auth("viewer")))
    assert (one["load_error"], one["version"]) == ("p.yaml: bad", "v1")
    other = client.get(f"/v1/teams/{w.team_id}/transfers/{w.other_pipeline_id}", headers=w.auth("viewer"))
    assert_error(other, 404, "NOT_FOUND")


# ---- envelope, request id, errors ------------------------------------------------------------------


def test_request_id_is_echoed_when_valid_else_generated(client: TestClient, world: World) -> None:
    url = f"/v1/teams/{world.team_id}/backfills/{world.backfill_id}"
    rid = "01892A4D-7586-7000-8000-000000000000"
    response = client.get(url, headers={**world.auth("viewer"), "X-Request-ID": rid})
    assert response.headers["X-Request-ID"] == rid
    assert response.json()["meta"]["request_id"] == rid
    for bad in ("short", "has spaces in it", "x" * 65, "semi;colon;id", ""):
        response = client.get(url, headers={**world.auth("viewer"), "X-Request-ID": bad})
        assert_envelope_headers(response)
        generated = response.headers["X-Request-ID"]
        assert generated != bad
        assert re.fullmatch(r"[A-Za-z0-9_-]{8,64}", generated)
    # generated ids differ per request, also on errors
    ids = {client.get(url).headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3
    error = client.get(url, headers={"X-Request-ID": "trace_me_123"})
    assert_error(error, 401, "UNAUTHORIZED")
    assert error.json()["meta"]["request_id"] == "trace_me_123"


def test_unknown_route_and_method(client: TestClient, world: World) -> None:
    assert_error(client.get("/v1/nothing/here", headers=world.auth("viewer")), 404, "NOT_FOUND")
    assert_error(client.get("/nothing"), 404, "NOT_FOUND")
    response = client.delete(f"/v1/teams/{world.team_id}/backfills/{world.backfill_id}", headers=world.auth("owner"))
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert "PATCH" in response.headers["Allow"]
    assert_error(client.get(f"/v1/teams/{world.team_id}/backfills/abc", headers=world.auth("viewer")), 404, "NOT_FOUND")


@pytest.mark.usefixtures("world")
def test_unhandled_exception_is_500_without_traceback(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(db, make_settings())

    @app.get("/v1/boom")
    def boom() -> None:
        raise RuntimeError("secret internal detail")

    with TestClient(app, raise_server_exceptions=False) as client, caplog.at_level(logging.ERROR):
        response = client.get("/v1/boom", headers={"X-Request-ID": "boom-request-1"})
    error = assert_error(response, 500, "INTERNAL_SERVER_ERROR")
    assert "secret internal detail" not in response.text
    assert "RuntimeError" not in response.text
    assert error["message"]
    logged = [r for r in caplog.records if getattr(r, "request_id", None) == "boom-request-1" and r.exc_info]
    assert logged, "the error is logged with the request id and the traceback"


def test_database_down_is_503(world: World) -> None:
    down = Database("postgresql://nobody@127.0.0.1:1/nothing")
    app = create_app(down, make_settings())
    with TestClient(app, raise_server_exceptions=False) as client:
        assert_error(client.get("/readyz"), 503, "SERVICE_UNAVAILABLE")
        response = client.get(f"/v1/teams/{world.team_id}/backfills", headers=world.auth("viewer"))
        assert_error(response, 503, "SERVICE_UNAVAILABLE")
        assert response.headers["Retry-After"]
        assert assert_ok(client.get("/healthz")) == {"status": "ok"}  # the process itself is up
    down.dispose()


def test_health_endpoints(client: TestClient) -> None:
    assert assert_ok(client.get("/healthz")) == {"status": "ok"}
    assert assert_ok(client.get("/readyz")) == {"status": "ok"}
    schema = client.get("/openapi.json")
    assert schema.status_code == 200
    assert schema.headers["X-RateLimit-Limit"]


def test_rate_limit_429_with_retry_after(db: Database, world: World) -> None:
    app = create_app(db, make_settings(rate_limit="3/minute"))
    url = f"/v1/teams/{world.team_id}/backfills/{world.backfill_id}"
    with TestClient(app, raise_server_exceptions=False) as client:
        remaining = [client.get(url, headers=world.auth("viewer")).headers["X-RateLimit-Remaining"] for _ in range(3)]
        assert remaining == ["2", "1", "0"]
        response = client.get(url, headers=world.auth("viewer"))
        assert_error(response, 429, "TOO_MANY_REQUESTS")
        assert 1 <= int(response.headers["Retry-After"]) <= 60
        assert response.headers["X-RateLimit-Limit"] == "3"
        assert response.headers["X-RateLimit-Remaining"] == "0"
        # another token has its own window; probes are not metered
        assert_ok(client.get(url, headers=world.auth("owner")))
        assert client.get("/healthz").status_code == 200
        # unauthenticated clients are limited per address
        for _ in range(3):
            client.get("/openapi.json")
        assert_error(client.get("/v1/teams/1/backfills"), 429, "TOO_MANY_REQUESTS")


def test_metrics_endpoint(client: TestClient, world: World) -> None:
    client.get(f"/v1/teams/{world.team_id}/backfills/{world.backfill_id}", headers=world.auth("viewer"))
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.text
    assert 'backfill_interval_runs{status="running"} 2.0' in text  # one claimed run per team
    assert "backfill_queue_depth 18.0" in text  # 2 backfills x 10 days, 2 running
    assert 'backfill_backfills{status="running"} 2.0' in text
    assert 'route="/v1/teams/{team_id}/backfills/{backfill_id}"' in text
    assert "backfill_run_duration_seconds" in text
    assert response.headers["X-Request-ID"]


def test_openapi_declares_every_error_response(app: FastAPI) -> None:
    schema = app.openapi()
    operations = [(p, m, op) for p, item in schema["paths"].items() if p.startswith("/v1/") for m, op in item.items()]
    assert len(operations) == 20
    for path, method, op in operations:
        for status in ("200", "400", "401", "403", "404", "409", "422", "429", "500", "503"):
            assert status in op["responses"], (path, method, status)
        ref = op["responses"]["404"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorEnvelope")
        assert op["security"] == [{"BearerToken": []}]
    assert "HTTPValidationError" not in schema["components"]["schemas"]


def test_rate_limiter_storage_override_still_applies() -> None:
    """The limiter throttles limits' clean-up thread by overriding a private method of
    limits' MemoryStorage; fail loudly if an upgrade renames it."""
    from limits.storage import MemoryStorage

    from backfill.api.ratelimit import RateLimiter

    assert hasattr(MemoryStorage, "_MemoryStorage__schedule_expiry")
    limiter = RateLimiter("1000/second")

    async def scenario() -> int:
        for _ in range(50):
            assert (await limiter.hit("k")).allowed
        return (await limiter.peek("k")).remaining

    assert asyncio.run(scenario()) == 950


# ---- runs:rerun ------------------------------------------------------------------------------------


def test_rerun_chosen_intervals_of_a_failed_backfill(client: TestClient, db: Database, world: World) -> None:
    w = world
    cancel_world_backfill(client, w)
    bf_id = assert_ok(create(client, w, {"range_start": "2024-01-01", "range_end": "2024-01-03", "retries": 0}))[
        "transfer_backfill_id"
    ]
    first, second, third = claim(db, 3)
    finish(db, first)
    finish(db, second, ok=False, error="boom")
    finish(db, third)
    url = f"/v1/teams/{w.team_id}/backfills/{bf_id}/runs:rerun"
    assert assert_ok(client.get(f"/v1/teams/{w.team_id}/backfills/{bf_id}", headers=w.auth("viewer")))["status"] == (
        "FAILED"
    )
    # an id or a date that is not this backfill's: 422 naming it, nothing changes
    error = assert_error(
        client.post(url, json={"run_ids": [999_999]}, headers=w.auth("editor")), 422, "UNPROCESSABLE_ENTITY"
    )
    assert "999999" in error["message"]
    error = assert_error(
        client.post(url, json={"data_dates": ["2024-02-01"]}, headers=w.auth("editor")), 422, "UNPROCESSABLE_ENTITY"
    )
    assert "2024-02-01" in error["message"]
    assert_error(
        client.post(url, json={"statuses": ["RUNNING"]}, headers=w.auth("editor")), 422, "UNPROCESSABLE_ENTITY"
    )
    assert_error(client.post(url, json={}, headers=w.auth("editor")), 422, "UNPROCESSABLE_ENTITY")

    data = assert_ok(client.post(url, json={"statuses": ["FAILED"]}, headers=w.auth("editor")))
    assert (data["requeued"], data["running"]) == (1, 0)
    assert data["backfill"]["status"] == "SCHEDULED"
    assert data["backfill"]["transfer_runs_failed"] == 0
    (again,) = claim(db, 3)
    assert (again.run_id, again.attempt) == (second.run_id, 2)  # a new attempt of the same run
    finish(db, again)
    bf = assert_ok(client.get(f"/v1/teams/{w.team_id}/backfills/{bf_id}", headers=w.auth("viewer")))
    assert (bf["status"], bf["transfer_runs_completed"]) == ("COMPLETED", 3)
    # a final backfill refuses
    error = assert_error(
        client.post(url, json={"statuses": ["COMPLETED"]}, headers=w.auth("editor")), 422, "UNPROCESSABLE_ENTITY"
    )
    assert "final" in error["message"]
