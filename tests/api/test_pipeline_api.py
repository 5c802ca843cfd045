"""The pipeline API (docs/api.md, seed ``000_…``) through HTTP: the seed's PUT replayed field by
field and run to completion by an in-process worker, every PUT rule, block selection that
really executes, cross-dialect visibility, listings, errors and the OpenAPI document."""

# ruff: noqa: F811  (the papi_* fixtures are imported from pipeline_conftest_helpers and requested by name)

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.api.pipeline_conftest_helpers import (  # noqa: F401  (fixtures requested by name)
    PIPELINE_DATETIME,
    PipelineWorld,
    add_pipeline,
    assert_pipeline_error,
    create_backfill,
    diamond_pipeline,
    get_backfill,
    login,
    ok,
    papi_app,
    papi_client,
    papi_make_app,
    papi_settings,
    papi_world,
    put_backfill,
    read_journal,
    run_until_status,
)

from backfill.services import backfills as backfill_service
from backfill.store import backfills as backfill_store
from backfill.store import queue
from backfill.store.db import Database
from backfill.store.tables import pipelines

SEED_KEYS = [
    "id",
    "block_uuid",
    "completed_at",
    "created_at",
    "end_datetime",
    "failed_at",
    "interval_type",
    "interval_units",
    "metrics",
    "name",
    "pipeline_schedule_id",
    "pipeline_uuid",
    "start_datetime",
    "started_at",
    "status",
    "updated_at",
    "variables",
]
SETTINGS_KEYS = {
    "max_active_runs",
    "run_order",
    "reprocess",
    "timezone",
    "cron",
    "retries",
    "retry_delay_seconds",
    "timeout_seconds",
    "paused",
    "block_uuids",
}
DT = re.compile(PIPELINE_DATETIME)


def pipeline_runs(client: TestClient, w: PipelineWorld, backfill_id: int, **params: Any) -> Any:
    return client.get("/api/pipeline_runs", params={"backfill_id": backfill_id, **params}, headers=w.headers())


def claim_one(db: Database) -> queue.ClaimedRun:
    """Claim one run as a worker would (which creates that run, and only it)."""
    with db.write() as conn:
        claimed = queue.claim(conn, "test-worker", 1, lease_seconds=60, now=datetime.now(UTC))
    assert len(claimed) == 1
    return claimed[0]


# ---- the seed (000): PUT replayed, then started and run to completion --------------------------------


def test_seed_put_replayed_field_by_field_then_run_to_completion(
    papi_client: TestClient, papi_world: PipelineWorld, db: Database
) -> None:
    c, w = papi_client, papi_world
    created = create_backfill(c, w, {"start_datetime": "2023-07-01", "end_datetime": "2023-07-02"})
    assert created["status"] is None
    backfill_id = created["id"]
    jwt_cookie = login(c, w)

    r = c.put(
        f"/api/pipelines/{w.pipeline_uuid}/backfills/{backfill_id}",
        headers={"Content-Type": "application/json", "Cookie": f"oauth_token={jwt_cookie}", "X-API-KEY": w.api_key},
        content=b"""{
  "backfill": {
    "start_datetime": "2023-07-17 23:56:05",
    "end_datetime": "2023-07-18 23:56:05",
    "name": "new_name"
  }
}""",
    )
    bf = ok(r)
    assert list(r.json()) == ["backfill"]
    # The seed's keys, in the seed's order, plus settings and allowed_actions.
    assert list(bf) == [*SEED_KEYS, "settings", "allowed_actions"]
    assert bf["id"] == backfill_id
    assert bf["block_uuid"] is None
    assert bf["completed_at"] is None
    assert DT.match(bf["created_at"])
    assert bf["end_datetime"] == "2023-07-18 23:56:05"
    assert bf["failed_at"] is None
    assert bf["interval_type"] == "day"  # the seed's null: ours always has one (default day)
    assert bf["interval_units"] == 1
    assert isinstance(bf["metrics"], dict)  # never null
    assert bf["metrics"]["total_runs"] == 2  # 07-17 23:56:05 and 07-18 23:56:05, both inclusive
    assert bf["name"] == "new_name"
    assert bf["pipeline_schedule_id"] is None
    assert bf["pipeline_uuid"] == w.pipeline_uuid
    assert bf["start_datetime"] == "2023-07-17 23:56:05"
    assert bf["started_at"] is None
    assert bf["status"] is None
    assert DT.match(bf["updated_at"])
    assert bf["updated_at"] >= bf["created_at"]
    assert bf["variables"] is None
    assert set(bf["settings"]) == SETTINGS_KEYS
    assert bf["settings"]["block_uuids"] is None
    # What the GET shows is what the PUT answered (the values round-trip).
    again = get_backfill(c, w, backfill_id)
    assert {k: again[k] for k in SEED_KEYS if k != "metrics"} == {k: bf[k] for k in SEED_KEYS if k != "metrics"}

    started = ok(
        c.put(
            f"/api/pipelines/{w.pipeline_uuid}/backfills/{backfill_id}",
            json={"backfill": {"status": "initial"}},
            headers={"Cookie": f"oauth_token={jwt_cookie}", "X-API-KEY": w.api_key},
        )
    )
    assert started["status"] == "initial"
    assert started["start_datetime"] == "2023-07-17 23:56:05"

    done = run_until_status(c, w, db, backfill_id, ("completed", "failed"))
    assert done["status"] == "completed", done
    assert DT.match(done["started_at"])
    assert DT.match(done["completed_at"])
    assert done["failed_at"] is None
    assert done["metrics"]["completed_runs"] == 2
    assert done["metrics"]["progress"] == 1.0
    assert done["metrics"]["rows"] == 6  # 2 intervals x 3 blocks returning {"rows": 1}
    listed = ok(pipeline_runs(c, w, backfill_id), "pipeline_runs")
    assert [r["execution_date"] for r in listed] == ["2023-07-18 23:56:05", "2023-07-17 23:56:05"]
    assert {r["status"] for r in listed} == {"completed"}
    assert all(DT.match(r["completed_at"]) for r in listed)


# ---- create, read, list ----------------------------------------------------------------------------


def test_create_is_not_started_and_lists_are_newest_first(papi_client: TestClient, papi_world: PipelineWorld) -> None:
    c, w = papi_client, papi_world
    first = create_backfill(c, w, {"start_datetime": "2024-01-01", "end_datetime": "2024-01-31", "name": "one"})
    second = create_backfill(c, w, {"start_datetime": "2024-02-01", "end_datetime": "2024-02-29", "name": "two"})
    assert first["status"] is None and first["started_at"] is None
    assert first["metrics"]["total_runs"] == 31
    assert first["variables"] is None

    r = c.get(f"/api/pipelines/{w.pipeline_uuid}/backfills", headers=w.headers())
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"backfills", "metadata"}
    assert [b["id"] for b in body["backfills"]] == [second["id"], first["id"]]
    assert body["metadata"] == {"count": 2, "next": False}
    assert all(list(b) == [*SEED_KEYS, "settings", "allowed_actions"] for b in body["backfills"])

    page = c.get("/api/backfills", params={"pipeline_uuid": w.pipeline_uuid, "_limit": 1}, headers=w.headers()).json()
    assert [b["id"] for b in page["backfills"]] == [second["id"]]
    assert page["metadata"] == {"count": 2, "next": True}
    page2 = c.get("/api/backfills", params={"_limit": 1, "_offset": 1}, headers=w.headers()).json()
    assert [b["id"] for b in page2["backfills"]] == [first["id"]]
    assert page2["metadata"] == {"count": 2, "next": False}

    counted = c.get("/api/backfills", params={"include_run_count": "true"}, headers=w.headers()).json()
    assert all(b["total_run_count"] == sum(b["run_status_counts"].values()) for b in counted["backfills"])

    nested = ok(c.get(f"/api/pipelines/{w.pipeline_uuid}/backfills/{first['id']}", headers=w.headers()))
    assert nested["name"] == "one"
    assert_pipeline_error(
        c.get(f"/api/pipelines/{w.pipeline_uuid}/backfills", params={"_limit": 0}, headers=w.headers()),
        400,
        "record_invalid",
    )
    msg = assert_pipeline_error(c.get("/api/pipelines/nope/backfills", headers=w.headers()), 404, "record_not_found")
    assert "nope" in msg


def test_post_accepts_every_attribute_and_status_initial_starts_at_once(
    papi_client: TestClient, papi_world: PipelineWorld
) -> None:
    c, w = papi_client, papi_world
    bf = create_backfill(
        c,
        w,
        {
            "name": "full",
            "start_datetime": "2024-03-01T06:00:00+02:00",
            "end_datetime": "2024-03-01 12:00:00",
            "interval_type": "hour",
            "interval_units": 2,
            "variables": {"region": "us"},
            "block_uuid": "b",
            "settings": {
                "max_active_runs": 2,
                "run_order": "oldest_first",
                "reprocess": "failed",
                "timezone": "Europe/Berlin",
                "retries": 3,
                "timeout_seconds": 60,
            },
            "status": "initial",
        },
    )
    assert bf["status"] == "initial"
    assert bf["start_datetime"] == "2024-03-01 04:00:00"  # the offset wins
    assert bf["end_datetime"] == "2024-03-01 12:00:00"  # no offset: UTC in this dialect
    assert (bf["interval_type"], bf["interval_units"]) == ("hour", 2)
    assert bf["metrics"]["total_runs"] == 5  # 04, 06, 08, 10, 12
    assert bf["variables"] == {"region": "us"}
    assert bf["block_uuid"] == "b"
    assert bf["settings"]["block_uuids"] == ["b", "c"]
    s = bf["settings"]
    assert (s["max_active_runs"], s["run_order"], s["reprocess"], s["timezone"], s["retries"]) == (
        2,
        "oldest_first",
        "failed",
        "Europe/Berlin",
        3,
    )
    assert s["timeout_seconds"] == 60


def test_datetime_inputs_plain_dates_iso_and_naive_utc(papi_client: TestClient, papi_world: PipelineWorld) -> None:
    c, w = papi_client, papi_world
    bf = create_backfill(c, w, {"start_datetime": "2024-01-01", "end_datetime": "2024-01-02T00:00:00Z"})
    assert (bf["start_datetime"], bf["end_datetime"]) == ("2024-01-01 00:00:00", "2024-01-02 00:00:00")
    berlin = put_backfill(
        c,
        w,
        bf["id"],
        {
            "start_datetime": "2024-07-01",
            "end_datetime": "2024-07-02 10:30:00",
            "settings": {"timezone": "Europe/Berlin"},
        },
    )
    got = ok(berlin)
    # A plain date is local midnight of the backfill's timezone; a naive time is UTC.
    assert got["start_datetime"] == "2024-06-30 22:00:00"
    assert got["end_datetime"] == "2024-07-02 10:30:00"
    preview = get_backfill(c, w, bf["id"], include_preview_runs="true")["preview_runs"]
    assert preview[0] == {"start": "2024-07-01 22:00:00", "end": "2024-07-02 22:00:00", "data_date": "2024-07-02"}
    msg = assert_pipeline_error(put_backfill(c, w, bf["id"], {"start_datetime": "yesterday"}), 422, "record_invalid")
    assert "start_datetime" in msg


# ---- PUT rules ------------------------------------------------------------------------------------


def test_put_edits_every_attribute_before_the_start(papi_client: TestClient, papi_world: PipelineWorld) -> None:
    c, w = papi_client, papi_world
    bf = create_backfill(c, w)
    got = ok(
        put_backfill(
            c,
            w,
            bf["id"],
            {
                "name": "edited",
                "start_datetime": "2024-05-01 00:00:00",
                "end_datetime": "2024-05-01 03:00:00",
                "interval_type": "minute",
                "interval_units": 30,
                "variables": {"region": "apac"},
                "settings": {
                    "max_active_runs": 7,
                    "run_order": "oldest_first",
                    "reprocess": "missing",
                    "retries": 5,
                    "retry_delay_seconds": 1.5,
                    "paused": True,
                },
            },
        )
    )
    assert got["status"] is None
    assert got["name"] == "edited"
    assert (got["start_datetime"], got["end_datetime"]) == ("2024-05-01 00:00:00", "2024-05-01 03:00:00")
    assert (got["interval_type"], got["interval_units"]) == ("minute", 30)
    assert got["metrics"]["total_runs"] == 7
    assert got["variables"] == {"region": "apac"}
    s = got["settings"]
    assert (s["max_active_runs"], s["run_order"], s["reprocess"], s["retries"], s["retry_delay_seconds"]) == (
        7,
        "oldest_first",
        "missing",
        5,
        1.5,
    )
    assert s["paused"] is True
    # Clearing the overrides: null (or {}) shows as null again.
    assert ok(put_backfill(c, w, bf["id"], {"variables": None}))["variables"] is None
    # A custom cron interval.
    cron = ok(put_backfill(c, w, bf["id"], {"interval_type": "custom", "settings": {"cron": "0 */6 * * *"}}))
    assert cron["settings"]["cron"] == "0 */6 * * *"
    assert cron["metrics"]["total_runs"] == 1  # 00:00 only (03:00 is the end)


def test_put_shape_after_the_start_is_422_but_round_trips_and_live_settings_work(
    papi_client: TestClient, papi_world: PipelineWorld
) -> None:
    c, w = papi_client, papi_world
    bf = create_backfill(c, w)
    assert bf["allowed_actions"] == ["start", "rerun", "cancel", "pause", "edit", "delete"]
    started = ok(put_backfill(c, w, bf["id"], {"status": "running"}))
    assert (started["status"], started["allowed_actions"]) == ("initial", ["rerun", "cancel", "pause"])
    for body, name in (
        ({"start_datetime": "2024-01-02"}, "start_datetime"),
        ({"end_datetime": "2024-01-09"}, "end_datetime"),
        ({"interval_type": "hour"}, "interval_type"),
        ({"interval_units": 2}, "interval_units"),
        ({"variables": {"x": 1}}, "variables"),
        ({"block_uuid": "b"}, "block_uuid"),
        ({"add_upstream_for_block_uuid": "a"}, "block_uuid"),
        ({"settings": {"timezone": "Asia/Tokyo"}}, "settings.timezone"),
    ):
        msg = assert_pipeline_error(
            put_backfill(c, w, bf["id"], {**body, "name": "not applied"}), 422, "record_invalid"
        )
        assert name in msg and "before the backfill starts" in msg, msg
        assert "initial" in msg
    assert get_backfill(c, w, bf["id"])["name"] == "january"  # nothing of a refused PUT applied
    # Name, max_active_runs and paused still change.
    live = ok(put_backfill(c, w, bf["id"], {"name": "renamed", "settings": {"max_active_runs": 9, "paused": True}}))
    assert (live["name"], live["settings"]["max_active_runs"], live["settings"]["paused"]) == ("renamed", 9, True)
    assert live["allowed_actions"] == ["rerun", "cancel", "resume"]
    # GET → edit → PUT of the whole object: unchanged attributes are not edits.
    whole = get_backfill(c, w, bf["id"], include_run_count="true", include_preview_runs="true")
    whole["name"] = "round trip"
    tripped = ok(put_backfill(c, w, bf["id"], whole))
    assert tripped["name"] == "round trip"
    assert tripped["status"] == "initial"
    # "initial"/"running" of a started backfill changes nothing.
    assert ok(put_backfill(c, w, bf["id"], {"status": "running"}))["status"] == "initial"
    # Read-only attributes must match the addressed backfill.
    msg = assert_pipeline_error(put_backfill(c, w, bf["id"], {"id": bf["id"] + 1}), 422, "record_invalid")
    assert "id" in msg
    msg = assert_pipeline_error(put_backfill(c, w, bf["id"], {"pipeline_uuid": "other"}), 422, "record_invalid")
    assert "pipeline_uuid" in msg


def test_block_uuid_selects_the_block_and_everything_downstream(
    papi_client: TestClient, papi_world: PipelineWorld, db: Database
) -> None:
    c, w = papi_client, papi_world
    add_pipeline(db, w.team_id, diamond_pipeline())
    r = c.post(
        "/api/pipelines/diamond/backfills",
        json={"backfill": {"start_datetime": "2024-01-01", "end_datetime": "2024-01-01"}},
        headers=w.headers(),
    )
    bf = ok(r)
    assert bf["block_uuid"] is None and bf["settings"]["block_uuids"] is None

    got = ok(put_backfill(c, w, bf["id"], {"block_uuid": "left"}))
    assert got["block_uuid"] == "left"
    assert got["settings"]["block_uuids"] == ["left", "sink"]
    got = ok(put_backfill(c, w, bf["id"], {"block_uuid": "root"}))
    assert got["block_uuid"] == "root"
    assert got["settings"]["block_uuids"] == ["root", "left", "right", "sink"]  # not "side"
    got = ok(put_backfill(c, w, bf["id"], {"block_uuid": None}))
    assert got["block_uuid"] is None and got["settings"]["block_uuids"] is None  # every block again
    # In a → b → c, block_uuid "a" is every block; it still shows as chosen.
    abc = create_backfill(c, w)
    got_a = ok(put_backfill(c, w, abc["id"], {"block_uuid": "a"}))
    assert got_a["block_uuid"] == "a" and got_a["settings"]["block_uuids"] == ["a", "b", "c"]
    got = ok(put_backfill(c, w, bf["id"], {"settings": {"block_uuids": ["side", "root"]}}))
    assert got["settings"]["block_uuids"] == ["root", "side"]  # topological order
    assert got["block_uuid"] is None  # not of the shape "X and its downstream"


def test_add_upstream_for_block_uuid_adds_the_ancestors(
    papi_client: TestClient, papi_world: PipelineWorld, db: Database
) -> None:
    c, w = papi_client, papi_world
    add_pipeline(db, w.team_id, diamond_pipeline())
    new = {"start_datetime": "2024-01-01", "end_datetime": "2024-01-01"}
    bf = ok(c.post("/api/pipelines/diamond/backfills", json={"backfill": new}, headers=w.headers()))
    # A null selection becomes exactly X and its ancestors.
    got = ok(put_backfill(c, w, bf["id"], {"add_upstream_for_block_uuid": "left"}))
    assert got["settings"]["block_uuids"] == ["root", "left"]
    # A selection gains X and its ancestors.
    got = ok(put_backfill(c, w, bf["id"], {"block_uuid": "right"}))
    assert got["settings"]["block_uuids"] == ["right", "sink"]
    got = ok(put_backfill(c, w, bf["id"], {"add_upstream_for_block_uuid": "left"}))
    assert got["settings"]["block_uuids"] == ["root", "left", "right", "sink"]
    assert got["block_uuid"] == "root"
    # Both in one PUT: block_uuid first, then the upstream of the other.
    got = ok(put_backfill(c, w, bf["id"], {"block_uuid": "sink", "add_upstream_for_block_uuid": "side"}))
    assert got["settings"]["block_uuids"] == ["side", "sink"]  # topological order
    # At creation too.
    created = ok(
        c.post(
            "/api/pipelines/diamond/backfills",
            json={
                "backfill": {
                    **new,
                    "start_datetime": "2025-01-01",
                    "end_datetime": "2025-01-01",
                    "add_upstream_for_block_uuid": "sink",
                }
            },
            headers=w.headers(),
        )
    )
    assert created["settings"]["block_uuids"] == ["root", "left", "right", "sink"]


def test_unknown_block_is_422_naming_it(papi_client: TestClient, papi_world: PipelineWorld) -> None:
    c, w = papi_client, papi_world
    bf = create_backfill(c, w)
    msg = assert_pipeline_error(put_backfill(c, w, bf["id"], {"block_uuid": "nope"}), 422, "record_invalid")
    assert "'nope'" in msg and "block_uuid" in msg
    msg = assert_pipeline_error(
        put_backfill(c, w, bf["id"], {"add_upstream_for_block_uuid": "ghost"}), 422, "record_invalid"
    )
    assert "'ghost'" in msg and "add_upstream_for_block_uuid" in msg
    msg = assert_pipeline_error(
        put_backfill(c, w, bf["id"], {"settings": {"block_uuids": ["a", "phantom"]}}), 422, "record_invalid"
    )
    assert "'phantom'" in msg
    r = c.post(
        f"/api/pipelines/{w.pipeline_uuid}/backfills",
        json={"backfill": {"start_datetime": "2024-01-01", "end_datetime": "2024-01-02", "block_uuid": "nope"}},
        headers=w.headers(),
    )
    assert "'nope'" in assert_pipeline_error(r, 422, "record_invalid")


def test_bad_status_is_422_listing_the_allowed_values(papi_client: TestClient, papi_world: PipelineWorld) -> None:
    c, w = papi_client, papi_world
    bf = create_backfill(c, w)
    for bad in ("completed", "failed", "bogus", "INITIAL"):
        msg = assert_pipeline_error(put_backfill(c, w, bf["id"], {"status": bad}), 422, "record_invalid")
        assert "allowed: initial, running, cancelled" in msg, msg
        assert "status" in msg
    assert get_backfill(c, w, bf["id"])["status"] is None
    assert ok(put_backfill(c, w, bf["id"], {"status": None}))["status"] is None  # unchanged
    ok(put_backfill(c, w, bf["id"], {"status": "initial"}))
    msg = assert_pipeline_error(put_backfill(c, w, bf["id"], {"status": "completed"}), 422, "record_invalid")
    assert "allowed: cancelled" in msg
    ok(put_backfill(c, w, bf["id"], {"status": "cancelled"}))
    msg = assert_pipeline_error(put_backfill(c, w, bf["id"], {"status": "initial"}), 422, "record_invalid")
    assert "final" in msg
    msg = assert_pipeline_error(put_backfill(c, w, bf["id"], {"settings": {"paused": True}}), 422, "record_invalid")
    assert "cancelled" in msg
    # At creation: null or initial/running only.
    r = c.post(
        f"/api/pipelines/{w.pipeline_uuid}/backfills",
        json={"backfill": {"start_datetime": "2024-01-01", "end_datetime": "2024-01-02", "status": "completed"}},
        headers=w.headers(),
    )
    assert "initial" in assert_pipeline_error(r, 422, "record_invalid")


def test_invalid_values_are_422_naming_the_field_never_a_hang(
    papi_client: TestClient, papi_world: PipelineWorld
) -> None:
    c, w = papi_client, papi_world
    url = f"/api/pipelines/{w.pipeline_uuid}/backfills"
    base = {"start_datetime": "2024-01-01", "end_datetime": "2024-01-31"}
    for body, name in (
        ({**base, "interval_units": 0}, "interval_units"),
        ({**base, "interval_units": -3}, "interval_units"),
        ({**base, "interval_units": "2"}, "interval_units"),
        ({"start_datetime": "2024-02-01", "end_datetime": "2024-01-01"}, "end_datetime"),
        ({"start_datetime": "2000-01-01", "end_datetime": "2099-01-01", "interval_type": "second"}, "intervals"),
        ({**base, "interval_type": "fortnight"}, "interval_type"),
        ({**base, "settings": {"timezone": "Mars/Olympus"}}, "timezone"),
        ({**base, "settings": {"max_active_runs": 0}}, "max_active_runs"),
        ({**base, "interval_type": "custom", "settings": {"cron": "not a cron"}}, "cron"),
        ({"end_datetime": "2024-01-31"}, "start_datetime"),
        ({**base, "name": ""}, "name"),
    ):
        msg = assert_pipeline_error(c.post(url, json={"backfill": body}, headers=w.headers()), 422, "record_invalid")
        assert name in msg, (body, msg)
    bf = create_backfill(c, w)
    edits: tuple[tuple[dict[str, Any], str], ...] = (
        ({"interval_units": 0}, "interval_units"),
        ({"start_datetime": "2025-01-01"}, "end_datetime"),
        ({"name": None}, "name"),
        ({"settings": None}, "settings"),
        ({"settings": {"run_order": "random"}}, "run_order"),
    )
    for edit, name in edits:
        msg = assert_pipeline_error(put_backfill(c, w, bf["id"], edit), 422, "record_invalid")
        assert name in msg, (edit, msg)


def test_nul_characters_are_refused_not_a_server_error(papi_client: TestClient, papi_world: PipelineWorld) -> None:
    """PostgreSQL cannot store (or compare) text with NUL: refused up front on both databases."""
    c, w = papi_client, papi_world
    bf = create_backfill(c, w)
    for body in ({"name": "a\x00b"}, {"variables": {"k": "v\x00"}}, {"variables": {"k\x00": 1}}):
        msg = assert_pipeline_error(put_backfill(c, w, bf["id"], body), 422, "record_invalid")
        assert "NUL" in msg
    assert_pipeline_error(c.get("/api/pipelines/a%00b/backfills", headers=w.headers()), 404, "record_not_found")
    assert_pipeline_error(c.get("/api/backfills?pipeline_uuid=a%00b", headers=w.headers()), 400, "record_invalid")
    r = c.post(
        "/api/sessions", json={"session": {"email": "a\x00@b.c", "password": "x"}}, headers={"X-API-KEY": w.api_key}
    )
    assert_pipeline_error(r, 422, "record_invalid")


def test_unknown_keys_and_a_missing_wrapper_are_refused_clearly(
    papi_client: TestClient, papi_world: PipelineWorld
) -> None:
    c, w = papi_client, papi_world
    bf = create_backfill(c, w)
    url = f"/api/backfills/{bf['id']}"
    msg = assert_pipeline_error(
        c.put(url, json={"backfill": {"foo": 1, "bar": 2, "name": "x"}}, headers=w.headers()), 422, "record_invalid"
    )
    assert "foo" in msg and "bar" in msg
    msg = assert_pipeline_error(
        c.put(url, json={"backfill": {"settings": {"colour": "blue"}}}, headers=w.headers()), 422, "record_invalid"
    )
    assert "colour" in msg
    msg = assert_pipeline_error(c.put(url, json={"name": "x"}, headers=w.headers()), 422, "record_invalid")
    assert '{"backfill": {...}}' in msg and "name" in msg
    msg = assert_pipeline_error(c.put(url, json={}, headers=w.headers()), 422, "record_invalid")
    assert '{"backfill": {...}}' in msg
    msg = assert_pipeline_error(c.put(url, json=[1, 2], headers=w.headers()), 422, "record_invalid")
    assert '{"backfill": {...}}' in msg
    msg = assert_pipeline_error(
        c.put(url, content=b'{"backfill": ', headers={**w.headers(), "Content-Type": "application/json"}),
        400,
        "record_invalid",
    )
    assert "JSON" in msg
    assert get_backfill(c, w, bf["id"])["name"] == "january"


def test_edit_the_range_and_start_in_one_put(papi_client: TestClient, papi_world: PipelineWorld) -> None:
    c, w = papi_client, papi_world
    bf = create_backfill(c, w)
    got = ok(
        put_backfill(
            c, w, bf["id"], {"start_datetime": "2024-06-01", "end_datetime": "2024-06-10", "status": "initial"}
        )
    )
    assert got["status"] == "initial"
    assert (got["start_datetime"], got["end_datetime"]) == ("2024-06-01 00:00:00", "2024-06-10 00:00:00")
    assert got["metrics"]["total_runs"] == 10


def test_overlap_on_start_is_409_naming_the_other_backfill(papi_client: TestClient, papi_world: PipelineWorld) -> None:
    c, w = papi_client, papi_world
    first = create_backfill(c, w, {"start_datetime": "2024-01-01", "end_datetime": "2024-01-31", "status": "initial"})
    second = create_backfill(c, w, {"start_datetime": "2024-01-15", "end_datetime": "2024-02-15"})
    msg = assert_pipeline_error(put_backfill(c, w, second["id"], {"status": "initial"}), 409, "conflict")
    assert f"backfill {first['id']}" in msg
    assert "initial" in msg  # the other's status, in this dialect
    assert get_backfill(c, w, second["id"])["status"] is None
    # A refused PUT changes nothing, not even the settings it carried.
    edit = {"name": "moved", "end_datetime": "2024-03-01", "settings": {"paused": True}, "status": "initial"}
    assert_pipeline_error(put_backfill(c, w, second["id"], edit), 409, "conflict")
    unchanged = get_backfill(c, w, second["id"])
    assert (unchanged["name"], unchanged["end_datetime"], unchanged["settings"]["paused"]) == (
        second["name"],
        "2024-02-15 00:00:00",
        False,
    )
    # Moved out of the other's range, it starts.
    moved = ok(put_backfill(c, w, second["id"], {"start_datetime": "2024-02-01", "status": "initial"}))
    assert (moved["status"], moved["start_datetime"]) == ("initial", "2024-02-01 00:00:00")


def test_cancel_keeps_the_record_cancels_queued_runs_and_running_ones_finish(
    papi_client: TestClient, papi_world: PipelineWorld, db: Database
) -> None:
    c, w = papi_client, papi_world
    bf = create_backfill(c, w, {"start_datetime": "2024-01-01", "end_datetime": "2024-01-05", "status": "initial"})
    running = claim_one(db)  # one run running, three more materialized as queued, one not yet
    with db.write() as conn:
        assert queue.materialize(conn, backfill_store.get(conn, bf["id"]), 3, datetime.now(UTC)) == 3
    cancelled = ok(put_backfill(c, w, bf["id"], {"status": "cancelled"}))
    assert cancelled["status"] == "cancelled"
    assert DT.match(cancelled["completed_at"])
    counts = get_backfill(c, w, bf["id"], include_run_count="true")["run_status_counts"]
    assert counts == {"queued": 0, "running": 1, "completed": 0, "failed": 0, "cancelled": 4, "pending": 0}
    # The running run finishes and is recorded; nothing else starts.
    with db.write() as conn:
        assert queue.record_attempt(
            conn, running.key, "test-worker", queue.AttemptResult(ok=True, rows=1), datetime.now(UTC)
        )
        assert queue.claim(conn, "test-worker", 5, lease_seconds=60, now=datetime.now(UTC)) == []
    final = get_backfill(c, w, bf["id"], include_run_count="true")
    assert final["status"] == "cancelled"
    assert final["run_status_counts"]["completed"] == 1
    statuses = sorted(r["status"] for r in ok(pipeline_runs(c, w, bf["id"]), "pipeline_runs"))
    assert statuses == ["cancelled"] * 3 + ["completed"]  # the interval never materialized has no run


def test_delete_refuses_a_started_backfill_until_cancelled(papi_client: TestClient, papi_world: PipelineWorld) -> None:
    c, w = papi_client, papi_world
    created = create_backfill(c, w, {"start_datetime": "2023-01-01", "end_datetime": "2023-01-02"})
    deleted = ok(c.delete(f"/api/backfills/{created['id']}", headers=w.headers()))
    assert deleted["id"] == created["id"]
    assert_pipeline_error(c.get(f"/api/backfills/{created['id']}", headers=w.headers()), 404, "record_not_found")

    bf = create_backfill(c, w, {"start_datetime": "2024-01-01", "end_datetime": "2024-01-02", "status": "initial"})
    msg = assert_pipeline_error(c.delete(f"/api/backfills/{bf['id']}", headers=w.headers()), 422, "record_invalid")
    assert "cancel" in msg and "initial" in msg
    ok(put_backfill(c, w, bf["id"], {"status": "cancelled"}))
    ok(c.delete(f"/api/pipelines/{w.pipeline_uuid}/backfills/{bf['id']}", headers=w.headers()))
    assert_pipeline_error(c.delete(f"/api/backfills/{bf['id']}", headers=w.headers()), 404, "record_not_found")


# ---- the engine: retry, and block selection that really executes -------------------------------------


def test_retry_from_failed_requeues_only_the_failed_intervals(
    papi_client: TestClient, papi_world: PipelineWorld, db: Database, tmp_path: Path
) -> None:
    c, w = papi_client, papi_world
    journal, flag = tmp_path / "journal.txt", tmp_path / "fail.flag"
    flag.touch()
    variables = {"journal": str(journal), "fail_flag": str(flag), "fail_days": ["2024-01-02"]}
    bf = create_backfill(c, w, {"start_datetime": "2024-01-01", "end_datetime": "2024-01-03", "variables": variables})
    ok(put_backfill(c, w, bf["id"], {"status": "initial"}))
    failed = run_until_status(c, w, db, bf["id"], ("failed", "completed"))
    assert failed["status"] == "failed"
    assert DT.match(failed["failed_at"])
    assert failed["metrics"]["failed_runs"] == 1 and failed["metrics"]["completed_runs"] == 2
    [report] = failed["metrics"]["error_report"]
    assert report["data_date"] == "2024-01-02"
    assert "planned failure on 2024-01-02" in report["error"]

    flag.unlink()
    retried = ok(put_backfill(c, w, bf["id"], {"status": "running"}))
    assert retried["status"] == "initial"
    assert retried["failed_at"] is None
    done = run_until_status(c, w, db, bf["id"], ("completed", "failed"))
    assert done["status"] == "completed", done
    runs = ok(pipeline_runs(c, w, bf["id"]), "pipeline_runs")
    assert {r["data_date"]: r["attempt"] for r in runs} == {"2024-01-01": 1, "2024-01-02": 2, "2024-01-03": 1}
    lines = read_journal(journal)
    # Days 1 and 3 ran once (a, b, c); day 2 ran a and b twice and c once (it failed first).
    assert lines.count("a 2024-01-01") == 1 and lines.count("c 2024-01-03") == 1
    assert lines.count("a 2024-01-02") == 2 and lines.count("c 2024-01-02") == 1
    assert len(lines) == 3 + 3 + 5


def test_block_selection_executes_exactly_the_selected_blocks(
    papi_client: TestClient, papi_world: PipelineWorld, db: Database, tmp_path: Path
) -> None:
    c, w = papi_client, papi_world
    downstream, upstream = tmp_path / "downstream.txt", tmp_path / "upstream.txt"
    from_b = create_backfill(
        c,
        w,
        {
            "start_datetime": "2024-01-01",
            "end_datetime": "2024-01-02",
            "block_uuid": "b",
            "variables": {"journal": str(downstream)},
        },
    )
    up_to_b = create_backfill(
        c,
        w,
        {"start_datetime": "2024-02-01", "end_datetime": "2024-02-02", "variables": {"journal": str(upstream)}},
    )
    up_to_b = ok(put_backfill(c, w, up_to_b["id"], {"add_upstream_for_block_uuid": "b"}))
    assert up_to_b["settings"]["block_uuids"] == ["a", "b"]
    ok(put_backfill(c, w, from_b["id"], {"status": "initial"}))
    ok(put_backfill(c, w, up_to_b["id"], {"status": "initial"}))
    run_until_status(c, w, db, from_b["id"], ("completed", "failed"))
    assert get_backfill(c, w, from_b["id"])["status"] == "completed"
    if get_backfill(c, w, up_to_b["id"])["status"] != "completed":
        run_until_status(c, w, db, up_to_b["id"], ("completed", "failed"))
    assert get_backfill(c, w, up_to_b["id"])["status"] == "completed"
    assert read_journal(downstream) == ["b 2024-01-01", "b 2024-01-02", "c 2024-01-01", "c 2024-01-02"]
    assert read_journal(upstream) == ["a 2024-02-01", "a 2024-02-02", "b 2024-02-01", "b 2024-02-02"]


# ---- both dialects, one model ------------------------------------------------------------------------


def test_cross_dialect_visibility(papi_client: TestClient, papi_world: PipelineWorld) -> None:
    c, w = papi_client, papi_world
    bearer = {"Authorization": f"Bearer {w.tokens['owner']}"}
    here = create_backfill(c, w, {"start_datetime": "2024-01-01", "end_datetime": "2024-01-10"})
    there = c.get(f"/v1/teams/{w.team_id}/backfills/{here['id']}", headers=bearer)
    assert there.status_code == 200, there.text
    assert there.json()["data"]["transfer_backfill_id"] == here["id"]
    assert there.json()["data"]["status"] == "CREATED"
    assert there.json()["data"]["name"] == here["name"]
    ok(put_backfill(c, w, here["id"], {"status": "initial"}))
    assert (
        c.get(f"/v1/teams/{w.team_id}/backfills/{here['id']}", headers=bearer).json()["data"]["status"] == "SCHEDULED"
    )

    made = c.post(
        f"/v1/teams/{w.team_id}/transfers/{w.pipeline_id}/backfills",
        json={"range_start": "2024-03-01", "range_end": "2024-03-05"},
        headers=bearer,
    )
    assert made.status_code == 200, made.text
    team_id_ = made.json()["data"]["transfer_backfill_id"]
    seen = get_backfill(c, w, team_id_)
    assert seen["id"] == team_id_
    assert seen["status"] == "initial"  # SCHEDULED
    assert seen["start_datetime"] == "2024-03-01 00:00:00"
    assert seen["metrics"]["total_runs"] == 5
    # Cancelled here → CANCELLED there, with the removal recorded.
    ok(put_backfill(c, w, team_id_, {"status": "cancelled"}))
    data = c.get(f"/v1/teams/{w.team_id}/backfills/{team_id_}", headers=bearer).json()["data"]
    assert data["status"] == "CANCELLED"
    assert data["removed_user_id"] == w.users["owner"]


# ---- pipelines and runs ----------------------------------------------------------------------------------


def test_pipelines_with_their_blocks(papi_client: TestClient, papi_world: PipelineWorld, db: Database) -> None:
    c, w = papi_client, papi_world
    r = c.get("/api/pipelines", headers=w.headers())
    body = r.json()
    assert r.status_code == 200
    assert [p["uuid"] for p in body["pipelines"]] == [w.pipeline_uuid]  # not team B's
    assert body["metadata"] == {"count": 1, "next": False}
    p = ok(c.get(f"/api/pipelines/{w.pipeline_uuid}", headers=w.headers()), "pipeline")
    assert p["variables"] == {"region": "eu"}
    assert [(b["uuid"], b["upstream_blocks"], b["downstream_blocks"]) for b in p["blocks"]] == [
        ("a", [], ["b"]),
        ("b", ["a"], ["c"]),
        ("c", ["b"], []),
    ]
    assert DT.match(p["created_at"])
    assert p["load_error"] is None
    with db.write() as conn:  # its files stopped loading: the last good version stays
        conn.execute(
            pipelines.update().where(pipelines.c.id == w.pipeline_id).values(load_error="p.yaml: bad", version="v1")
        )
    p = ok(c.get(f"/api/pipelines/{w.pipeline_uuid}", headers=w.headers()), "pipeline")
    assert (p["load_error"], p["version"]) == ("p.yaml: bad", "v1")
    assert_pipeline_error(
        c.get(f"/api/pipelines/{w.other_pipeline_uuid}", headers=w.headers()), 404, "record_not_found"
    )


def test_run_count_preview_and_pipeline_runs(papi_client: TestClient, papi_world: PipelineWorld, db: Database) -> None:
    c, w = papi_client, papi_world
    bf = create_backfill(
        c,
        w,
        {
            "start_datetime": "2024-01-01 00:00:00",
            "end_datetime": "2024-01-11 00:00:00",
            "interval_type": "hour",
            "variables": {"region": "us", "extra": True},
        },
    )
    got = get_backfill(c, w, bf["id"], include_run_count="true", include_preview_runs="true")
    assert list(got)[-3:] == ["total_run_count", "run_status_counts", "preview_runs"]
    assert got["total_run_count"] == 241
    assert got["run_status_counts"]["pending"] == 241
    assert len(got["preview_runs"]) == 100
    # newest first (the default run order)
    assert got["preview_runs"][0] == {
        "start": "2024-01-11 00:00:00",
        "end": "2024-01-11 01:00:00",
        "data_date": "2024-01-11 00:00:00",
    }
    assert "preview_runs" not in get_backfill(c, w, bf["id"])

    ok(put_backfill(c, w, bf["id"], {"status": "initial"}))
    claim_one(db)
    with db.write() as conn:  # more runs, queued: a page of 10 has a next one
        assert queue.materialize(conn, backfill_store.get(conn, bf["id"]), 20, datetime.now(UTC)) == 20
    counted = get_backfill(c, w, bf["id"], include_run_count="true")
    assert counted["run_status_counts"]["running"] == 1
    assert sum(counted["run_status_counts"].values()) == counted["total_run_count"] == 241
    page = c.get("/api/pipeline_runs", params={"backfill_id": bf["id"], "_limit": 10}, headers=w.headers()).json()
    assert set(page) == {"pipeline_runs", "metadata"}
    assert page["metadata"]["next"] is True
    created = page["metadata"]["count"]
    assert created == 21  # materialized lazily: the claimed run and the 20 queued ones
    first = page["pipeline_runs"][0]
    assert first["execution_date"] == "2024-01-11 00:00:00"
    assert first["interval_end_datetime"] == "2024-01-11 01:00:00"
    assert first["backfill_id"] == bf["id"] and first["pipeline_uuid"] == w.pipeline_uuid
    assert first["status"] == "running" and first["attempt"] == 1
    assert first["variables"] == {"region": "us", "extra": True}
    assert first["pipeline_schedule_id"] is None
    last = c.get(
        "/api/pipeline_runs",
        params={"backfill_id": bf["id"], "_limit": 10, "_offset": created - 1},
        headers=w.headers(),
    ).json()
    assert len(last["pipeline_runs"]) == 1 and last["metadata"]["next"] is False
    assert_pipeline_error(c.get("/api/pipeline_runs", headers=w.headers()), 400, "record_invalid")
    assert_pipeline_error(
        c.get("/api/pipeline_runs", params={"backfill_id": 999999}, headers=w.headers()), 404, "record_not_found"
    )


def test_preview_of_a_not_started_backfill_leaves_out_what_reprocess_skips(
    papi_client: TestClient, papi_world: PipelineWorld, db: Database
) -> None:
    c, w = papi_client, papi_world
    done = create_backfill(c, w, {"start_datetime": "2024-01-01", "end_datetime": "2024-01-03", "status": "initial"})
    with db.write() as conn:
        claimed = queue.claim(conn, "test-worker", 3, lease_seconds=60, now=datetime.now(UTC))
        assert len(claimed) == 3
        for run in claimed:
            assert queue.record_attempt(conn, run.key, "test-worker", queue.AttemptResult(ok=True), datetime.now(UTC))
    assert get_backfill(c, w, done["id"])["status"] == "completed"
    body = {"start_datetime": "2024-01-01", "end_datetime": "2024-01-05", "settings": {"reprocess": "failed"}}
    later = create_backfill(c, w, body)
    preview = get_backfill(c, w, later["id"], include_preview_runs="true")["preview_runs"]
    assert [p["data_date"] for p in preview] == ["2024-01-05", "2024-01-04"]
    again = ok(put_backfill(c, w, later["id"], {"settings": {"reprocess": "all"}}))
    assert again["metrics"]["total_runs"] == 5
    preview = get_backfill(c, w, later["id"], include_preview_runs="true")["preview_runs"]
    assert [p["data_date"] for p in preview] == [f"2024-01-0{d}" for d in (5, 4, 3, 2, 1)]


# ---- errors ----------------------------------------------------------------------------------------------


def test_unexpected_errors_are_500_server_error_logged_without_a_trace(
    papi_client: TestClient,
    papi_world: PipelineWorld,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    c, w = papi_client, papi_world
    bf = create_backfill(c, w)

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(backfill_service, "get", boom)
    with caplog.at_level(logging.ERROR, logger="backfill.api"):
        r = c.get(f"/api/backfills/{bf['id']}", headers={**w.headers(), "X-Request-ID": "req-12345678"})
    msg = assert_pipeline_error(r, 500, "server_error")
    assert "secret internals" not in msg
    assert r.headers["X-Request-ID"] == "req-12345678"
    logged = [rec for rec in caplog.records if getattr(rec, "request_id", None) == "req-12345678"]
    assert logged and logged[0].exc_info is not None


def test_paths_without_a_route_and_rate_limits_use_this_dialects_envelope(db: Database) -> None:
    from tests.api.pipeline_conftest_helpers import build_pipeline_world

    w = build_pipeline_world(db)
    app = papi_make_app(db, papi_settings(rate_limit="4/minute"))
    with TestClient(app, raise_server_exceptions=False) as c:
        assert_pipeline_error(c.get("/api/no/such/route", headers=w.headers()), 404, "record_not_found")
        msg = assert_pipeline_error(c.patch("/api/backfills/1", headers=w.headers()), 405, "record_not_found")
        assert "GET" in msg
        assert_pipeline_error(c.get("/api/backfills/abc", headers=w.headers()), 404, "record_not_found")
        c.get("/api/pipelines", headers=w.headers())
        r = c.get("/api/pipelines", headers=w.headers())
        assert_pipeline_error(r, 429, "rate_limited")
        assert int(r.headers["Retry-After"]) >= 1
        # The team API keeps its own envelope.
        v1 = c.get(f"/v1/teams/{w.team_id}/backfills", headers={"Authorization": f"Bearer {w.tokens['owner']}"})
        assert v1.status_code == 429 and set(v1.json()) == {"meta", "error"}


def test_openapi_documents_every_pipeline_route_and_its_errors(papi_app: FastAPI) -> None:
    schema = papi_app.openapi()
    paths = schema["paths"]
    expected = {
        "/api/pipelines/{pipeline_uuid}/backfills": {"get", "post"},
        "/api/backfills": {"get"},
        "/api/backfills/{backfill_id}": {"get", "put", "delete"},
        "/api/pipelines/{pipeline_uuid}/backfills/{backfill_id}": {"get", "put", "delete"},
        "/api/pipelines": {"get"},
        "/api/pipelines/{pipeline_uuid}": {"get"},
        "/api/pipeline_runs": {"get"},
        "/api/sessions": {"post", "delete"},
    }
    assert {p for p in paths if p.startswith("/api/")} == set(expected)
    for path, methods in expected.items():
        assert set(paths[path]) == methods, path
        for method in methods:
            op = paths[path][method]
            assert "200" in op["responses"]
            for status in ("400", "401", "403", "404", "422", "429", "500"):
                ref = op["responses"][status]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/PipelineErrorEnvelope"), (path, method, status)
    components = schema["components"]
    assert set(components["schemas"]["PipelineErrorEnvelope"]["properties"]) == {"error"}
    backfill = components["schemas"]["PipelineBackfill"]
    assert set(SEED_KEYS) <= set(backfill["required"])
    schemes = components["securitySchemes"]
    assert schemes["PipelineApiKey"]["name"] == "X-API-KEY"
    assert schemes["OAuthTokenCookie"]["in"] == "cookie" and schemes["OAuthTokenCookie"]["name"] == "oauth_token"
    assert schemes["OAuthTokenHeader"]["name"] == "OAUTH-TOKEN"
    put = paths["/api/backfills/{backfill_id}"]["put"]
    assert {"PipelineApiKey"} in [set(s) for s in put["security"]] or any(
        "PipelineApiKey" in s for s in put["security"]
    )
