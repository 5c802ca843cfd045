"""The long-running components of a process (scheduler, worker) on their threads, and a
supervisor that restarts one that died anyway.

``backfill serve`` and ``backfill worker`` both build their components here
(``build_runtime``). Every component's state is in ``Runtime.health``, which ``/readyz``
reads: a dead component is "restarting" (503 naming it) until its thread runs again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from backfill.config import Settings
from backfill.engine.backoff import Backoff
from backfill.engine.scheduler import Scheduler
from backfill.engine.worker import Worker, WorkerSettings
from backfill.services.health import ComponentReporter, HealthRegistry
from backfill.store.db import Database

log = logging.getLogger("backfill.runtime")

# A restarted component that has run this long counts as recovered (its restart delay
# starts from the bottom again the next time it dies).
HEALTHY_AFTER_SECONDS = 10.0
SUPERVISE_SECONDS = 0.2


@dataclass(frozen=True)
class Component:
    name: str
    run: Callable[[threading.Event], None]  # returns only once the event is set


class _Slot:
    def __init__(self, component: Component) -> None:
        self.component = component
        self.thread: threading.Thread | None = None
        self.started_at = 0.0
        self.error: BaseException | None = None
        self.backoff = Backoff(f"component {component.name}", log, base=0.2, cap=5.0)
        self.restart_at: float | None = None


class Runtime:
    def __init__(
        self,
        components: list[Component],
        *,
        health: HealthRegistry | None = None,
        connections: Mapping[str, str] | None = None,
    ) -> None:
        self.health = health or HealthRegistry()
        self.stop = threading.Event()
        self.restarts = 0
        # The project's connections, kept here so a restarted worker has the current ones.
        self.connections: dict[str, str] = dict(connections or {})
        self.worker: Worker | None = None  # the worker component's current Worker, if any
        self._slots: list[_Slot] = []
        self._supervisor: threading.Thread | None = None
        for component in components:
            self.add(component)

    @property
    def names(self) -> list[str]:
        return [s.component.name for s in self._slots]

    def add(self, component: Component) -> None:
        """One more component (before ``start``)."""
        if component.name in self.names:
            raise ValueError(f"component names must be unique: {component.name!r} twice")
        if self._supervisor is not None:
            raise RuntimeError("add components before start()")
        self._slots.append(_Slot(component))

    def pipelines_syncing(self) -> None:
        """The project is about to be re-synced (``pipelines_changed`` follows)."""
        worker = self.worker
        if worker is not None:
            worker.pipelines_syncing()

    def pipelines_changed(self, connections: Mapping[str, str]) -> None:
        """The project was re-synced: the worker takes the connections as they are now and
        forgets the pipeline definitions it cached."""
        self.connections.update(connections)
        worker = self.worker
        if worker is not None:
            worker.connections.update(connections)
            worker.forget_pipelines()

    def start(self) -> None:
        """Start every component and the supervisor, on daemon threads."""
        for slot in self._slots:
            self._start(slot)
        self._supervisor = threading.Thread(target=self.supervise, name="supervisor", daemon=True)
        self._supervisor.start()

    def supervise(self) -> None:
        """Restart dead components until ``stop`` is set (the supervisor thread's body)."""
        while not self.stop.wait(SUPERVISE_SECONDS):
            try:
                self.check()
            except Exception:  # e.g. no thread could be started: try again on the next pass
                log.exception("supervisor pass failed")

    def check(self) -> None:
        """One supervision pass."""
        now = time.monotonic()
        for slot in self._slots:
            thread = slot.thread
            if thread is None or self.stop.is_set():
                continue
            if thread.is_alive():
                if slot.backoff.failing and now - slot.started_at >= HEALTHY_AFTER_SECONDS:
                    slot.backoff.failures = 0  # recovered: the next death restarts quickly again
                continue
            if slot.restart_at is None:
                error = slot.error or RuntimeError("returned before it was told to stop")
                delay = slot.backoff.failed(error)
                slot.restart_at = now + delay
                reason = f"restarting after it died: {type(error).__name__}: {error}"[:300]
                self.health.not_ready(slot.component.name, reason)
                log.error("component %s died; restarting in %.1f s", slot.component.name, delay)
            elif now >= slot.restart_at:
                self.restarts += 1
                log.warning("component %s: restarting", slot.component.name)
                self._start(slot)

    def shutdown(self, timeout: float = 35.0) -> None:
        """Tell every component to stop and wait for them (up to ``timeout`` in all)."""
        self.stop.set()
        deadline = time.monotonic() + timeout
        threads = [s.thread for s in self._slots] + [self._supervisor]
        for thread in threads:
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))

    def _start(self, slot: _Slot) -> None:
        slot.error = None
        slot.restart_at = None
        slot.started_at = time.monotonic()
        self.health.ready(slot.component.name)
        slot.thread = threading.Thread(target=self._body, args=(slot,), name=slot.component.name, daemon=True)
        slot.thread.start()

    def _body(self, slot: _Slot) -> None:
        try:
            slot.component.run(self.stop)
        except BaseException as exc:
            slot.error = exc


def build_runtime(
    database: Database,
    settings: Settings,
    *,
    workers: int,
    scheduler: bool = True,
    connections: Mapping[str, str] | None = None,
) -> Runtime:
    """The components of ``serve`` / ``worker``: the scheduler (lease expiry) unless told
    otherwise, and a worker with ``workers`` slots unless 0 (API only)."""
    if workers < 0:
        raise ValueError("workers must be >= 0")
    health = HealthRegistry()
    runtime = Runtime([], health=health, connections=connections)
    if scheduler:
        runtime.add(Component("scheduler", _scheduler_body(database, settings, health)))
    if workers:
        worker_settings = WorkerSettings(
            concurrency=workers, lease_seconds=settings.lease_seconds, max_log_bytes=settings.max_log_bytes
        )
        runtime.add(Component("worker", _worker_body(database, worker_settings, runtime)))
    return runtime


def _scheduler_body(
    database: Database, settings: Settings, health: HealthRegistry
) -> Callable[[threading.Event], None]:
    def body(stop: threading.Event) -> None:
        reporter = ComponentReporter(health, "scheduler")
        Scheduler(database, interval_seconds=settings.scheduler_interval_seconds, health=reporter).run(stop)

    return body


def _worker_body(database: Database, settings: WorkerSettings, runtime: Runtime) -> Callable[[threading.Event], None]:
    previous: list[str] = []  # owner ids of the workers that died in this process

    def body(stop: threading.Event) -> None:
        # A worker that died took its executor (and its runs) with it: the new one
        # re-queues their runs at once instead of waiting for the leases to expire.
        worker = Worker(
            database,
            settings,
            connections=runtime.connections,
            health=ComponentReporter(runtime.health, "worker"),
            gone_owners=tuple(previous),
        )
        previous.append(worker.owner)
        runtime.worker = worker
        worker.run(stop)

    return body
