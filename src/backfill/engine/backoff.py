"""The one retry policy of every long-running loop (worker, scheduler, supervisor).

A loop calls ``Backoff.failed(exc)`` when an iteration raised and ``Backoff.succeeded()``
when one went through; between failures it waits ``Backoff.remaining()``: capped
exponential backoff with full jitter (never more than ``cap`` seconds between tries).

A transient database error (``store.transient.is_transient``) is logged once when the outage starts
and once when it ends, however many tries it takes; any other error is logged with
its traceback each time (it is a bug, but the loop goes on).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from backfill.store.transient import is_transient

__all__ = ["Backoff", "is_transient"]


class Backoff:
    """Failure bookkeeping of one loop: when to try next, and what to log."""

    def __init__(
        self,
        name: str,
        logger: logging.Logger,
        *,
        base: float = 0.1,
        cap: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if base <= 0 or cap < base:
            raise ValueError("backoff needs 0 < base <= cap")
        self.name = name
        self.log = logger
        self.base = base
        self.cap = cap
        self._clock = clock
        self._jitter = jitter
        self.failures = 0  # consecutive
        self.outages = 0  # how many outages began (for figures and tests)
        self._outage_since: float | None = None
        self._next_try = 0.0

    @property
    def failing(self) -> bool:
        return self.failures > 0

    @property
    def in_outage(self) -> bool:
        """A transient database error was the last thing this loop saw."""
        return self._outage_since is not None

    def delay(self) -> float:
        """The wait before the next try after ``failures`` consecutive failures: a random
        point in [cap/2 .. cap] of the exponential step, so loops do not retry in lockstep."""
        step = min(self.cap, self.base * 2.0 ** min(self.failures - 1, 30))
        return step / 2 + step / 2 * self._jitter()

    def failed(self, exc: BaseException) -> float:
        """Record a failed iteration; returns how long to wait before the next one."""
        self.failures += 1
        if is_transient(exc):
            if self._outage_since is None:
                self._outage_since = self._clock()
                self.outages += 1
                self.log.warning("%s: database unavailable, retrying with backoff: %s", self.name, _short(exc))
        else:
            self.log.error("%s: iteration failed, retrying with backoff", self.name, exc_info=exc)
        wait = self.delay()
        self._next_try = self._clock() + wait
        return wait

    def succeeded(self) -> None:
        if self._outage_since is not None:
            self.log.warning(
                "%s: database reachable again after %.1f s (%d failed tries)",
                self.name,
                self._clock() - self._outage_since,
                self.failures,
            )
        self._outage_since = None
        self.failures = 0
        self._next_try = 0.0

    def remaining(self) -> float:
        """Seconds until the next try is due (0 when due, or when not failing)."""
        return max(0.0, self._next_try - self._clock())

    def due(self) -> bool:
        return self.remaining() <= 0.0


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
