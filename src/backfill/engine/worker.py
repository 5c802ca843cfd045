"""A worker: claim → execute in a child process → record, fenced by (run, attempt, owner).

The worker holds a lease on each run it executes and renews it by heartbeat. Runs it
no longer holds (the lease expired and the run was re-queued or failed) are killed and
their results dropped: the fence in ``store.queue.record_attempt`` refuses them anyway.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from backfill.domain.pipeline import PipelineDefinition
from backfill.engine.executor import Executor, RunOutcome, RunRequest
from backfill.metrics import RUN_DURATION
from backfill.store import pipelines as pipeline_store
from backfill.store import queue
from backfill.store.clock import utcnow
from backfill.store.db import Database

log = logging.getLogger("backfill.worker")

PIPELINE_CACHE_SECONDS = 5.0
LOG_FLUSH_SECONDS = 2.0


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 4
    lease_seconds: float = 30.0
    poll_seconds: float = 0.5
    max_log_bytes: int = 1_000_000
    max_runs_per_child: int | None = None

    @property
    def heartbeat_seconds(self) -> float:
        return max(0.05, self.lease_seconds / 3)


def new_owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    def __init__(
        self,
        db: Database,
        settings: WorkerSettings | None = None,
        *,
        connections: Mapping[str, str] | None = None,
        owner: str | None = None,
    ) -> None:
        self.db = db
        self.settings = settings or WorkerSettings()
        self.connections = dict(connections or {})
        self.owner = owner or new_owner_id()
        self._executor: Executor | None = None
        self._running: dict[int, queue.ClaimedRun] = {}
        self._pipelines: dict[int, tuple[float, PipelineDefinition]] = {}
        self._last_heartbeat = 0.0
        self._last_log_flush = 0.0
        self._next_claim_at = 0.0
        self._flushed: dict[int, int] = {}  # run id -> size of its log file when last stored
        self._versions: dict[int, str | None] = {}  # run id -> pipeline version it runs

    # -- lifecycle -----------------------------------------------------------------

    def run(self, stop: threading.Event, *, drain_seconds: float = 30.0) -> None:
        """Work until ``stop`` is set, then stop claiming and let running runs finish
        (up to ``drain_seconds``; what is left is killed and comes back by lease expiry)."""
        log.info("worker %s started with %d slots", self.owner, self.settings.concurrency)
        with Executor(
            self.settings.concurrency,
            max_log_bytes=self.settings.max_log_bytes,
            max_runs_per_child=self.settings.max_runs_per_child,
        ) as executor:
            self._executor = executor
            while not stop.is_set():
                self.step(claim=True)
            deadline = time.monotonic() + drain_seconds
            while self._running and time.monotonic() < deadline:
                self.step(claim=False)
            self._executor = None
        log.info("worker %s stopped", self.owner)

    def step(self, *, claim: bool = True) -> int:
        """One loop iteration: wait briefly for finished runs, then record them and claim
        into the free slots in ONE transaction, heartbeat, flush logs. Returns how many
        runs it claimed."""
        executor = self._executor
        assert executor is not None, "step() runs inside run()"
        busy = bool(self._running)
        outcomes = executor.poll(0.005 if busy else self.settings.poll_seconds)
        slots = executor.free_slots if claim and time.monotonic() >= self._next_claim_at else 0
        claimed: list[queue.ClaimedRun] = []
        if outcomes or slots:
            with self.db.write() as conn:
                now = utcnow()
                self._record(conn, outcomes, now)
                if slots:
                    claimed = queue.claim(conn, self.owner, slots, lease_seconds=self.settings.lease_seconds, now=now)
            # Nothing (more) to claim: do not ask again before the poll interval, unless a
            # run finishes and frees a slot.
            self._next_claim_at = 0.0 if len(claimed) == slots else time.monotonic() + self.settings.poll_seconds
            self._submit(claimed)
        if time.monotonic() - self._last_heartbeat >= self.settings.heartbeat_seconds:
            self._heartbeat(executor)
        if self._running and time.monotonic() - self._last_log_flush >= LOG_FLUSH_SECONDS:
            self._flush_logs(executor)
        return len(claimed)

    # -- pieces --------------------------------------------------------------------

    def _submit(self, claimed: list[queue.ClaimedRun]) -> None:
        executor = self._executor
        assert executor is not None
        for run in claimed:
            try:
                request = self._request(run)
            except Exception as exc:  # a pipeline that cannot be loaded fails the attempt
                log.exception("run %s: cannot prepare", run.run_id)
                with self.db.write() as conn:
                    queue.record_attempt(
                        conn,
                        run.key,
                        self.owner,
                        queue.AttemptResult(ok=False, error=f"cannot prepare the run: {exc}"),
                        utcnow(),
                    )
                continue
            self._running[run.run_id] = run
            self._versions[run.run_id] = request.pipeline.version
            executor.submit(request)

    def forget_pipelines(self) -> None:
        """Drop the cached pipeline definitions (the project was re-synced): the next run
        of each pipeline reads its current version."""
        self._pipelines = {}

    def _definition(self, pipeline_id: int) -> PipelineDefinition:
        cached = self._pipelines.get(pipeline_id)
        if cached is not None and time.monotonic() - cached[0] < PIPELINE_CACHE_SECONDS:
            return cached[1]
        with self.db.read() as conn:
            definition = pipeline_store.definition(pipeline_store.get(conn, pipeline_id))
        self._pipelines[pipeline_id] = (time.monotonic(), definition)
        return definition

    def _request(self, run: queue.ClaimedRun) -> RunRequest:
        pipeline = self._definition(run.pipeline_id)
        variables = {**dict(pipeline.variables), **run.variables}
        return RunRequest(
            run_id=run.run_id,
            attempt=run.attempt,
            backfill_id=run.backfill_id,
            pipeline=pipeline,
            block_uuids=run.block_uuids,
            interval_start=run.interval_start,
            interval_end=run.interval_end,
            timezone=run.timezone,
            variables=variables,
            connections=self.connections,
            timeout_seconds=run.timeout_seconds,
        )

    def _record(self, conn: Connection, outcomes: list[RunOutcome], now: datetime) -> None:
        finished: list[tuple[queue.ClaimedRun, RunOutcome, str | None]] = []
        for outcome in outcomes:
            run = self._running.pop(outcome.run_id, None)
            self._flushed.pop(outcome.run_id, None)
            version = self._versions.pop(outcome.run_id, None)
            if run is None or run.attempt != outcome.attempt:
                continue  # lost its lease earlier; the result is not ours to record
            finished.append((run, outcome, version))
        if not finished:
            return
        results = [(run.key, attempt_result(outcome, version)) for run, outcome, version in finished]
        recorded = queue.record_many(conn, self.owner, results, now)
        for run, outcome, _ in finished:
            if run.key not in recorded:
                log.warning("run %s attempt %s: lease lost, result dropped", run.run_id, run.attempt)
                continue
            RUN_DURATION.labels("completed" if outcome.ok else "failed").observe(outcome.duration)

    def _flush_logs(self, executor: Executor) -> None:
        """Store what running attempts printed so far, so logs can be tailed live."""
        self._last_log_flush = time.monotonic()
        grown: list[tuple[queue.RunKey, str]] = []
        for run in list(self._running.values()):
            size = executor.log_size(run.run_id)  # a stat; read only what has grown
            if not size or size == self._flushed.get(run.run_id):
                continue
            self._flushed[run.run_id] = size
            text = executor.read_log(run.run_id)
            if text:
                grown.append((run.key, text))
        if grown:
            now = utcnow()
            with self.db.write() as conn:
                for key, text in grown:
                    queue.write_partial_log(conn, key, self.owner, text, now)

    def _heartbeat(self, executor: Executor) -> None:
        self._last_heartbeat = time.monotonic()
        if not self._running:
            return
        keys = [r.key for r in self._running.values()]
        with self.db.write() as conn:
            held = queue.heartbeat(conn, self.owner, keys, lease_seconds=self.settings.lease_seconds, now=utcnow())
        for key in set(keys) - held:
            log.warning("run %s attempt %s: lease lost, killing it", key.run_id, key.attempt)
            self._running.pop(key.run_id, None)
            self._versions.pop(key.run_id, None)
            executor.cancel(key.run_id)


def attempt_result(outcome: RunOutcome, pipeline_version: str | None = None) -> queue.AttemptResult:
    return queue.AttemptResult(
        pipeline_version=pipeline_version,
        ok=outcome.ok,
        error=outcome.error,
        rows=outcome.rows,
        duration=outcome.duration,
        block_results=[
            {
                "uuid": b.uuid,
                "status": b.status,
                "started_at": b.started_at.isoformat() if b.started_at else None,
                "ended_at": b.ended_at.isoformat() if b.ended_at else None,
                "rows": b.rows,
                "error": b.error,
                "output": b.output,
            }
            for b in outcome.block_results
        ],
        log=outcome.log,
    )
