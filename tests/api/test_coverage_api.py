"""``GET .../transfers/{id}/coverage`` through HTTP, the client method and ``backfill coverage``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
from fastapi.testclient import TestClient

from backfill.cli import backfills_cmd
from backfill.cli.main import run
from backfill.client import BackfillClient
from backfill.store import queue
from backfill.store.db import Database

from .conftest import World, assert_error, assert_ok


def finish_all(db: Database, fail_on: set[datetime] = frozenset()) -> None:  # type: ignore[assignment]
    now = datetime.now(UTC)
    while True:
        with db.write() as conn:
            runs = queue.claim(conn, "w", 50, lease_seconds=60, now=now)
        if not runs:
            return
        for r in runs:
            with db.write() as conn:
                queue.record_attempt(conn, r.key, "w", queue.AttemptResult(ok=r.interval_start not in fail_on), now)


def url(w: World, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"/v1/teams/{w.team_id}/transfers/{w.pipeline_id}/coverage?{query}"


@pytest.fixture
def history(client: TestClient, db: Database, world: World) -> World:  # noqa: ARG001 - the app migrates db
    """The world's backfill (2023-01-01..10, one run claimed) finished with Jan 4 failing."""
    with db.write() as conn:
        ok = queue.AttemptResult(ok=True)
        assert queue.record_attempt(conn, queue.RunKey(world.run_id, 1), "test-worker", ok, datetime.now(UTC))
    finish_all(db, fail_on={datetime(2023, 1, 4, tzinfo=UTC)})
    return world


def test_spans_counts_and_shape(client: TestClient, history: World) -> None:
    data = assert_ok(client.get(url(history, start="2022-12-30", end="2023-01-12"), headers=history.auth("viewer")))
    assert data["total"] == 14 and data["interval_type"] == "day" and data["timezone"] == "UTC"
    assert data["start"] == "2022-12-30T00:00:00Z" and data["end"] == "2023-01-13T00:00:00Z"
    assert data["counts"] == {"COMPLETED": 9, "FAILED": 1, "RUNNING": 0, "QUEUED": 0, "CANCELLED": 0, "MISSING": 4}
    assert [(s["status"], s["start"], s["last_start"], s["end"], s["count"]) for s in data["spans"]] == [
        ("MISSING", "2022-12-30T00:00:00Z", "2022-12-31T00:00:00Z", "2023-01-01T00:00:00Z", 2),
        ("COMPLETED", "2023-01-01T00:00:00Z", "2023-01-03T00:00:00Z", "2023-01-04T00:00:00Z", 3),
        ("FAILED", "2023-01-04T00:00:00Z", "2023-01-04T00:00:00Z", "2023-01-05T00:00:00Z", 1),
        ("COMPLETED", "2023-01-05T00:00:00Z", "2023-01-10T00:00:00Z", "2023-01-11T00:00:00Z", 6),
        ("MISSING", "2023-01-11T00:00:00Z", "2023-01-12T00:00:00Z", "2023-01-13T00:00:00Z", 2),
    ]
    assert {s["backfill_id"] for s in data["spans"] if s["status"] != "MISSING"} == {history.backfill_id}
    assert all(s["backfill_id"] is None for s in data["spans"] if s["status"] == "MISSING")


def test_hourly_series_of_a_daily_history_is_all_missing_but_midnights(client: TestClient, history: World) -> None:
    data = assert_ok(
        client.get(
            url(history, start="2023-01-01T00:00", end="2023-01-01T23:00", interval_type="hour"),
            headers=history.auth("viewer"),
        )
    )
    assert [(s["status"], s["count"]) for s in data["spans"]] == [("COMPLETED", 1), ("MISSING", 23)]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "2023-02-01", "end": "2023-01-01"}, "end"),
        ({"start": "soon", "end": "2023-01-01"}, "start"),
        ({"start": "2023-01-01", "end": "2023-01-02", "timezone": "Nowhere/City"}, "timezone"),
        ({"start": "2023-01-01", "end": "2033-01-01", "interval_type": "second"}, "end"),
    ],
)
def test_bad_series_is_400_naming_the_parameter(
    client: TestClient, world: World, params: dict[str, str], field: str
) -> None:
    error = assert_error(client.get(url(world, **params), headers=world.auth("viewer")), 400, "BAD_REQUEST")
    assert field in error["message"]


def test_required_parameters_and_other_teams(client: TestClient, world: World) -> None:
    assert_error(client.get(url(world, start="2023-01-01"), headers=world.auth("viewer")), 400, "BAD_REQUEST")
    other = f"/v1/teams/{world.team_id}/transfers/{world.other_pipeline_id}/coverage?start=2023-01-01&end=2023-01-02"
    assert_error(client.get(other, headers=world.auth("viewer")), 404, "NOT_FOUND")


def through(client: TestClient) -> httpx.MockTransport:
    """A transport that hands the client's requests to the app under test."""

    def handler(request: httpx.Request) -> httpx.Response:
        response: httpx.Response = client.request(
            request.method, request.url.raw_path.decode(), headers=dict(request.headers), content=request.content
        )
        return response

    return httpx.MockTransport(handler)


def test_client_and_cli(
    client: TestClient, history: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    api = BackfillClient("http://testserver", history.tokens["viewer"], history.team_id, transport=through(client))
    data = api.coverage("daily_sales", "2023-01-01", "2023-01-12")
    assert [s["status"] for s in data["spans"]] == ["COMPLETED", "FAILED", "COMPLETED", "MISSING"]

    monkeypatch.setattr(backfills_cmd, "_client", lambda *_: api)
    assert run(["coverage", "daily_sales", "--start", "2023-01-01", "--end", "2023-01-12", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == data
    assert run(["coverage", "daily_sales", "--start", "2023-01-01", "--end", "2023-01-12"]) == 0
    table = capsys.readouterr().out
    assert "12 intervals (UTC): 9 completed, 1 failed, 2 missing" in table
    assert "2023-01-04 00:00:00" in table and "MISSING" in table
    assert run(["coverage", "daily_sales", "--start", "2023-02-01", "--end", "2023-01-01"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: --end: end must not be before start") and "Traceback" not in error


def test_coverage_of_one_backfill(client: TestClient, db: Database, history: World) -> None:
    base = f"/v1/teams/{history.team_id}"
    # A later backfill over Jan 5-12 (reprocess all): the transfer's coverage shows it, the first one's does not.
    cancel = {"status": "CANCELLED"}
    assert_ok(client.patch(f"{base}/backfills/{history.backfill_id}", json=cancel, headers=history.auth("editor")))
    body = {"range_start": "2023-01-05", "range_end": "2023-01-12"}
    later = assert_ok(
        client.post(f"{base}/transfers/{history.pipeline_id}/backfills", json=body, headers=history.auth("editor"))
    )
    finish_all(db)
    mine = assert_ok(client.get(f"{base}/backfills/{history.backfill_id}/coverage", headers=history.auth("viewer")))
    assert mine["total"] == 10 and mine["transfer_id"] == history.pipeline_id
    assert [(s["status"], s["count"]) for s in mine["spans"]] == [("COMPLETED", 3), ("FAILED", 1), ("COMPLETED", 6)]
    theirs = assert_ok(
        client.get(f"{base}/backfills/{later['transfer_backfill_id']}/coverage", headers=history.auth("viewer"))
    )
    assert [(s["status"], s["count"]) for s in theirs["spans"]] == [("COMPLETED", 8)]
    assert_error(
        client.get(f"{base}/backfills/{history.other_backfill_id}/coverage", headers=history.auth("viewer")),
        404,
        "NOT_FOUND",
    )


def test_split_by_day_on_both_routes_and_a_bad_split_is_400(client: TestClient, history: World) -> None:
    viewer = history.auth("viewer")
    split = assert_ok(client.get(url(history, start="2022-12-31", end="2023-01-11", split="day"), headers=viewer))
    days = ["2022-12-31"] + [f"2023-01-{d:02}" for d in range(1, 12)]
    statuses = ["MISSING"] + ["COMPLETED"] * 3 + ["FAILED"] + ["COMPLETED"] * 6 + ["MISSING"]
    assert [(s["start"][:10], s["last_start"][:10], s["status"], s["count"]) for s in split["spans"]] == [
        (day, day, status, 1) for day, status in zip(days, statuses, strict=True)
    ]
    assert split["counts"]["COMPLETED"] == 9 and split["total"] == 12
    own = f"/v1/teams/{history.team_id}/backfills/{history.backfill_id}/coverage"
    assert [s["count"] for s in assert_ok(client.get(f"{own}?split=day", headers=viewer))["spans"]] == [1] * 10
    assert [s["count"] for s in assert_ok(client.get(own, headers=viewer))["spans"]] == [3, 1, 6]
    for bad in (url(history, start="2023-01-01", end="2023-01-02", split="week"), f"{own}?split=days"):
        error = assert_error(client.get(bad, headers=viewer), 400, "BAD_REQUEST")
        assert "split" in error["message"] and "day" in error["message"]


def test_client_and_cli_split(
    client: TestClient, history: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    api = BackfillClient("http://testserver", history.tokens["viewer"], history.team_id, transport=through(client))
    data = api.coverage("daily_sales", "2023-01-01", "2023-01-12", split="day")
    assert [s["count"] for s in data["spans"]] == [1] * 12
    assert [s["count"] for s in api.backfill_coverage(history.backfill_id, split="day")["spans"]] == [1] * 10
    assert [s["count"] for s in api.backfill_coverage(history.backfill_id)["spans"]] == [3, 1, 6]
    monkeypatch.setattr(backfills_cmd, "_client", lambda *_: api)
    argv = ["coverage", "daily_sales", "--start", "2023-01-01", "--end", "2023-01-12"]
    assert run([*argv, "--split", "day", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == data
    assert run([*argv, "--split", "hour"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "--split" in error and "Traceback" not in error
