"""Where a worker's CPU goes, by phase. Prints, does not assert.

One worker process (as `backfill worker` runs it, concurrency 8) drains a backfill of
no-op runs; the main thread's CPU (``time.thread_time``) is added up around the worker's
and the queue's hot functions and printed per run completed. Phases nest (the lines with
a leading dot are parts of ``queue.step``); the instrumentation itself costs a few
percent.

Usage: python benchmarks/worker_phases.py [--runs 8000] [--db URL]
       (default: a fresh SQLite file; a postgresql:// URL gets a schema of its own)
"""

from __future__ import annotations

import argparse
import collections
import functools
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import engine as bench  # the engine benchmark's set-up and worker process

PHASES = (
    ("backfill.store.queue", None, "step", "queue.step"),
    ("backfill.store.queue", None, "_record", "  . recording the finished runs"),
    ("backfill.store.queue", None, "_claim_round", "  . taking / creating the runs claimed"),
    ("backfill.store.queue", None, "_claim_candidates", "  . the claim candidates"),
    ("backfill.store.queue", None, "_bump", "  . the counters"),
    ("backfill.engine.executor", "Executor", "submit", "Executor.submit"),
    ("backfill.engine.executor", "Executor", "poll", "Executor.poll"),
    ("backfill.engine.worker", "Worker", "_finished", "Worker._finished"),
    ("backfill.engine.worker", "Worker", "_request", "Worker._request"),
    ("backfill.engine.worker", "Worker", "_forget", "Worker._forget"),
)


def _instrumented_worker(url: str, concurrency: int, stop: Any, claimed: Any, report: Any) -> None:
    import importlib

    import sqlalchemy as sa

    spent: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()
    for module_name, class_name, name, label in PHASES:
        module = importlib.import_module(module_name)
        owner = getattr(module, class_name) if class_name else module
        original = getattr(owner, name)

        def timed(*args: Any, _f: Any = original, _label: str = label, **kwargs: Any) -> Any:
            calls[_label] += 1
            t0 = time.thread_time()
            try:
                return _f(*args, **kwargs)
            finally:
                spent[_label] += time.thread_time() - t0

        setattr(owner, name, functools.wraps(original)(timed))

    def count_statement(*_: Any) -> None:
        calls["statements"] += 1

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", count_statement)
    t0 = time.thread_time()
    bench.worker_process(url, concurrency, stop, claimed)
    total = time.thread_time() - t0
    runs = max(1, claimed.value)
    lines = [f"the worker's main thread in all: {total / runs * 1e6:.0f} us per run ({claimed.value} runs)"]
    lines += [f"{label:40s} {spent[label] / runs * 1e6:7.0f} us per run" for *_, label in PHASES]
    steps = calls["queue.step"]
    lines.append(
        f"{steps} steps: {claimed.value / max(1, steps):.1f} runs per step,"
        f" {calls['statements'] / runs:.2f} statements per run (all of the process's)"
    )
    report.put("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=8000)
    parser.add_argument("--db", default=None)
    args = parser.parse_args()
    url = args.db or f"sqlite:///{tempfile.mkdtemp(prefix='backfill-phases-')}/phases.db"
    if url.startswith("postgresql"):
        url = bench.pg_schema_url(url)
    db, actor, pid = bench.setup(url)
    ctx = multiprocessing.get_context("spawn")
    stop, claimed, report = ctx.Event(), ctx.Value("l", 0), ctx.Queue()
    worker = ctx.Process(target=_instrumented_worker, args=(url, 8, stop, claimed, report))
    worker.start()
    time.sleep(4.0)  # imports and the child pool started
    t0 = time.perf_counter()
    bf = bench.svc.create(db, actor, pid, bench.hours_spec(2000, args.runs, 16), start=True)
    bench.wait_final(db, [bf], alive=worker.is_alive)
    print(f"{url.split(':')[0]}: {args.runs / (time.perf_counter() - t0):.0f} runs/s end to end")
    stop.set()
    print(report.get(timeout=60))
    worker.join(60)
    db.dispose()


if __name__ == "__main__":
    main()
