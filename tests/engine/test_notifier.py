"""Webhook notifications end to end: the outbox written with the status change, delivery
to a local receiver (127.0.0.1) with a verified signature, retries while it answers 500,
and exactly one delivery per event after ``backfill serve`` is killed with -9 between the
status change and the delivery. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from tests.cli.test_serve import free_port, healthy
from tests.engine.procs import kill_tree, start_worker, wait_for
from tests.factories import add_pipeline, python_pipeline

from backfill.domain import notifications as n
from backfill.domain.errors import ValidationError
from backfill.domain.notifications import Webhook
from backfill.engine.notifier import Notifier
from backfill.services import backfills as svc
from backfill.services import notifications as notification_service
from backfill.services.actor import Actor
from backfill.store import queue
from backfill.store.db import Database
from backfill.store.tables import backfills, notifications

SECRET = "webhook-secret"
T0 = datetime(2030, 1, 1, tzinfo=UTC)


@dataclass
class Receiver:
    """What a webhook receiver on 127.0.0.1 got; it answers the queued codes, then 200."""

    port: int
    answers: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def documents(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]


@contextmanager
def receiving(port: int = 0, answers: list[int] | None = None) -> Iterator[Receiver]:
    state = Receiver(port=port, answers=list(answers or []))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            code = state.answers.pop(0) if state.answers else 200
            self.send_response(code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def finish(db: Database, backfill_id: int, *, fail: bool = False) -> None:
    while True:
        with db.write() as conn:
            runs = [r for r in queue.claim(conn, "w", 50, lease_seconds=60, now=T0) if r.backfill_id == backfill_id]
        if not runs:
            return
        for r in runs:
            with db.write() as conn:
                queue.record_attempt(conn, r.key, "w", queue.AttemptResult(ok=not fail, error="boom"), T0)


def outbox(db: Database) -> list[tuple[int, str, str, str]]:
    with db.read() as conn:
        rows = conn.execute(
            select(
                notifications.c.backfill_id, notifications.c.event, notifications.c.url, notifications.c.status
            ).order_by(notifications.c.id)
        ).all()
    return [tuple(r) for r in rows]


def test_the_outbox_is_written_with_the_status_change(db: Database, team: Actor) -> None:
    on_failure = Webhook("https://pipeline.example/failed", events=("failed",))
    pid = add_pipeline(db, team, python_pipeline("hooked", notify=(on_failure,)))
    mine = [{"url": "https://backfill.example/any", "secret": SECRET}]
    spec = svc.BackfillSpec(start="2024-01-01", end="2024-01-03", notify=mine, retries=0)
    done = svc.create(db, team, pid, spec, start=True)
    finish(db, done)
    assert outbox(db) == [(done, "completed", "https://backfill.example/any", "pending")]
    failing = svc.create(db, team, pid, svc.BackfillSpec(start="2024-02-01", end="2024-02-01", retries=0), start=True)
    finish(db, failing, fail=True)
    assert outbox(db)[1:] == [(failing, "failed", "https://pipeline.example/failed", "pending")]
    cancelled = svc.create(
        db, team, pid, svc.BackfillSpec(start="2024-03-01", end="2024-03-01", notify=mine), start=True
    )
    svc.cancel(db, team, cancelled)
    assert outbox(db)[2:] == [(cancelled, "cancelled", "https://backfill.example/any", "pending")]
    # A status change that rolls back leaves no notification behind.
    again = svc.create(db, team, pid, svc.BackfillSpec(start="2024-04-01", end="2024-04-01", notify=mine), start=True)

    def cancel_then_fail() -> None:
        with db.write() as conn:
            svc._cancel(conn, team, svc.get(db, team, again).row, T0)
            assert len(conn.execute(select(notifications.c.id)).all()) == 4  # written in this transaction
            raise RuntimeError("the transaction fails after the change")

    with pytest.raises(RuntimeError):
        cancel_then_fail()
    assert len(outbox(db)) == 3
    with db.read() as conn:
        assert conn.execute(select(backfills.c.status).where(backfills.c.id == again)).scalar() == "scheduled"


def test_bad_webhooks_are_refused_naming_the_field(db: Database, team: Actor, pipeline_id: int) -> None:
    spec = svc.BackfillSpec(start="2024-01-01", end="2024-01-03", notify=[{"url": "ftp://x.example/"}])
    with pytest.raises(ValidationError) as caught:
        svc.create(db, team, pipeline_id, spec, start=True)
    assert caught.value.field == "notify" and "http or https" in caught.value.message


class Clock:
    def __init__(self) -> None:
        self.now = T0 + timedelta(minutes=1)  # the runs finish at T0

    def __call__(self) -> datetime:
        return self.now


def test_signed_delivery_retried_while_the_receiver_answers_500(db: Database, team: Actor, pipeline_id: int) -> None:
    clock = Clock()
    with receiving(answers=[500, 500]) as receiver:
        hooks = [{"url": receiver.url, "secret": SECRET, "events": ["completed"]}]
        backfill_id = svc.create(
            db, team, pipeline_id, svc.BackfillSpec(start="2024-01-01", end="2024-01-02", notify=hooks), start=True
        )
        finish(db, backfill_id)
        notifier = Notifier(db, public_url="http://backfill.test:6789/", clock=clock)
        assert notifier.tick() == 1  # 500
        assert notifier.tick() == 0  # not due yet
        clock.now += timedelta(seconds=5)
        assert notifier.tick() == 1  # 500 again
        clock.now += timedelta(seconds=9)
        assert notifier.tick() == 0  # the second retry waits 10 s
        clock.now += timedelta(seconds=1)
        assert notifier.tick() == 1  # 200
        clock.now += timedelta(hours=1)
        assert notifier.tick() == 0  # delivered: never again
        notifier.http.close()
    assert len(receiver.received) == 3
    bodies = {body for _, body in receiver.received}
    assert len(bodies) == 1  # the same bytes every time
    for headers, body in receiver.received:
        assert n.verify(SECRET, body, headers["x-backfill-signature"])
        assert headers["content-type"] == "application/json"
    doc = receiver.documents()[0]
    assert doc["event"] == "completed" and doc["backfill"]["id"] == backfill_id
    assert doc["backfill"]["runs_completed"] == 2 and doc["backfill"]["status"] == "COMPLETED"
    assert doc["url"] == f"http://backfill.test:6789/#/backfills/{backfill_id}"
    assert doc["text"].startswith(f"Backfill #{backfill_id} ")
    ((row, attempts),) = notification_service.of_backfill(db, team, backfill_id)
    assert row["status"] == "delivered"
    assert [(a["attempt"], a["status_code"]) for a in attempts] == [(1, 500), (2, 500), (3, 200)]
    assert attempts[0]["error"].startswith("HTTP 500")


def test_an_unreachable_receiver_is_retried_and_the_loop_survives(db: Database, team: Actor, pipeline_id: int) -> None:
    port = free_port()  # nobody listens
    hooks = [{"url": f"http://127.0.0.1:{port}/hook"}]
    backfill_id = svc.create(
        db, team, pipeline_id, svc.BackfillSpec(start="2024-01-01", end="2024-01-01", notify=hooks), start=True
    )
    finish(db, backfill_id)
    clock = Clock()
    notifier = Notifier(db, public_url="http://h", clock=clock)
    assert notifier.tick() == 1
    ((row, attempts),) = notification_service.of_backfill(db, team, backfill_id)
    assert row["status"] == "pending" and attempts[0]["status_code"] is None and "Connect" in attempts[0]["error"]
    assert row["next_attempt_at"] == clock.now + timedelta(seconds=5)
    clock.now += timedelta(hours=25)
    assert notifier.tick() == 1
    ((row, _),) = notification_service.of_backfill(db, team, backfill_id)
    assert row["status"] == "failed"  # 24 hours of retries are over
    # A failing pass (the database gone) does not end the loop.
    stop = threading.Event()
    calls = []

    def broken() -> int:
        calls.append(1)
        if len(calls) >= 3:
            stop.set()
        raise OSError("database unreachable")

    notifier.tick = broken  # type: ignore[method-assign]
    notifier.run(stop)
    assert len(calls) == 3


# ---- a real server killed with -9 ------------------------------------------------------------


def serve(cwd: Path, db_url: str, port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "backfill", "serve", "--db", db_url, "--port", str(port), "--workers", "2"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKFILL_")}
    env["BACKFILL_SCHEDULER_INTERVAL_SECONDS"] = "0.2"
    log = open(cwd / "serve.log", "ab")  # noqa: SIM115
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)


def attempts_made(db: Database) -> int:
    with db.read() as conn:
        return sum(int(a) for a in conn.execute(select(notifications.c.attempts)).scalars())


@pytest.mark.slow
def test_one_delivery_per_event_after_kill_9_between_change_and_delivery(tmp_path: Path, db_url: str) -> None:
    receiver_port = free_port()
    hooks = [{"url": f"http://127.0.0.1:{receiver_port}/hook", "secret": SECRET}]
    port = free_port()
    first = serve(tmp_path, db_url, port)
    db = Database(db_url)
    try:
        wait_for(lambda: healthy(port), timeout=60, interval=0.3)
        creds = json.loads((tmp_path / ".backfill" / "credentials.json").read_text())
        actor = Actor(team_id=creds["team_id"], user_id=creds["user_id"])
        pid = add_pipeline(db, actor, python_pipeline("hooked"))
        done = svc.create(
            db, actor, pid, svc.BackfillSpec(start="2024-01-01", end="2024-01-03", notify=hooks), start=True
        )
        stopped = svc.create(
            db, actor, pid, svc.BackfillSpec(start="2025-01-01", end="2025-12-31", notify=hooks), start=True
        )
        svc.cancel(db, actor, stopped)
        wait_for(lambda: svc.get(db, actor, done).row["status"] == "completed", timeout=90, interval=0.2)
        # The server changed both statuses and tried to deliver (the receiver is not up yet).
        wait_for(lambda: attempts_made(db) >= 2, timeout=30, interval=0.2)
        kill_tree(first, signal.SIGKILL)
        assert first.returncode == -signal.SIGKILL
        with receiving(port=receiver_port) as receiver:
            port = free_port()
            second = serve(tmp_path, db_url, port)
            try:
                wait_for(lambda: [r[3] for r in outbox(db)] == ["delivered", "delivered"], timeout=60, interval=0.2)
                time.sleep(2)  # a few more notifier passes: nothing is sent twice
            finally:
                kill_tree(second, signal.SIGTERM)
    finally:
        if first.poll() is None:
            kill_tree(first, signal.SIGKILL)
        db.dispose()
    assert sorted((d["event"], d["backfill"]["id"]) for d in receiver.documents()) == [
        ("cancelled", stopped),
        ("completed", done),
    ]
    for headers, body in receiver.received:
        assert n.verify(SECRET, body, headers["x-backfill-signature"])


@pytest.mark.slow
def test_a_lone_worker_process_delivers_notifications(db: Database, db_url: str, team: Actor, pipeline_id: int) -> None:
    # Workers on other machines with no `serve` near them (or an API started with
    # --workers 0 elsewhere): `backfill worker` delivers too; --no-notify leaves it to others.
    with receiving() as receiver:
        hooks = [{"url": receiver.url, "events": ["completed"], "secret": SECRET}]
        spec = svc.BackfillSpec(start="2024-01-01", end="2024-01-02", notify=hooks)
        quiet = start_worker(db_url, extra=["--no-notify"])
        try:
            first = svc.create(db, team, pipeline_id, spec, start=True)
            wait_for(lambda: svc.get(db, team, first).row["status"] == "completed", timeout=90, interval=0.2)
            time.sleep(1.5)  # a notifier pass would have come by now
            assert receiver.received == [] and [r[3] for r in outbox(db)] == ["pending"]
        finally:
            kill_tree(quiet, signal.SIGTERM)
        worker = start_worker(db_url)
        try:
            wait_for(lambda: [r[3] for r in outbox(db)] == ["delivered"], timeout=60, interval=0.2)
        finally:
            kill_tree(worker, signal.SIGTERM)
    ((headers, body),) = receiver.received
    assert n.verify(SECRET, body, headers["x-backfill-signature"])
    assert json.loads(body)["backfill"]["id"] == first
