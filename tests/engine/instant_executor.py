"""An executor that finishes every run at once: the worker's hot path without child
processes (the statement-count test, and ``benchmarks/engine.py --only hotpath``)."""

from __future__ import annotations

from backfill.engine.executor import RunOutcome, RunRequest


class InstantExecutor:
    """Stands in for ``Executor``: every submitted run has succeeded by the next poll."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.submitted: list[RunRequest] = []
        self.executed: list[tuple[int, int]] = []

    @property
    def free_slots(self) -> int:
        return self.slots - len(self.submitted)

    def submit(self, request: RunRequest) -> None:
        assert len(self.submitted) < self.slots, "the worker claimed more runs than it has slots"
        self.submitted.append(request)

    def poll(self, _timeout: float) -> list[RunOutcome]:
        done, self.submitted = self.submitted, []
        self.executed.extend((r.run_id, r.attempt) for r in done)
        return [RunOutcome(r.run_id, r.attempt, True, None, False, False, 1, 0.001, (), "") for r in done]

    def log_size(self, _run_id: int) -> int:
        return 0

    def read_log(self, _run_id: int) -> str:
        return ""

    def cancel(self, _run_id: int) -> bool:
        return False
