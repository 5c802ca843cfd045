"""Mutation check of the engine's correctness rules (``make mutants``).

Each mutant breaks one rule (fencing, cancel, max_active_runs, lease expiry, retry,
overlap, interval arithmetic, tenant filter, scopes, counters, reprocess, fair share,
timeout) with a text patch of one source file. The mutants are applied one at a time to
a copy of the repository in a temporary directory (the working tree is never touched),
and the tests that guard the rule run against it. A mutant is *killed* when those tests
fail (or hang past the time limit), and *survives* when they pass: then the tests are
weaker than the rule. The unmutated copy must pass the same tests first.

Not part of ``make test``. Runs on SQLite; set BACKFILL_TEST_DATABASE_URL for
PostgreSQL. Exit status: 0 when every mutant is killed, 1 when one survives, 2 when a
patch no longer applies (the code moved: update its text here) or the baseline fails.

Usage: python scripts/mutants.py [--only NAME ...] [--list] [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAST = "not slow and not e2e"


@dataclass(frozen=True)
class Mutant:
    name: str
    rule: str
    path: str  # relative to the repository root
    old: str  # must occur exactly once in the file
    new: str
    tests: tuple[str, ...]  # pytest arguments: files, node ids, -k expressions
    marks: str = FAST
    database: str | None = None  # "sqlite" or "postgresql": code only that database runs


Q = "src/backfill/store/queue.py"
T = "src/backfill/domain/transitions.py"
STORE_QUEUE = ("tests/store/test_queue.py", "tests/store/test_queue_rules.py")

MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "fence-success-attempt",
        "a completed attempt is recorded only by the attempt that holds the run",
        Q,
        "            interval_runs.c.attempt == v.c.run_attempt,\n",
        "",
        STORE_QUEUE,
        database="sqlite",
    ),
    Mutant(
        "fence-success-attempt-pg",
        "a completed attempt is recorded only by the attempt that holds the run (PostgreSQL's batch)",
        Q,
        "            interval_runs.c.attempt == v.c.attempt,\n",
        "",
        STORE_QUEUE,
        database="postgresql",
    ),
    Mutant(
        "fence-success-owner",
        "a completed attempt is recorded only by the lease owner",
        Q,
        "            interval_runs.c.attempt == v.c.run_attempt,\n"
        "            interval_runs.c.status == RunStatus.RUNNING.value,\n"
        '            interval_runs.c.lease_owner == bindparam("p_owner"),\n',
        "            interval_runs.c.attempt == v.c.run_attempt,\n"
        "            interval_runs.c.status == RunStatus.RUNNING.value,\n",
        STORE_QUEUE,
        database="sqlite",
    ),
    Mutant(
        "fence-success-owner-pg",
        "a completed attempt is recorded only by the lease owner (PostgreSQL's batch)",
        Q,
        "            interval_runs.c.attempt == v.c.attempt,\n"
        "            interval_runs.c.status == RunStatus.RUNNING.value,\n"
        '            interval_runs.c.lease_owner == bindparam("p_owner"),\n',
        "            interval_runs.c.attempt == v.c.attempt,\n"
        "            interval_runs.c.status == RunStatus.RUNNING.value,\n",
        STORE_QUEUE,
        database="postgresql",
    ),
    Mutant(
        "fence-failure-attempt",
        "a failed attempt is recorded only by the attempt that holds the run",
        Q,
        "        if row is None or row.attempt != key.attempt:\n",
        "        if row is None:\n",
        STORE_QUEUE,
    ),
    Mutant(
        "fence-failure-owner",
        "a failed attempt is recorded only by the lease owner",
        Q,
        '    if owner:\n        fence.append(interval_runs.c.lease_owner == bindparam("p_owner"))\n',
        "",
        STORE_QUEUE,
    ),
    Mutant(
        "fence-heartbeat-owner",
        "only the lease owner extends a lease",
        Q,
        "            interval_runs.c.lease_owner == owner,\n"
        "            interval_runs.c.status == RunStatus.RUNNING.value,\n"
        "            interval_runs.c.id.in_(",
        "            interval_runs.c.status == RunStatus.RUNNING.value,\n            interval_runs.c.id.in_(",
        STORE_QUEUE,
    ),
    Mutant(
        "claim-cancelled",
        "no run of a cancelled backfill is ever claimed",
        T,
        "    return status in ACTIVE_BACKFILL_STATUSES and not paused\n",
        "    return (status in ACTIVE_BACKFILL_STATUSES or status is B.CANCELLED) and not paused\n",
        STORE_QUEUE,
    ),
    Mutant(
        "claim-paused",
        "no run of a paused backfill is claimed",
        Q,
        "        backfills.c.paused.is_(False),\n",
        "",
        STORE_QUEUE,
    ),
    Mutant(
        "cancel-queued",
        "cancel cancels the queued runs in its transaction",
        Q,
        "        .where(interval_runs.c.backfill_id == backfill_id, interval_runs.c.status == RunStatus.QUEUED.value)\n"
        "        .values(status=transitions.run_cancel",
        "        .where(interval_runs.c.backfill_id == backfill_id, interval_runs.c.id < 0)\n"
        "        .values(status=transitions.run_cancel",
        STORE_QUEUE,
    ),
    Mutant(
        "max-active-runs",
        "a backfill never runs more than max_active_runs at once",
        Q,
        '    room = int(bf["max_active_runs"]) - int(bf["runs_running"])\n',
        '    room = 2 * int(bf["max_active_runs"]) - int(bf["runs_running"])\n',
        STORE_QUEUE,
    ),
    Mutant(
        "lease-expiry",
        "a run whose lease expired comes back",
        Q,
        "        .where(interval_runs.c.status == RunStatus.RUNNING.value, interval_runs.c.lease_expires_at < now)\n",
        "        .where(interval_runs.c.status == RunStatus.RUNNING.value, interval_runs.c.lease_expires_at < now"
        " - timedelta(days=1))\n",
        STORE_QUEUE,
    ),
    Mutant(
        "retry-only-failed",
        "a retry re-queues only the failed and cancelled runs",
        Q,
        "interval_runs.c.status == source.value)\n",
        "interval_runs.c.status != RunStatus.RUNNING.value)\n",
        STORE_QUEUE,
    ),
    Mutant(
        "overlap-409",
        "an unfinished backfill's intervals cannot be covered by another (adjacent is fine)",
        "src/backfill/store/backfills.py",
        "        backfills.c.range_end_exclusive > first_start,\n",
        "        backfills.c.range_end_exclusive >= first_start,\n",
        ("tests/store/test_queue.py", "tests/store/test_backfills.py", "tests/services/test_backfills.py"),
    ),
    Mutant(
        "month-arithmetic",
        "monthly steps clamp to the month's last day (Jan 31 → Feb 29 → Mar 31)",
        "src/backfill/domain/intervals/steps.py",
        "    day = min(wall.day, calendar.monthrange(year, month)[1])\n",
        "    day = min(wall.day, 28)\n",
        ("tests/domain/test_intervals.py",),
    ),
    Mutant(
        "dst-fold",
        "ambiguous wall times take the first occurrence, gaps move forward (fold=0)",
        "src/backfill/domain/timeparse.py",
        "    offset = zone.utcoffset(wall)\n    if offset is None:\n",
        "    offset = zone.utcoffset(wall.replace(fold=1))\n    if offset is None:\n",
        ("tests/domain/test_intervals.py", "tests/domain/test_timeparse.py"),
    ),
    Mutant(
        "tenant-filter",
        "a team never reads another team's backfill",
        "src/backfill/store/backfills.py",
        '    stmt = _GET[(team_id is not None, lock and conn.dialect.name == "postgresql")]\n',
        '    stmt = _GET[(False, lock and conn.dialect.name == "postgresql")]\n',
        ("tests/api/test_team_auth_matrix.py", "-k", "other_teams"),
    ),
    Mutant(
        "scopes",
        "a token without the route's scope is refused",
        "src/backfill/services/auth.py",
        "    if not principal.has_scope(access.scope):\n",
        "    if False:\n",
        ("tests/api/test_team_auth_matrix.py", "-k", "scope"),
    ),
    Mutant(
        "child-sched-batch",
        "executor children run as SCHED_BATCH (a run sent to a child does not preempt the worker)",
        "src/backfill/engine/child.py",
        "    proctree.become_subreaper()\n    _schedule_as_batch()\n",
        "    proctree.become_subreaper()\n",
        ("tests/engine/test_executor.py", "-k", "sched_batch"),
        marks="not e2e",  # the executor's tests start real processes (marked slow)
    ),
    Mutant(
        "sqlite-checkpoint-in-commit",
        "SQLite commits leave WAL checkpoints to the checkpointer thread",
        "src/backfill/store/db.py",
        '        cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")\n',
        "",
        ("tests/store/test_sqlite_checkpoint.py",),
        database="sqlite",
    ),
    Mutant(
        "lock-order-pg",
        "a worker step locks the backfill rows of the runs it records before any run row (PostgreSQL)",
        Q,
        "        q = q.where(locked_first >= 0).with_for_update(of=backfills, skip_locked=True)\n",
        "        q = q.with_for_update(of=backfills, skip_locked=True)\n",
        ("tests/store/test_queue_step.py",),
        database="postgresql",
    ),
    Mutant(
        "idle-worker-waits-pg",
        "an idle worker waits for the backfill rows its last claim skipped (PostgreSQL)",
        Q,
        "    mine = sorted({f.backfill_id for f in finished} | set(wait_for))\n",
        "    mine = sorted({f.backfill_id for f in finished})\n",
        ("tests/store/test_queue_step.py",),
        database="postgresql",
    ),
    Mutant(
        "freed-slot-same-step",
        "a slot freed at max_active_runs goes to the same backfill in the same step",
        Q,
        '            bf["runs_running"] += d.running\n',
        "",
        ("tests/store/test_queue_step.py",),
    ),
    Mutant(
        "counters-failed",
        "counters move with the runs in the same transaction",
        Q,
        "        elif status is RunStatus.FAILED:\n            self.failed += 1\n",
        "        elif status is RunStatus.FAILED:\n            self.failed += 0\n",
        STORE_QUEUE,
    ),
    Mutant(
        "counters-cancelled",
        "counters move with the runs in the same transaction (cancel)",
        Q,
        "            runs_cancelled=backfills.c.runs_cancelled + cancelled + int(unmaterialized),\n",
        "            runs_cancelled=backfills.c.runs_cancelled + int(unmaterialized),\n",
        STORE_QUEUE,
    ),
    Mutant(
        "reprocess-failed",
        "reprocess=failed re-runs intervals that never completed elsewhere",
        Q,
        "        return interval_runs.c.status == RunStatus.COMPLETED.value\n",
        "        return interval_runs.c.started_at.is_not(None)\n",
        STORE_QUEUE,
    ),
    Mutant(
        "fair-share-across-calls",
        "competing backfills take turns across claims (least recently claimed first)",
        Q,
        "        .order_by(backfills.c.last_claimed_at.asc().nulls_first(), backfills.c.id)\n",
        "        .order_by(backfills.c.id)\n",
        STORE_QUEUE,
    ),
    Mutant(
        "fair-share-in-a-claim",
        "one claim deals its slots over the competing backfills",
        Q,
        "            if slots > 0 and shares[i] < room:\n",
        "            if slots > 0 and shares[i] < room and i == 0:\n",
        STORE_QUEUE,
    ),
    Mutant(
        "timeout",
        "a run is killed when it exceeds its timeout",
        "src/backfill/engine/executor.py",
        "            if run is None or run.deadline is None or run.deadline > now:\n",
        "            if run is None or run.deadline is None or run.deadline > now - 3600:\n",
        ("tests/engine/test_executor.py", "-k", "timeout_kills_a_sleeping_block"),
        marks="not e2e",  # the executor's tests start real processes (marked slow): one of them
    ),
)


def copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns(
        ".git", ".venv", ".backfill", ".mypy_cache", ".ruff_cache", ".pytest_cache", "__pycache__", "node_modules"
    )
    shutil.copytree(ROOT, dest, ignore=ignore, dirs_exist_ok=True)


def pytest(copy: Path, args: tuple[str, ...], marks: str, timeout: float) -> tuple[str, float]:
    """'pass', 'fail' or 'timeout' for these tests run against ``copy``, and the time."""
    env = dict(os.environ, PYTHONPATH=f"{copy / 'src'}{os.pathsep}{copy}", PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", marks, *args]
    t0 = time.monotonic()
    try:
        done = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - t0
    elapsed = time.monotonic() - t0
    if done.returncode == 5:  # no test collected: a selection that no longer matches
        raise SystemExit(f"no test selected by {' '.join(args)} — update the mutant list")
    return ("pass" if done.returncode == 0 else "fail"), elapsed


def stale(mutants: list[Mutant] | tuple[Mutant, ...], root: Path = ROOT) -> list[str]:
    """The mutants whose patch no longer applies: their file is gone or their text does
    not occur exactly once (the code moved; tests/test_mutants.py runs this in make test)."""
    problems = []
    for m in mutants:
        path = root / m.path
        count = path.read_text().count(m.old) if path.is_file() else 0
        if count != 1:
            problems.append(f"mutant {m.name}: its text occurs {count} times in {m.path}, not once")
    return problems


def check_import(copy: Path) -> None:
    env = dict(os.environ, PYTHONPATH=f"{copy / 'src'}{os.pathsep}{copy}")
    where = subprocess.run(
        [sys.executable, "-c", "import backfill; print(backfill.__file__)"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not where.startswith(str(copy)):
        raise SystemExit(f"the copy's package is not the one imported ({where}); mutants would test the original")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutants")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per test run (a hang counts as killed)")
    args = parser.parse_args()
    chosen = list(MUTANTS)
    if args.only:
        unknown = set(args.only) - {m.name for m in MUTANTS}
        if unknown:
            parser.error(f"unknown mutant(s): {', '.join(sorted(unknown))}")
        chosen = [m for m in MUTANTS if m.name in args.only]
    if args.list:
        for m in chosen:
            print(f"{m.name:26} {m.path}: {m.rule}")
        return 0
    database = "PostgreSQL" if os.environ.get("BACKFILL_TEST_DATABASE_URL") else "SQLite"
    elsewhere = [m for m in chosen if m.database not in (None, database.lower())]
    if elsewhere:
        names = ", ".join(m.name for m in elsewhere)
        print(f"not on {database} (code only the other database runs; run them there): {names}")
        chosen = [m for m in chosen if m not in elsewhere]
    with tempfile.TemporaryDirectory(prefix="backfill-mutants-") as tmp:
        copy = Path(tmp)
        copy_tree(copy)
        check_import(copy)
        originals: dict[str, str] = {}
        for problem in stale(chosen, copy):
            print(problem)
            return 2
        for m in chosen:
            originals.setdefault(m.path, (copy / m.path).read_text())
        print(f"{len(chosen)} mutants, tests on {database}; baseline (unmutated) first")
        for selection in sorted({(m.tests, m.marks) for m in chosen}):
            outcome, _ = pytest(copy, *selection, timeout=args.timeout)
            if outcome != "pass":
                print(f"baseline fails: {' '.join(selection[0])} ({outcome}); fix the tests first")
                return 2
        survived: list[str] = []
        for m in chosen:
            (copy / m.path).write_text(originals[m.path].replace(m.old, m.new))
            try:
                outcome, elapsed = pytest(copy, m.tests, m.marks, args.timeout)
            finally:
                (copy / m.path).write_text(originals[m.path])
            verdict = "survived" if outcome == "pass" else "killed" + (" (timeout)" if outcome == "timeout" else "")
            if outcome == "pass":
                survived.append(m.name)
            print(f"{verdict:17} {m.name:26} {elapsed:5.1f} s  {m.rule}", flush=True)
    print(f"{len(chosen) - len(survived)} killed, {len(survived)} survived")
    if survived:
        print("survivors (the tests are weaker than these rules): " + ", ".join(survived))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
