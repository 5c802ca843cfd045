"""``backfill.client`` against a mocked team API (httpx.MockTransport): envelope
unwrapping, the requests it sends, error mapping, retries and the wait loop."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from backfill.client import (
    BackfillApiError,
    BackfillClient,
    BackfillConfigError,
    BackfillConnectionError,
)

URL = "http://backfill.test:6789"
TOKEN = "secret-token"
TEAM = 3

Handler = Callable[[httpx.Request], httpx.Response]


def ok(data: Any, **meta: Any) -> httpx.Response:
    return httpx.Response(200, json={"meta": {"request_id": "req-00000001", **meta}, "data": data})


def fail(status: int, code: str, message: str, request_id: str = "req-failing1") -> httpx.Response:
    return httpx.Response(
        status,
        json={"meta": {"request_id": request_id}, "error": {"code": code, "message": message}},
        headers={"X-Request-ID": request_id},
    )


class Recorder:
    """A MockTransport handler answering from a route table and recording requests."""

    def __init__(self, routes: Mapping[tuple[str, str], Handler | list[httpx.Response] | httpx.Response]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.routes.get((request.method, request.url.path))
        if answer is None:
            return fail(404, "NOT_FOUND", f"no route {request.method} {request.url.path}")
        if isinstance(answer, list):
            return answer.pop(0)
        if isinstance(answer, httpx.Response):
            return answer
        return answer(request)

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


def make_client(recorder: Handler, url: str = URL) -> BackfillClient:
    client = BackfillClient(url, TOKEN, TEAM, transport=httpx.MockTransport(recorder))
    client._sleep = lambda _seconds: None
    return client


def backfill(backfill_id: int = 7, status: str = "RUNNING", **extra: Any) -> dict[str, Any]:
    return {"transfer_backfill_id": backfill_id, "status": status, "transfer_runs_total": 5, **extra}


TRANSFERS = [{"id": 1, "uuid": "daily_sales", "name": "Daily"}, {"id": 2, "uuid": "42", "name": "Numeric uuid"}]


def transfers_page(_request: httpx.Request) -> httpx.Response:
    return ok(TRANSFERS, total=len(TRANSFERS), limit=1000, offset=0)


# ---- envelope, URL, headers -----------------------------------------------------------------


def test_unwraps_the_envelope_and_sends_the_token() -> None:
    rec = Recorder({("GET", "/v1/teams/3/backfills/7"): ok(backfill())})
    assert make_client(rec).backfill(7) == backfill()
    request = rec.requests[0]
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert str(request.url) == f"{URL}/v1/teams/3/backfills/7"


@pytest.mark.parametrize("url", [f"{URL}/", f"{URL}/v1", f"{URL}/v1/", "backfill.test:6789"])
def test_base_url_is_normalized(url: str) -> None:
    rec = Recorder({("GET", "/v1/teams/3/backfills/7"): ok(backfill())})
    make_client(rec, url).backfill(7)
    assert rec.requests[0].url.path == "/v1/teams/3/backfills/7"


def test_constructor_rejects_bad_settings() -> None:
    with pytest.raises(BackfillConfigError, match="team id"):
        BackfillClient(URL, TOKEN, 0)
    with pytest.raises(BackfillConfigError, match="token"):
        BackfillClient(URL, "", 1)


# ---- pipelines ------------------------------------------------------------------------------


def test_pipelines_pages_through_every_transfer() -> None:
    pages = [
        ok([{"id": i, "uuid": f"p{i}"} for i in range(1000)], total=1001, limit=1000, offset=0),
        ok([{"id": 1000, "uuid": "p1000"}], total=1001, limit=1000, offset=1000),
    ]
    rec = Recorder({("GET", "/v1/teams/3/transfers"): pages})
    assert len(make_client(rec).pipelines()) == 1001
    assert [r.url.params["offset"] for r in rec.requests] == ["0", "1000"]


def test_pipeline_by_uuid_id_and_numeric_uuid() -> None:
    rec = Recorder(
        {
            ("GET", "/v1/teams/3/transfers"): transfers_page,
            ("GET", "/v1/teams/3/transfers/1"): ok(TRANSFERS[0]),
        }
    )
    client = make_client(rec)
    assert client.pipeline("daily_sales")["id"] == 1
    assert client.pipeline(1)["uuid"] == "daily_sales"
    assert client.pipeline("42")["id"] == 2  # a uuid that looks like a number is a uuid first
    assert client.pipeline("1")["uuid"] == "daily_sales"  # else a numeric string is an id


def test_unknown_pipeline_names_the_known_ones() -> None:
    rec = Recorder({("GET", "/v1/teams/3/transfers"): transfers_page})
    with pytest.raises(BackfillApiError) as info:
        make_client(rec).pipeline("nope")
    assert info.value.status == 404
    assert info.value.code == "NOT_FOUND"
    assert "'nope'" in info.value.message and "daily_sales" in info.value.message


# ---- backfills ------------------------------------------------------------------------------


def test_create_backfill_resolves_the_uuid_and_sends_only_given_fields() -> None:
    rec = Recorder(
        {
            ("GET", "/v1/teams/3/transfers"): transfers_page,
            ("POST", "/v1/teams/3/transfers/1/backfills"): ok(backfill(status="SCHEDULED")),
        }
    )
    created = make_client(rec).create_backfill(
        "daily_sales",
        "2024-01-01",
        "2024-01-31",
        interval_type="hour",
        interval_units=4,
        variables={"region": "eu", "n": 5},
        max_active_runs=2,
        block_uuids=("extract", "load"),
        idempotency_key="key-1",
    )
    assert created["status"] == "SCHEDULED"
    post = rec.requests[-1]
    assert post.headers["Idempotency-Key"] == "key-1"
    assert rec.body() == {
        "range_start": "2024-01-01",
        "range_end": "2024-01-31",
        "interval_type": "hour",
        "interval_units": 4,
        "variables": {"region": "eu", "n": 5},
        "max_active_runs": 2,
        "block_uuids": ["extract", "load"],
    }


def test_create_with_a_numeric_id_does_not_list_transfers() -> None:
    rec = Recorder({("POST", "/v1/teams/3/transfers/9/backfills"): ok(backfill())})
    make_client(rec).create_backfill(9, "2024-01-01", "2024-01-02", cron="0 6 * * *", interval_type="custom")
    assert len(rec.requests) == 1
    assert "Idempotency-Key" not in rec.requests[0].headers
    assert rec.body()["cron"] == "0 6 * * *"


def test_dry_run_posts_to_the_dry_run_route() -> None:
    preview = {"transfer_runs_total": 3, "intervals": [], "skipped_intervals": []}
    rec = Recorder({("POST", "/v1/teams/3/transfers/1/backfills:dry_run"): ok(preview)})
    assert make_client(rec).dry_run(1, "2024-01-01", "2024-01-03", reprocess="failed") == preview
    assert rec.body()["reprocess"] == "failed"


def test_create_and_dry_run_send_the_same_body_and_refuse_unknown_settings() -> None:
    routes = {
        ("POST", "/v1/teams/3/transfers/1/backfills"): ok(backfill()),
        ("POST", "/v1/teams/3/transfers/1/backfills:dry_run"): ok({}),
    }
    rec = Recorder(routes)
    client = make_client(rec)
    client.create_backfill(1, "2024-01-01", "2024-01-02", interval_units=None, variables={"k": 1}, block_uuids=("a",))
    client.dry_run(1, "2024-01-01", "2024-01-02", interval_units=None, variables={"k": 1}, block_uuids=("a",))
    bodies = [json.loads(r.content) for r in rec.requests]
    assert bodies[0] == bodies[1]
    assert bodies[0] == {
        "range_start": "2024-01-01",
        "range_end": "2024-01-02",
        "interval_type": "day",
        "interval_units": None,
        "variables": {"k": 1},
        "block_uuids": ["a"],
    }
    with pytest.raises(TypeError, match="colour"):
        client.dry_run(1, "2024-01-01", "2024-01-02", colour="red")  # type: ignore[call-arg]


def test_backfills_filters() -> None:
    rec = Recorder(
        {
            ("GET", "/v1/teams/3/backfills"): lambda _r: ok([backfill()], total=1, limit=100, offset=0),
            ("GET", "/v1/teams/3/transfers"): transfers_page,
        }
    )
    client = make_client(rec)
    assert client.backfills() == [backfill()]
    assert "status" not in rec.requests[-1].url.params
    client.backfills(status=["failed", "running"], pipeline="daily_sales", limit=10, offset=20)
    params = rec.requests[-1].url.params
    assert params["status"] == "FAILED,RUNNING"
    assert params["transfer_id"] == "1"
    assert (params["limit"], params["offset"]) == ("10", "20")
    client.backfills(status="all")
    assert rec.requests[-1].url.params["status"] == "CREATED,SCHEDULED,RUNNING,COMPLETED,FAILED,CANCELLED"


@pytest.mark.parametrize(
    ("method", "args", "body"),
    [
        ("cancel", (), {"status": "CANCELLED"}),
        ("retry", (), {"status": "SCHEDULED"}),
        ("pause", (), {"paused": True}),
        ("resume", (), {"paused": False}),
        ("set_max_active_runs", (8,), {"max_active_runs": 8}),
        ("rename", ("new name",), {"name": "new name"}),
    ],
)
def test_actions_patch_the_backfill(method: str, args: tuple[Any, ...], body: dict[str, Any]) -> None:
    rec = Recorder({("PATCH", "/v1/teams/3/backfills/7"): ok(backfill())})
    assert getattr(make_client(rec), method)(7, *args) == backfill()
    assert rec.body() == body


# ---- runs and logs ------------------------------------------------------------------------------


def test_runs_run_and_logs() -> None:
    run = {"id": 11, "status": "COMPLETED"}
    rec = Recorder(
        {
            ("GET", "/v1/teams/3/backfills/7/runs"): ok([run], total=1, limit=50, offset=0),
            ("GET", "/v1/teams/3/transfer_runs/11"): ok({**run, "query_details": []}),
            ("GET", "/v1/teams/3/transfer_runs/11/logs"): ok(
                {"transfer_run_id": 11, "content": "b", "offset": 1, "next_offset": 2, "complete": True}
            ),
        }
    )
    client = make_client(rec)
    assert client.runs(7, status="failed,cancelled", issues_only=True, limit=50) == [run]
    params = rec.requests[-1].url.params
    assert params["status"] == "FAILED,CANCELLED"
    assert params["filter_issues_only"] == "true"
    assert params["limit"] == "50"
    client.runs(7)
    assert "filter_issues_only" not in rec.requests[-1].url.params
    assert client.run(11)["query_details"] == []
    assert client.logs(11, offset=1)["next_offset"] == 2
    assert rec.requests[-1].url.params["offset"] == "1"


# ---- errors --------------------------------------------------------------------------------------


def test_error_envelope_becomes_backfill_api_error() -> None:
    message = "the backfill is COMPLETED, a final status; it can no longer change"
    rec = Recorder({("PATCH", "/v1/teams/3/backfills/7"): fail(422, "UNPROCESSABLE_ENTITY", message, "rid-12345678")})
    with pytest.raises(BackfillApiError) as info:
        make_client(rec).cancel(7)
    err = info.value
    assert (err.status, err.code, err.message, err.request_id) == (422, "UNPROCESSABLE_ENTITY", message, "rid-12345678")
    assert str(err) == f"{message} (UNPROCESSABLE_ENTITY, HTTP 422)"


def test_error_description_is_kept_on_one_line() -> None:
    response = httpx.Response(
        409,
        json={
            "meta": {"request_id": "r-1234567"},
            "error": {"code": "CONFLICT_ERROR", "message": "overlap", "description": "backfill 3\ncovers it"},
        },
    )
    rec = Recorder({("POST", "/v1/teams/3/transfers/1/backfills"): response})
    with pytest.raises(BackfillApiError) as info:
        make_client(rec).create_backfill(1, "2024-01-01", "2024-01-02")
    assert info.value.code == "CONFLICT_ERROR"
    assert info.value.message == "overlap: backfill 3 covers it"


def test_non_json_error_keeps_the_status() -> None:
    rec = Recorder({("GET", "/v1/teams/3/backfills/7"): httpx.Response(502, text="<html>Bad gateway</html>")})
    with pytest.raises(BackfillApiError) as info:
        make_client(rec).backfill(7)
    assert info.value.status == 502
    assert info.value.code == "INTERNAL_SERVER_ERROR"
    assert "HTTP 502" in info.value.message and "Bad gateway" in info.value.message


def test_a_success_without_envelope_is_an_error() -> None:
    rec = Recorder({("GET", "/v1/teams/3/backfills/7"): httpx.Response(200, json={"backfill": {}})})
    with pytest.raises(BackfillApiError) as info:
        make_client(rec).backfill(7)
    assert info.value.code == "INVALID_RESPONSE"


@pytest.mark.parametrize(
    ("exc", "text"),
    [(httpx.ConnectError("Connection refused"), "cannot reach"), (httpx.ReadTimeout("slow"), "did not answer")],
)
def test_transport_errors_name_the_url(exc: Exception, text: str) -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        raise exc

    with pytest.raises(BackfillConnectionError) as info:
        make_client(handler).backfill(7)
    assert URL in str(info.value) and text in str(info.value)
    assert info.value.url == URL


def test_rate_limited_requests_are_retried_after_retry_after() -> None:
    limited = httpx.Response(
        429,
        json={"meta": {"request_id": "r-12345678"}, "error": {"code": "TOO_MANY_REQUESTS", "message": "slow down"}},
        headers={"Retry-After": "2"},
    )
    rec = Recorder({("GET", "/v1/teams/3/backfills/7"): [limited, limited, ok(backfill())]})
    client = make_client(rec)
    slept: list[float] = []
    client._sleep = slept.append
    assert client.backfill(7) == backfill()
    assert slept == [2.0, 2.0]


def test_rate_limit_gives_up_after_a_few_tries() -> None:
    limited = fail(429, "TOO_MANY_REQUESTS", "slow down")
    rec = Recorder({("GET", "/v1/teams/3/backfills/7"): [limited] * 10})
    with pytest.raises(BackfillApiError) as info:
        make_client(rec).backfill(7)
    assert info.value.code == "TOO_MANY_REQUESTS"
    assert len(rec.requests) == 4


def test_unavailable_create_without_idempotency_key_is_not_repeated() -> None:
    down = fail(503, "SERVICE_UNAVAILABLE", "the database is unavailable; retry later")
    rec = Recorder({("POST", "/v1/teams/3/transfers/1/backfills"): [down, ok(backfill())]})
    with pytest.raises(BackfillApiError) as info:
        make_client(rec).create_backfill(1, "2024-01-01", "2024-01-02")
    assert info.value.status == 503
    assert len(rec.requests) == 1
    rec = Recorder({("POST", "/v1/teams/3/transfers/1/backfills"): [down, ok(backfill())]})
    assert make_client(rec).create_backfill(1, "2024-01-01", "2024-01-02", idempotency_key="k")["status"] == "RUNNING"
    assert len(rec.requests) == 2


# ---- wait ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("final", ["COMPLETED", "FAILED", "CANCELLED"])
def test_wait_polls_until_finished(final: str) -> None:
    states = [backfill(status=s) for s in ("SCHEDULED", "RUNNING", "RUNNING", final)]
    rec = Recorder({("GET", "/v1/teams/3/backfills/7"): [ok(s) for s in states]})
    client = make_client(rec)
    slept: list[float] = []
    client._sleep = slept.append
    seen: list[str] = []
    result = client.wait(7, poll=0.25, on_progress=lambda bf: seen.append(bf["status"]))
    assert result["status"] == final
    assert seen == ["SCHEDULED", "RUNNING", "RUNNING", final]
    assert slept == [0.25, 0.25, 0.25]


def test_wait_times_out() -> None:
    rec = Recorder({("GET", "/v1/teams/3/backfills/7"): lambda _r: ok(backfill(status="RUNNING"))})
    with pytest.raises(TimeoutError, match="still RUNNING"):
        make_client(rec).wait(7, timeout=0)


def test_wait_propagates_api_errors() -> None:
    rec = Recorder({})
    with pytest.raises(BackfillApiError) as info:
        make_client(rec).wait(7)
    assert info.value.status == 404


# ---- from_environment -----------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("BACKFILL_URL", "BACKFILL_TOKEN", "BACKFILL_TEAM_ID"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def write_credentials(path: Path, **values: Any) -> Path:
    creds = {"url": "http://127.0.0.1:6789", "team_id": 1, "user_id": 1, "email": "o@x", "token": "file-token"}
    creds.update(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(creds))
    return path


def test_from_environment_reads_the_environment(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("BACKFILL_URL", "http://example.test:1234/")
    clean_env.setenv("BACKFILL_TOKEN", "env-token")
    clean_env.setenv("BACKFILL_TEAM_ID", "5")
    client = BackfillClient.from_environment(tmp_path / "absent.json")
    assert (client.url, client.team_id) == ("http://example.test:1234", 5)
    assert client._http.headers["Authorization"] == "Bearer env-token"


def test_from_environment_reads_the_credentials_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = write_credentials(tmp_path / ".backfill" / "credentials.json")
    clean_env.chdir(tmp_path)
    client = BackfillClient.from_environment()
    assert (client.url, client.team_id) == ("http://127.0.0.1:6789", 1)
    assert client._http.headers["Authorization"] == "Bearer file-token"
    # the environment wins field by field, arguments win over both
    clean_env.setenv("BACKFILL_TOKEN", "env-token")
    client = BackfillClient.from_environment(path, team_id=4)
    assert client._http.headers["Authorization"] == "Bearer env-token"
    assert (client.url, client.team_id) == ("http://127.0.0.1:6789", 4)


@pytest.mark.usefixtures("clean_env")
def test_from_environment_without_settings_names_both_sources(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    with pytest.raises(BackfillConfigError) as info:
        BackfillClient.from_environment(path)
    message = str(info.value)
    for name in ("BACKFILL_URL", "BACKFILL_TOKEN", "BACKFILL_TEAM_ID", str(path), "backfill serve"):
        assert name in message


@pytest.mark.usefixtures("clean_env")
def test_from_environment_reports_bad_files_and_team_ids(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    path.write_text("{not json")
    with pytest.raises(BackfillConfigError, match="cannot read credentials file"):
        BackfillClient.from_environment(path)
    write_credentials(path, team_id="abc")
    with pytest.raises(BackfillConfigError, match="team id must be an integer"):
        BackfillClient.from_environment(path)
    write_credentials(path, token=None)
    with pytest.raises(BackfillConfigError, match="BACKFILL_TOKEN"):
        BackfillClient.from_environment(path)
