"""The notifier: delivers the notification outbox (``store.notifications``) to webhooks.

Each pass claims the notifications that are due (with a lease), POSTs them one by one
outside any transaction, and records every attempt. A 2xx answer delivers; anything else
(another status, a refused connection, a timeout) is retried 5 s later, then 10, 20, ...
for 24 hours. A notifier killed mid-delivery leaves its claims to the next one once their
lease expires: delivery is at least once (``X-Backfill-Delivery`` lets a receiver drop a
repeat). The loop never dies: a failing pass is logged once per outage and retried with
a capped backoff.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

import httpx

from backfill import __version__
from backfill.domain import notifications as domain
from backfill.store import notifications as outbox
from backfill.store.clock import utcnow
from backfill.store.db import Database

log = logging.getLogger("backfill.notifier")

MAX_BACKOFF_SECONDS = 5.0


class Notifier:
    def __init__(
        self,
        db: Database,
        *,
        public_url: str,
        interval_seconds: float = 1.0,
        batch: int = 20,
        lease_seconds: float = 60.0,
        timeout_seconds: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.clock = clock
        self.public_url = public_url.rstrip("/")
        self.interval_seconds = interval_seconds
        self.batch = batch
        self.lease_seconds = lease_seconds
        self.http = httpx.Client(timeout=timeout_seconds, transport=transport, follow_redirects=False)

    def link(self, backfill_id: int) -> str:
        """The backfill's page in the web UI."""
        return f"{self.public_url}/#/backfills/{backfill_id}"

    def request(self, due: outbox.Due) -> tuple[bytes, dict[str, str]]:
        """The exact body and headers of a delivery (the same for every attempt)."""
        body = domain.body(json.loads(due.summary), self.link(due.backfill_id))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"backfill/{__version__}",
            "X-Backfill-Delivery": str(due.id),
        }
        if due.secret:
            headers[domain.SIGNATURE_HEADER] = domain.sign(due.secret, body)
        return body, headers

    def _post(self, due: outbox.Due) -> tuple[int | None, str | None]:
        body, headers = self.request(due)
        try:
            response = self.http.post(due.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:1000]
        if 200 <= response.status_code < 300:
            return response.status_code, None
        return response.status_code, f"HTTP {response.status_code}: {response.text[:200]}"

    def tick(self) -> int:
        """One pass; returns how many notifications it attempted."""
        with self.db.write() as conn:
            due = outbox.claim_due(conn, self.clock(), limit=self.batch, lease_seconds=self.lease_seconds)
        for item in due:
            started = self.clock()
            t0 = time.monotonic()
            status_code, error = self._post(item)
            duration = time.monotonic() - t0
            with self.db.write() as conn:
                state = outbox.record_attempt(
                    conn,
                    item,
                    started_at=started,
                    duration=duration,
                    status_code=status_code,
                    error=error,
                    now=self.clock(),
                )
            if state == outbox.DELIVERED:
                log.info("notification %s delivered to %s", item.id, item.url)
            elif state == outbox.FAILED:
                log.error("notification %s to %s: given up after 24 hours (%s)", item.id, item.url, error)
            else:
                log.warning(
                    "notification %s to %s: attempt %s failed (%s)", item.id, item.url, item.attempts + 1, error
                )
        return len(due)

    def run(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                busy = self.tick()
            except Exception:  # the database or anything else: log once per outage, back off
                failures += 1
                if failures == 1:
                    log.exception("notifier pass failed; retrying with backoff")
                stop.wait(min(MAX_BACKOFF_SECONDS, 0.25 * 2**failures))
                continue
            if failures:
                log.info("notifier recovered after %s failed passes", failures)
                failures = 0
            if not busy:
                stop.wait(self.interval_seconds)
        self.http.close()
