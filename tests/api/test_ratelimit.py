"""Rate limits keyed on who is asking (docs/api.md "Limits") and shared through Redis (§9).

An unverified credential value is never a key: random bearers, tokens of nobody and bad
session JWTs all spend the client address's budget. A verified token spends its user's.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from tests.cli.test_serve import free_port, healthy
from tests.engine.procs import wait_for

from backfill.api.ratelimit import RateLimitConfigError, window_store
from backfill.app import create_app
from backfill.config import SettingsError, load_settings
from backfill.domain.model import Scope
from backfill.store import auth
from backfill.store.db import Database

from .conftest import World, assert_error, assert_ok, bearer, make_settings

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def limited(db: Database) -> Iterator[TestClient]:
    with TestClient(create_app(db, make_settings(rate_limit="3/minute")), raise_server_exceptions=False) as c:
        yield c


def remaining(response: httpx.Response) -> int:
    return int(response.headers["X-RateLimit-Remaining"])


def test_random_bearers_share_the_address_budget(limited: TestClient, world: World) -> None:
    """Today every random bearer got a fresh bucket: password and token guessing unlimited."""
    url = f"/v1/teams/{world.team_id}/backfills"
    seen = [remaining(limited.get(url, headers=bearer(secrets.token_urlsafe(16)))) for _ in range(3)]
    assert seen == [2, 1, 0]
    assert_error(limited.get(url, headers=bearer(secrets.token_urlsafe(16))), 429, "TOO_MANY_REQUESTS")
    assert_error(limited.get(url, headers={"OAUTH-TOKEN": "guess"}), 429, "TOO_MANY_REQUESTS")
    assert_error(limited.get(url, cookies={"oauth_token": "a.b.c"}), 429, "TOO_MANY_REQUESTS")
    assert_error(limited.get(url, headers=world.auth("expired")), 429, "TOO_MANY_REQUESTS")
    # a verified token has its own budget, not the address's
    assert_ok(limited.get(url, headers=world.auth("owner")))


def test_a_users_tokens_share_one_budget(limited: TestClient, db: Database, world: World) -> None:
    with db.write() as conn:
        second = auth.create_token(conn, world.users["editor"], scopes=(Scope.READ,)).secret
    url = f"/v1/teams/{world.team_id}/backfills/{world.backfill_id}"
    assert remaining(limited.get(url, headers=world.auth("editor"))) == 2
    assert remaining(limited.get(url, headers=bearer(second))) == 1
    assert remaining(limited.get("/v1/me", headers=world.auth("read_only"))) == 0  # also the editor's
    assert_error(limited.get(url, headers=bearer(second)), 429, "TOO_MANY_REQUESTS")
    assert remaining(limited.get(url, headers=world.auth("viewer"))) == 2  # another user


def test_an_unknown_storage_or_limit_is_refused_naming_the_setting() -> None:
    with pytest.raises(SettingsError, match="BACKFILL_RATE_LIMIT_STORAGE"):
        load_settings(rate_limit_storage="memcached://127.0.0.1:11211")
    with pytest.raises(SettingsError, match="BACKFILL_SIGN_IN_RATE_LIMIT"):
        load_settings(sign_in_rate_limit="ten a minute")
    with pytest.raises(RateLimitConfigError, match="BACKFILL_RATE_LIMIT_STORAGE"):
        window_store("memcached://127.0.0.1:11211")


def test_an_unreachable_redis_lets_requests_through(db: Database, world: World) -> None:
    """The limiter is not a single point of failure: requests are served (logged once)."""
    settings = make_settings(rate_limit="1/minute", rate_limit_storage=f"redis://127.0.0.1:{free_port()}/0")
    with TestClient(create_app(db, settings), raise_server_exceptions=False) as c:
        for _ in range(3):
            assert_ok(c.get("/v1/me", headers=world.auth("owner")))


# ---- two API processes, one Redis ---------------------------------------------------------------


def api_process(cwd: Path, port: int, db_url: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "backfill", "serve", "--db", db_url, "--port", str(port), "--workers", "0"]
    log = open(cwd / f"serve-{port}.log", "wb")  # noqa: SIM115  (closed with the process)
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=log)


@pytest.mark.slow
def test_two_api_processes_share_one_limit_through_redis(tmp_path: Path, db_url: str) -> None:
    prefix = f"backfill-test-{uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKFILL_")}
    env |= {
        "BACKFILL_RATE_LIMIT": "6/minute",
        "BACKFILL_RATE_LIMIT_STORAGE": REDIS_URL,
        "BACKFILL_RATE_LIMIT_KEY_PREFIX": prefix,
        "BACKFILL_SECRET_KEY": "shared-secret-of-the-two-api-processes",
    }
    ports = [free_port(), free_port()]
    procs: list[subprocess.Popen[bytes]] = []
    store = redis.Redis.from_url(REDIS_URL)
    try:
        # the first one migrates and writes the first-start credentials; then the second
        procs.append(api_process(tmp_path, ports[0], db_url, env))
        wait_for(lambda: healthy(ports[0]), timeout=60, interval=0.2)
        procs.append(api_process(tmp_path, ports[1], db_url, env))
        wait_for(lambda: healthy(ports[1]), timeout=60, interval=0.2)
        token = json.loads((tmp_path / ".backfill" / "credentials.json").read_text())["token"]
        headers = bearer(token)
        seen = []
        for i in range(6):  # alternate between the processes: one window
            r = httpx.get(f"http://127.0.0.1:{ports[i % 2]}/v1/me", headers=headers, timeout=10)
            assert r.status_code == 200, r.text
            seen.append(remaining(r))
        assert seen == [5, 4, 3, 2, 1, 0]
        for port in ports:
            r = httpx.get(f"http://127.0.0.1:{port}/v1/me", headers=headers, timeout=10)
            assert r.status_code == 429, r.text
            assert r.json()["error"]["code"] == "TOO_MANY_REQUESTS"
            assert int(r.headers["Retry-After"]) >= 1
        assert list(store.scan_iter(f"{prefix}*"))  # the windows live in Redis
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
        keys = list(store.scan_iter(f"{prefix}*"))
        if keys:
            store.delete(*keys)
        store.close()
