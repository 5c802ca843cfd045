"""The scheduler: brings back runs of lost workers (lease expiry).

Materialization happens where capacity frees up — inside the claim transaction
(``store.queue.claim``) — so the scheduler's only periodic duty is lease expiry.
Several schedulers may run at once (PostgreSQL): expiry locks rows with SKIP LOCKED
and is fenced on the attempt, so each expired run is handled exactly once.
"""

from __future__ import annotations

import logging
import threading

from backfill.store import queue
from backfill.store.clock import utcnow
from backfill.store.db import Database

log = logging.getLogger("backfill.scheduler")


class Scheduler:
    def __init__(self, db: Database, *, interval_seconds: float = 1.0) -> None:
        self.db = db
        self.interval_seconds = interval_seconds

    def tick(self) -> int:
        """One pass; returns how many runs it expired."""
        with self.db.write() as conn:
            expired = queue.expire_leases(conn, utcnow())
        for key in expired:
            log.warning("run %s attempt %s: lease expired", key.run_id, key.attempt)
        return len(expired)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # a database hiccup must not kill the scheduler thread
                log.exception("scheduler tick failed")
            stop.wait(self.interval_seconds)
