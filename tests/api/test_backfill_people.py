"""People on a backfill are named by e-mail (created_user_email, removed_user_email)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from .conftest import World, assert_ok


def test_creator_and_canceller_by_email(client: TestClient, world: World) -> None:
    base = f"/v1/teams/{world.team_id}"
    body = {"range_start": "2024-01-01", "range_end": "2024-01-31"}
    created = assert_ok(
        client.post(f"{base}/transfers/{world.pipeline_id}/backfills", json=body, headers=world.auth("editor"))
    )
    assert created["created_user_email"] == "editor@a.example" and created["removed_user_email"] is None
    backfill_id = created["transfer_backfill_id"]
    cancel = {"status": "CANCELLED"}
    cancelled = assert_ok(client.patch(f"{base}/backfills/{backfill_id}", json=cancel, headers=world.auth("owner")))
    assert cancelled["removed_user_email"] == "owner@a.example"
    listed = assert_ok(client.get(f"{base}/backfills?status=CANCELLED", headers=world.auth("viewer")))
    assert [(b["created_user_email"], b["removed_user_email"]) for b in listed] == [
        ("editor@a.example", "owner@a.example")
    ]
