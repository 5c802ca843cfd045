"""The scheduler: brings back runs of lost workers (lease expiry).

Materialization happens where capacity frees up — inside the claim transaction
(``store.queue.claim``) — so the scheduler's only periodic duty is lease expiry.
Several schedulers may run at once (PostgreSQL): expiry locks rows with SKIP LOCKED
and is fenced on the attempt, so each expired run is handled exactly once.
"""

from __future__ import annotations

import logging
import threading

from backfill.engine.backoff import Backoff, is_transient
from backfill.services.health import ComponentReporter
from backfill.store import queue
from backfill.store.clock import utcnow
from backfill.store.db import Database

log = logging.getLogger("backfill.scheduler")


class Scheduler:
    def __init__(self, db: Database, *, interval_seconds: float = 1.0, health: ComponentReporter | None = None) -> None:
        self.db = db
        self.interval_seconds = interval_seconds
        self.health = health or ComponentReporter(None, "scheduler")
        self.backoff = Backoff("scheduler", log)

    def tick(self) -> int:
        """One pass; returns how many runs it expired."""
        with self.db.write() as conn:
            expired = queue.expire_leases(conn, utcnow())
        for key in expired:
            log.warning("run %s attempt %s: lease expired", key.run_id, key.attempt)
        return len(expired)

    def run(self, stop: threading.Event) -> None:
        self.health.ready()
        while not stop.is_set():
            try:
                self.tick()
            except Exception as exc:
                wait = self.backoff.failed(exc)
                reason = "database unavailable" if is_transient(exc) else "failing"
                self.health.not_ready(f"{reason}: {type(exc).__name__}")
                stop.wait(wait)
                continue
            if self.backoff.failing:
                self.backoff.succeeded()
                self.health.ready()
            stop.wait(self.interval_seconds)
