"""The runtime of ``serve`` / ``worker``: a component that dies is restarted, and
``/readyz`` answers 503 naming it until it runs again."""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient
from tests.engine.procs import wait_for

from backfill.app import create_app
from backfill.config import Settings
from backfill.engine.runtime import Component, Runtime, build_runtime
from backfill.services.health import HealthRegistry
from backfill.store.db import Database


class Fragile:
    """A component body that dies on its first ``deaths`` starts, then runs until stopped."""

    def __init__(self, deaths: int) -> None:
        self.deaths = deaths
        self.starts = 0
        self.release = threading.Event()  # set: the next start survives

    def __call__(self, stop: threading.Event) -> None:
        self.starts += 1
        if self.starts <= self.deaths and not self.release.is_set():
            raise RuntimeError(f"boom {self.starts}")
        stop.wait()


def test_a_component_that_dies_is_restarted_and_reported_until_it_runs() -> None:
    fragile = Fragile(deaths=2)
    steady = Fragile(deaths=0)
    runtime = Runtime([Component("worker", fragile), Component("scheduler", steady)])
    runtime.start()
    try:
        wait_for(lambda: fragile.starts == 3 and runtime.health.problems() == [], timeout=30)
        assert runtime.restarts == 2
        assert steady.starts == 1  # the others are left alone
    finally:
        runtime.shutdown(timeout=5)


def test_readyz_is_503_naming_a_dead_component_until_it_is_back(db: Database) -> None:
    fragile = Fragile(deaths=10**6)
    runtime = Runtime([Component("worker", fragile), Component("scheduler", Fragile(deaths=0))])
    app = create_app(db, Settings(secret_key="test", rate_limit="100000/minute"))
    app.state.health = runtime.health
    runtime.start()
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            wait_for(lambda: fragile.starts >= 1 and bool(runtime.health.problems()), timeout=10)
            response = client.get("/readyz")
            assert response.status_code == 503, response.text
            error = response.json()["error"]
            assert error["code"] == "SERVICE_UNAVAILABLE"
            assert "worker: restarting after it died: RuntimeError: boom" in error["message"]
            assert "scheduler" not in error["message"]
            assert client.get("/healthz").status_code == 200  # the process itself is up
            fragile.release.set()
            wait_for(lambda: client.get("/readyz").status_code == 200, timeout=30)
    finally:
        runtime.shutdown(timeout=5)


def test_readyz_names_a_component_in_a_database_outage(db: Database) -> None:
    health = HealthRegistry()
    app = create_app(db, Settings(secret_key="test", rate_limit="100000/minute"))
    app.state.health = health
    with TestClient(app, raise_server_exceptions=False) as client:
        health.ready("worker")
        assert client.get("/readyz").status_code == 200
        health.not_ready("worker", "database unavailable: OperationalError")
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["error"]["message"] == "not ready: worker: database unavailable: OperationalError"


def test_readyz_names_the_database_when_it_is_unreachable() -> None:
    down = Database("postgresql://nobody@127.0.0.1:1/nothing")
    app = create_app(down, Settings(secret_key="test", rate_limit="100000/minute"))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/readyz")
    down.dispose()
    assert response.status_code == 503
    assert response.json()["error"]["message"].startswith("not ready: database: unreachable")


def test_no_worker_component_with_zero_workers(db: Database) -> None:
    settings = Settings(secret_key="test")
    assert build_runtime(db, settings, workers=0).names == ["scheduler"]
    assert build_runtime(db, settings, workers=2, scheduler=False).names == ["worker"]
    assert build_runtime(db, settings, workers=2).names == ["scheduler", "worker"]
