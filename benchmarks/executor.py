"""Executor alone: no-op python runs per second through submit/poll (no database).

Usage: python benchmarks/executor.py [--runs 3000]

Prints runs/s and the CPU per run of the parent (this process) and of its children.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

import psutil

from backfill.domain.model import BlockType
from backfill.domain.pipeline import Block, PipelineDefinition
from backfill.engine.executor import Executor, RunRequest

NOOP = PipelineDefinition("noop", "noop", (Block("a", BlockType.PYTHON, "def run(context):\n    return None\n"),))
START = datetime(2024, 1, 1, tzinfo=UTC)


def child_cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def measure(slots: int, n: int) -> None:
    with Executor(slots) as ex:
        next_id = 0

        def submit() -> None:
            nonlocal next_id
            next_id += 1
            ex.submit(RunRequest(next_id, 1, 1, NOOP, None, START, START + timedelta(days=1), "UTC", {}, {}, 60))

        for _ in range(slots):  # warm-up: children started, code compiled
            submit()
        warm = 0
        while warm < slots:
            warm += len(ex.poll(1))
        children = [psutil.Process(slot.process.pid) for slot in ex._slots if slot.process is not None]
        child0 = sum(child_cpu(c) for c in children)
        began, cpu0 = time.perf_counter(), time.process_time()
        submitted = done = 0
        while submitted < min(slots, n):
            submit()
            submitted += 1
        while done < n:
            for outcome in ex.poll(1):
                assert outcome.ok, outcome.error
                done += 1
                if submitted < n:
                    submit()
                    submitted += 1
        wall, cpu = time.perf_counter() - began, time.process_time() - cpu0
        child = sum(child_cpu(c) for c in children) - child0  # no child was replaced: no-op runs
    cpu_per_run = f"parent {cpu / n * 1e6:.0f} µs, children {child / n * 1e6:.0f} µs"
    per_run = f"{wall / n * 1e6:.0f} µs/run wall, CPU per run: {cpu_per_run}"
    print(f"executor slots={slots}: {n / wall:.0f} runs/s, {per_run}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3000)
    args = parser.parse_args()
    for slots in (1, 2, 4):
        measure(slots, args.runs)


if __name__ == "__main__":
    main()
