"""A worker waits a moment (``batch_wait_seconds``) for runs still running when one
ends, so one step records and refills them together; it never waits once all ended."""

from __future__ import annotations

import time
from typing import Any

import pytest
from tests.engine.instant_executor import InstantExecutor
from tests.store.test_queue import make, row

from backfill.engine.executor import RunOutcome
from backfill.engine.worker import Worker, WorkerSettings
from backfill.services.actor import Actor
from backfill.store import queue
from backfill.store.db import Database


class OneAtATimeExecutor(InstantExecutor):
    """Every submitted run has succeeded by the next poll, but a poll hands over one."""

    def __init__(self, slots: int) -> None:
        super().__init__(slots)
        self.done: list[RunOutcome] = []
        self.running = 0

    @property
    def free_slots(self) -> int:
        return self.slots - self.running - len(self.done)

    def submit(self, request: Any) -> None:
        assert self.free_slots > 0
        self.done.append(RunOutcome(request.run_id, request.attempt, True, None, False, False, 1, 0.001, (), ""))

    def poll(self, _timeout: float) -> list[RunOutcome]:
        if not self.done:
            return []
        outcome = self.done.pop(0)
        self.executed.append((outcome.run_id, outcome.attempt))
        return [outcome]


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many runs each ``queue.step`` recorded."""
    recorded: list[int] = []
    real = queue.step

    def counting(conn: Any, owner: str, finished: Any, limit: int, **kw: Any) -> queue.Step:
        recorded.append(len(finished))
        return real(conn, owner, finished, limit, **kw)

    monkeypatch.setattr(queue, "step", counting)
    return recorded


def drain(db: Database, team: Actor, pipeline_id: int, wait: float) -> Worker:
    bf = make(db, team, pipeline_id, start="2024-01-01", end="2024-01-08", max_active_runs=4)
    worker = Worker(db, WorkerSettings(concurrency=4, lease_seconds=3600, batch_wait_seconds=wait), owner="w")
    worker._executor = OneAtATimeExecutor(4)  # type: ignore[assignment]  # step() outside run()
    for _ in range(40):
        worker.step(claim=True)
        if row(db, bf)["status"] == "completed":
            return worker
    raise AssertionError("the backfill does not finish")


def test_runs_that_end_together_are_recorded_in_one_step(
    db: Database, team: Actor, pipeline_id: int, steps: list[int]
) -> None:
    drain(db, team, pipeline_id, wait=5)
    assert [n for n in steps if n] == [4, 4]


def test_without_the_wait_each_run_is_its_own_step(
    db: Database, team: Actor, pipeline_id: int, steps: list[int]
) -> None:
    drain(db, team, pipeline_id, wait=0)
    assert {n for n in steps if n} == {1}


def test_the_wait_ends_after_batch_wait_seconds_when_a_run_goes_on() -> None:
    asked: list[float] = []

    class Stuck(OneAtATimeExecutor):
        def poll(self, timeout: float) -> list[RunOutcome]:
            asked.append(timeout)
            time.sleep(timeout)
            return []

    worker = Worker.__new__(Worker)
    worker.settings = WorkerSettings(batch_wait_seconds=0.05)
    worker._unrecorded = [RunOutcome(1, 1, True, None, False, False, 1, 0.001, (), "")]
    worker._running = {1: None, 2: None}  # type: ignore[dict-item]  # run 2 goes on
    worker._gather(Stuck(2))  # type: ignore[arg-type]
    assert asked and sum(asked) <= 0.05  # waited for what was left of 50 ms, then gave up
    assert len(worker._unrecorded) == 1
