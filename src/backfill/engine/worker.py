"""A worker: claim → execute in a child process → record, fenced by (run, attempt, owner).

The worker holds a lease on each run it executes and renews it by heartbeat. Runs it
no longer holds (the lease expired and the run was re-queued or failed) are killed and
their results dropped: the fence in ``store.queue.record_attempt`` refuses them anyway.

Database faults never end the loop (``engine.backoff``): while the database is away the
worker keeps polling its executor, so runs go on, timeouts are enforced and finished
outcomes are kept; they are recorded — fenced as always — once the database is back.
On start it re-queues the runs of earlier owners on this host whose process is gone.
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

from backfill.domain.pipeline import PipelineDefinition
from backfill.engine import owners
from backfill.engine.backoff import Backoff, is_transient
from backfill.engine.executor import Executor, RunOutcome, RunRequest
from backfill.metrics import RUN_DURATION
from backfill.services.health import ComponentReporter
from backfill.store import pipelines as pipeline_store
from backfill.store import queue
from backfill.store.clock import utcnow
from backfill.store.db import Database

log = logging.getLogger("backfill.worker")

PIPELINE_CACHE_SECONDS = 5.0
LOG_FLUSH_SECONDS = 2.0
# A claim that skipped a backfill row another worker held (PostgreSQL, SKIP LOCKED) is
# retried this soon: that worker's step transaction lasts milliseconds.
CONTENDED_RETRY_SECONDS = 0.01
CONTENDED_RETRIES = 10


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 4
    lease_seconds: float = 30.0
    poll_seconds: float = 0.5
    max_log_bytes: int = 1_000_000
    max_runs_per_child: int | None = None
    # A run ended while others still run: wait this long for them too, so one step
    # records and refills several slots (a step's statements cost the same for 1 run or
    # 8). 0 records each run as soon as it ends.
    batch_wait_seconds: float = 0.002

    @property
    def heartbeat_seconds(self) -> float:
        return max(0.05, self.lease_seconds / 3)


def new_owner_id() -> str:
    """``host:pid:random`` — ``engine.owners`` reads host and pid back to find dead owners."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    def __init__(
        self,
        db: Database,
        settings: WorkerSettings | None = None,
        *,
        connections: Mapping[str, str] | None = None,
        owner: str | None = None,
        health: ComponentReporter | None = None,
        gone_owners: tuple[str, ...] = (),
    ) -> None:
        self.db = db
        self.settings = settings or WorkerSettings()
        self.connections = dict(connections or {})
        self.owner = owner or new_owner_id()
        self.health = health or ComponentReporter(None, "worker")
        self.backoff = Backoff("worker", log)
        self._executor: Executor | None = None
        self._running: dict[int, queue.ClaimedRun] = {}
        self._unrecorded: list[RunOutcome] = []  # finished, not yet recorded (database away)
        self._unsubmitted: list[queue.ClaimedRun] = []  # claimed, not yet prepared (database away)
        self._reclaimed = False  # leases of dead owners on this host re-queued (once, at start)
        self._gone_owners = gone_owners  # earlier workers of this process, known to be gone
        self._pipelines: dict[int, tuple[float, PipelineDefinition]] = {}
        self._syncs = 0  # re-syncs of the project in progress (nothing is cached meanwhile)
        self._last_heartbeat = 0.0
        self._last_log_flush = 0.0
        self._next_claim_at = 0.0
        self._contended = 0  # claims in a row that skipped a backfill row another worker held
        self._skipped: tuple[int, ...] = ()  # those rows: the next claim waits for them
        self._flushed: dict[int, int] = {}  # run id -> size of its log file when last stored
        self._versions: dict[int, str | None] = {}  # run id -> pipeline version it runs

    # -- lifecycle -----------------------------------------------------------------

    def run(self, stop: threading.Event, *, drain_seconds: float = 30.0) -> None:
        """Work until ``stop`` is set, then stop claiming and let running runs finish
        (up to ``drain_seconds``; what is left is killed and comes back by lease expiry)."""
        log.info("worker %s started with %d slots", self.owner, self.settings.concurrency)
        self.health.ready()
        with Executor(
            self.settings.concurrency,
            max_log_bytes=self.settings.max_log_bytes,
            max_runs_per_child=self.settings.max_runs_per_child,
        ) as executor:
            self._executor = executor
            while not stop.is_set():
                self.step(claim=True)
            deadline = time.monotonic() + drain_seconds
            while (self._running or self._unrecorded) and time.monotonic() < deadline:
                self.step(claim=False)
            self._executor = None
        log.info("worker %s stopped", self.owner)

    def step(self, *, claim: bool = True) -> int:
        """One loop iteration: wait briefly for finished runs, then (unless the database is
        in back-off) record them and claim into the free slots in ONE transaction,
        heartbeat, flush logs. Returns how many runs it claimed. Never raises a database
        error: it is counted by ``self.backoff`` and the next tries wait."""
        executor = self._executor
        assert executor is not None, "step() runs inside run()"
        wait = 0.005 if self._running else self._idle_wait()
        if self.backoff.failing:
            wait = min(self.settings.poll_seconds, max(0.005, self.backoff.remaining()))
        self._unrecorded.extend(executor.poll(wait))
        self._gather(executor)
        if not self.backoff.due():
            return 0
        try:
            if self.backoff.failing:
                # a step may touch no table (slots busy, nothing to record): only a
                # statement that ran proves the database is back
                self.db.ping()
            claimed = self._database_step(executor, claim)
        except Exception as exc:
            self.backoff.failed(exc)
            reason = "database unavailable" if is_transient(exc) else "failing"
            self.health.not_ready(f"{reason}: {type(exc).__name__}")
            return 0
        if self.backoff.failing:
            self.backoff.succeeded()
            self.health.ready()
        return claimed

    def _database_step(self, executor: Executor, claim: bool) -> int:
        if not self._reclaimed:
            self._reclaim_dead_owners()
        if self._unsubmitted:
            self._submit()
        free = max(0, executor.free_slots - len(self._unsubmitted))
        slots = free if claim and time.monotonic() >= self._next_claim_at else 0
        claimed = 0
        if self._unrecorded or slots:
            outcomes = list(self._unrecorded)
            finished, ours = self._finished(outcomes)
            with self.db.write() as conn:
                result = queue.step(
                    conn,
                    self.owner,
                    finished,
                    slots,
                    lease_seconds=self.settings.lease_seconds,
                    now=utcnow(),
                    # idle (nothing running, nothing to record): wait for the rows the
                    # last claim skipped, or busier workers holding them in turn starve it
                    wait_for=self._skipped if slots and not self._running and not outcomes else (),
                )
            # committed: only now forget the outcomes and take the claimed runs
            recorded = []
            for finish, outcome in zip(finished, ours, strict=True):
                if finish.key in result.recorded:
                    recorded.append(outcome)
                else:
                    log.warning("run %s attempt %s: lease lost, result dropped", finish.key.run_id, finish.key.attempt)
            self._forget(outcomes, recorded)
            got = result.claim
            self._skipped = got.skipped
            runs = got.runs
            claimed = len(runs)
            # Nothing (more) to claim: do not ask again before the poll interval, unless a
            # run finishes and frees a slot. Work skipped because another worker held its
            # backfill row (for a few ms): ask again soon, or one worker takes it all.
            # At most CONTENDED_RETRIES in a row: a row held for longer (a user's long
            # transaction) is waited for at the poll interval, not by a busy loop.
            self._contended = self._contended + 1 if got.contended else 0
            soon = 0 < self._contended <= CONTENDED_RETRIES
            pause = CONTENDED_RETRY_SECONDS if soon else self.settings.poll_seconds
            self._next_claim_at = 0.0 if claimed == slots else time.monotonic() + pause
            self._unsubmitted.extend(runs)
            self._submit()
        if time.monotonic() - self._last_heartbeat >= self.settings.heartbeat_seconds:
            self._heartbeat(executor)
        if self._running and time.monotonic() - self._last_log_flush >= LOG_FLUSH_SECONDS:
            self._flush_logs(executor)
        return claimed

    def _gather(self, executor: Executor) -> None:
        """Runs ended and others still run: wait up to ``batch_wait_seconds`` for those
        too (no longer once all have ended), so one step records and refills them all."""
        if not self._unrecorded or self.settings.batch_wait_seconds <= 0:
            return
        deadline = time.monotonic() + self.settings.batch_wait_seconds
        while len(self._unrecorded) < len(self._running):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._unrecorded.extend(executor.poll(left))

    def _idle_wait(self) -> float:
        """How long an idle step waits for outcomes: the poll interval, or less when a
        claim is due sooner (a contended claim retries within ``CONTENDED_RETRY_SECONDS``)."""
        due = self._next_claim_at - time.monotonic()
        return self.settings.poll_seconds if due <= 0 else max(0.005, min(self.settings.poll_seconds, due))

    # -- pieces --------------------------------------------------------------------

    def _submit(self) -> None:
        """Start the claimed runs. A database error while preparing one (reading its
        pipeline) leaves it and the rest for the next step; any other error fails the
        attempt, recorded with the next outcomes."""
        executor = self._executor
        assert executor is not None
        while self._unsubmitted:
            run = self._unsubmitted[0]
            try:
                request = self._request(run)
            except Exception as exc:
                if is_transient(exc):
                    raise
                log.exception("run %s: cannot prepare", run.run_id)
                self._unsubmitted.pop(0)
                self._running[run.run_id] = run
                self._unrecorded.append(RunOutcome.not_run(run.run_id, run.attempt, f"cannot prepare the run: {exc}"))
                continue
            self._unsubmitted.pop(0)
            self._running[run.run_id] = run
            self._versions[run.run_id] = request.pipeline.version
            executor.submit(request)

    def pipelines_syncing(self) -> None:
        """A re-sync of the project begins: drop the cached definitions and cache none read
        until it has committed (``forget_pipelines``), so no run that starts after the new
        version is visible can use a definition read before it."""
        self._syncs += 1
        self._pipelines = {}

    def forget_pipelines(self) -> None:
        """Drop the cached pipeline definitions (the project was re-synced): the next run
        of each pipeline reads its current version."""
        self._pipelines = {}
        self._syncs = max(0, self._syncs - 1)

    def _definition(self, pipeline_id: int) -> PipelineDefinition:
        cached = self._pipelines.get(pipeline_id)
        if cached is not None and time.monotonic() - cached[0] < PIPELINE_CACHE_SECONDS:
            return cached[1]
        syncing = self._syncs > 0
        with self.db.read() as conn:
            definition = pipeline_store.definition(pipeline_store.get(conn, pipeline_id))
        if not syncing and self._syncs == 0:
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

    def _finished(self, outcomes: list[RunOutcome]) -> tuple[list[queue.Finish], list[RunOutcome]]:
        """The outcomes of attempts this worker still holds, as the step records them (with
        the outcomes, in the same order). The others lost their lease earlier: not ours."""
        finished: list[queue.Finish] = []
        ours: list[RunOutcome] = []
        for outcome in outcomes:
            run = self._running.get(outcome.run_id)
            if run is None or run.attempt != outcome.attempt:
                continue
            result = attempt_result(outcome, self._versions.get(outcome.run_id))
            finished.append(queue.Finish(run.key, run.backfill_id, result))
            ours.append(outcome)
        return finished, ours

    def _forget(self, outcomes: list[RunOutcome], recorded: list[RunOutcome]) -> None:
        """After the commit: the outcomes are settled (recorded, or refused by the fence)."""
        done = {id(o) for o in outcomes}
        self._unrecorded = [o for o in self._unrecorded if id(o) not in done]
        for outcome in outcomes:
            run = self._running.get(outcome.run_id)
            if run is not None and run.attempt == outcome.attempt:
                del self._running[outcome.run_id]
                self._versions.pop(outcome.run_id, None)
            self._flushed.pop(outcome.run_id, None)
        for outcome in recorded:
            RUN_DURATION.labels("completed" if outcome.ok else "failed").observe(outcome.duration)

    def _reclaim_dead_owners(self) -> None:
        with self.db.write() as conn:
            now = utcnow()
            requeued = owners.reclaim_dead_on_this_host(conn, now)
            requeued += queue.expire_owners(conn, self._gone_owners, now, reason="died in this process")
        self._reclaimed = True
        for key in requeued:
            log.warning("run %s attempt %s: its worker on this host is gone, re-queued", key.run_id, key.attempt)

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
        leased = [*self._running.values(), *self._unsubmitted]
        if not leased:
            self._last_heartbeat = time.monotonic()
            return
        keys = [r.key for r in leased]
        with self.db.write() as conn:
            held = queue.heartbeat(conn, self.owner, keys, lease_seconds=self.settings.lease_seconds, now=utcnow())
        self._last_heartbeat = time.monotonic()  # only once renewed: due again at once after an outage
        lost = set(keys) - held
        self._unsubmitted = [r for r in self._unsubmitted if r.key not in lost]
        for key in lost:
            log.warning("run %s attempt %s: lease lost, killing it", key.run_id, key.attempt)
            self._versions.pop(key.run_id, None)
            if self._running.pop(key.run_id, None) is not None:
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
