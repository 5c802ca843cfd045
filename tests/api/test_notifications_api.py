# ruff: noqa: F811  (the papi_* fixtures are imported from pipeline_conftest_helpers and requested by name)
"""Webhooks through both dialects' create bodies, and ``GET .../backfills/{id}/notifications``."""

from __future__ import annotations

from fastapi.testclient import TestClient
from tests.api.pipeline_conftest_helpers import (  # noqa: F401  (fixtures requested by name)
    PipelineWorld,
    assert_pipeline_error,
    create_backfill,
    papi_app,
    papi_client,
    papi_world,
    put_backfill,
)

from backfill.store import backfills as store
from backfill.store.db import Database

from .conftest import World, assert_error, assert_ok

HOOK = {"url": "https://hooks.example.com/backfills", "events": ["cancelled"], "secret": "never-shown"}


def test_team_api_webhooks_and_their_notifications(client: TestClient, world: World) -> None:
    base = f"/v1/teams/{world.team_id}"
    editor, viewer = world.auth("editor"), world.auth("viewer")
    body = {"range_start": "2024-01-01", "range_end": "2024-01-31", "notify": [HOOK]}
    created = assert_ok(client.post(f"{base}/transfers/{world.pipeline_id}/backfills", json=body, headers=editor))
    backfill_id = created["transfer_backfill_id"]
    url = f"{base}/backfills/{backfill_id}/notifications"
    assert assert_ok(client.get(url, headers=viewer)) == []
    assert_ok(client.patch(f"{base}/backfills/{backfill_id}", json={"status": "CANCELLED"}, headers=editor))
    response = client.get(url, headers=viewer)
    (item,) = assert_ok(response)
    assert item["event"] == "cancelled" and item["url"] == HOOK["url"] and item["status"] == "PENDING"
    assert item["attempts"] == [] and item["next_attempt_time"] and item["delivered_time"] is None
    assert "never-shown" not in response.text
    assert_error(
        client.get(f"{base}/backfills/{world.other_backfill_id}/notifications", headers=viewer),
        404,
        "NOT_FOUND",
    )


def test_webhook_urls_are_validated_on_input(client: TestClient, world: World) -> None:
    path = f"/v1/teams/{world.team_id}/transfers/{world.pipeline_id}/backfills"
    for hook, words in [
        ({"url": "ftp://files.example.com/x"}, "notify[0].url must be an http or https URL"),
        ({"url": "https://x.example", "events": ["started"]}, "notify"),
        ({"url": "https://x.example", "headers": {}}, "notify"),
    ]:
        body = {"range_start": "2024-01-01", "range_end": "2024-01-31", "notify": [hook]}
        error = assert_error(client.post(path, json=body, headers=world.auth("editor")), 422, "UNPROCESSABLE_ENTITY")
        assert words in error["message"], error


def test_pipeline_api_settings_notify(papi_client: TestClient, papi_world: PipelineWorld, db: Database) -> None:
    body = {"start_datetime": "2024-01-01", "end_datetime": "2024-01-03", "settings": {"notify": [HOOK]}}
    created = create_backfill(papi_client, papi_world, body)
    with db.read() as conn:
        assert store.get(conn, created["id"])["notify"] == [HOOK]
    bad = {
        "start_datetime": "2024-01-01",
        "end_datetime": "2024-01-03",
        "settings": {"notify": [{"url": "gopher://x"}]},
    }
    r = papi_client.post(
        f"/api/pipelines/{papi_world.pipeline_uuid}/backfills", json={"backfill": bad}, headers=papi_world.headers()
    )
    assert "notify[0].url" in assert_pipeline_error(r, 422, "record_invalid")


def test_team_api_webhooks_change_until_the_backfill_is_final(client: TestClient, world: World) -> None:
    base = f"/v1/teams/{world.team_id}"
    editor = world.auth("editor")
    body = {"range_start": "2024-01-01", "range_end": "2024-01-31", "notify": [HOOK]}
    created = assert_ok(client.post(f"{base}/transfers/{world.pipeline_id}/backfills", json=body, headers=editor))
    path = f"{base}/backfills/{created['transfer_backfill_id']}"
    # shown without the secret; started backfills take a new list (it replaces the old one)
    assert created["notify"] == [{"url": HOOK["url"], "events": ["cancelled"], "has_secret": True}]
    assert created["status"] != "CREATED"
    other = {"url": "https://chat.example.com/hook", "events": ["failed", "completed"]}
    changed = assert_ok(client.patch(path, json={"notify": [other]}, headers=editor))
    assert changed["notify"] == [{**other, "has_secret": False}]
    assert "never-shown" not in client.get(path, headers=editor).text
    error = assert_error(
        client.patch(path, json={"notify": [{"url": "ftp://x.example"}]}, headers=editor), 422, "UNPROCESSABLE_ENTITY"
    )
    assert "notify[0].url" in error["message"]
    assert assert_ok(client.get(path, headers=editor))["notify"] == [{**other, "has_secret": False}]  # unchanged
    assert assert_ok(client.patch(path, json={"notify": []}, headers=editor))["notify"] == []
    assert_ok(client.patch(path, json={"status": "CANCELLED"}, headers=editor))
    assert_error(client.patch(path, json={"notify": [HOOK]}, headers=editor), 422, "UNPROCESSABLE_ENTITY")


def test_a_cancel_notifies_the_webhooks_set_after_the_start(client: TestClient, world: World) -> None:
    base = f"/v1/teams/{world.team_id}"
    editor = world.auth("editor")
    body = {"range_start": "2024-01-01", "range_end": "2024-01-31"}
    created = assert_ok(client.post(f"{base}/transfers/{world.pipeline_id}/backfills", json=body, headers=editor))
    path = f"{base}/backfills/{created['transfer_backfill_id']}"
    assert_ok(client.patch(path, json={"notify": [HOOK]}, headers=editor))
    assert_ok(client.patch(path, json={"status": "CANCELLED"}, headers=editor))
    (item,) = assert_ok(client.get(f"{path}/notifications", headers=editor))
    assert item["event"] == "cancelled" and item["url"] == HOOK["url"]


def test_pipeline_api_put_changes_settings_notify(
    papi_client: TestClient, papi_world: PipelineWorld, db: Database
) -> None:
    created = create_backfill(papi_client, papi_world)
    other = {"url": "https://chat.example.com/hook", "events": ["failed"]}
    # before, a PUT with settings.notify answered 200 and changed nothing
    assert (
        put_backfill(papi_client, papi_world, created["id"], {"settings": {"notify": [HOOK, other]}}).status_code == 200
    )
    with db.read() as conn:
        assert store.get(conn, created["id"])["notify"] == [HOOK, other]
    r = put_backfill(papi_client, papi_world, created["id"], {"settings": {"notify": [{"url": "gopher://x"}]}})
    assert "notify[0].url" in assert_pipeline_error(r, 422, "record_invalid")
    assert put_backfill(papi_client, papi_world, created["id"], {"settings": {"notify": []}}).status_code == 200
    with db.read() as conn:
        assert store.get(conn, created["id"])["notify"] is None
