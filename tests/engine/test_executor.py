"""The executor with real child processes: results, failures, crashes, kills, logs, slots."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from backfill.domain.model import BlockType
from backfill.domain.pipeline import Block, PipelineDefinition
from backfill.engine.executor import Executor, RunOutcome, RunRequest

pytestmark = pytest.mark.slow

START = datetime(2024, 1, 1, tzinfo=UTC)


def py(uuid: str, body: str, upstream: tuple[str, ...] = (), path: str | None = None) -> Block:
    """A python block whose ``run(context)`` has ``body`` (already indented by 4)."""
    return Block(uuid, BlockType.PYTHON, f"def run(context):\n{body}\n", upstream=upstream, path=path)


def pipeline(*blocks: Block, uuid: str = "p") -> PipelineDefinition:
    return PipelineDefinition(uuid=uuid, name=uuid, blocks=blocks)


def request(
    run_id: int,
    pipe: PipelineDefinition,
    *,
    timeout: float | None = 30,
    block_uuids: tuple[str, ...] | None = None,
    start: datetime = START,
    end: datetime | None = None,
    timezone: str = "UTC",
    variables: dict[str, Any] | None = None,
    connections: dict[str, str] | None = None,
    attempt: int = 1,
) -> RunRequest:
    return RunRequest(
        run_id=run_id,
        attempt=attempt,
        backfill_id=5,
        pipeline=pipe,
        block_uuids=block_uuids,
        interval_start=start,
        interval_end=end or start + timedelta(days=1),
        timezone=timezone,
        variables=variables or {},
        connections=connections or {},
        timeout_seconds=timeout,
    )


def collect(ex: Executor, count: int = 1, within: float = 20) -> list[RunOutcome]:
    out: list[RunOutcome] = []
    deadline = time.monotonic() + within
    while len(out) < count:
        assert time.monotonic() < deadline, f"only {len(out)} of {count} outcomes after {within}s"
        out.extend(ex.poll(0.5))
    assert len(out) == count, out
    return out


def run_one(ex: Executor, req: RunRequest, within: float = 20) -> RunOutcome:
    ex.submit(req)
    (outcome,) = collect(ex, 1, within)
    assert (outcome.run_id, outcome.attempt) == (req.run_id, req.attempt)
    return outcome


def wait_for_log(ex: Executor, run_id: int, text: str, within: float = 10) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        log = ex.read_log(run_id)
        if text in log:
            return log
        time.sleep(0.02)
    raise AssertionError(f"{text!r} never appeared in the log of run {run_id}: {ex.read_log(run_id)!r}")


def gone(pid: int, within: float = 5) -> bool:
    deadline = time.monotonic() + within
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


@pytest.fixture
def ex() -> Iterator[Executor]:
    with Executor(1) as executor:
        yield executor


NOOP = pipeline(py("noop", "    return None"), uuid="noop")


def assert_still_works(ex: Executor, run_id: int) -> None:
    outcome = run_one(ex, request(run_id, pipeline(py("ok", "    return {'rows': 1}"), uuid="ok")))
    assert outcome.ok, outcome.error
    assert outcome.rows == 1


# --------------------------------------------------------------------------- results


def test_runs_execute_under_sched_batch_so_a_send_does_not_preempt_the_worker(ex: Executor) -> None:
    """The child and what a block starts run as SCHED_BATCH; the worker keeps its policy."""
    outcome = run_one(
        ex,
        request(
            1,
            pipeline(
                py(
                    "s",
                    "    import os, subprocess, sys\n"
                    "    code = 'import os; print(os.sched_getscheduler(0))'\n"
                    "    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)\n"
                    "    sub = int(done.stdout)\n"
                    "    return {'child': os.sched_getscheduler(0), 'sub': sub}",
                ),
                uuid="s",
            ),
        ),
    )
    assert outcome.ok, outcome.error
    assert json.loads(outcome.block_results[0].output or "{}") == {"child": os.SCHED_BATCH, "sub": os.SCHED_BATCH}
    assert os.sched_getscheduler(0) == os.SCHED_OTHER


def test_python_block_rows(ex: Executor) -> None:
    outcome = run_one(ex, request(1, pipeline(py("load", "    return {'rows': 3}"))))
    assert outcome.ok
    assert outcome.error is None
    assert outcome.rows == 3
    assert not outcome.timed_out
    assert not outcome.cancelled
    (block,) = outcome.block_results
    assert block.uuid == "load"
    assert block.status == "completed"
    assert block.rows == 3
    assert block.output == '{"rows": 3}'
    assert block.started_at is not None
    assert block.ended_at is not None
    assert block.started_at.tzinfo is not None
    assert block.started_at <= block.ended_at
    assert outcome.duration >= 0


def test_upstream_values_flow_down_a_chain(ex: Executor) -> None:
    pipe = pipeline(
        py(
            "c",
            "    return {'rows': context.upstream['b']['rows'] + 1, 'seen': sorted(context.upstream)}",
            ("b",),
        ),
        py("a", "    return {'rows': 1, 'token': 'from-a'}"),
        py(
            "b",
            "    a = context['upstream']['a']\n    return {'rows': a['rows'] * 10, 'token': a['token']}",
            ("a",),
        ),
    )
    outcome = run_one(ex, request(1, pipe))
    assert outcome.ok, outcome.error
    assert [b.uuid for b in outcome.block_results] == ["a", "b", "c"]  # topological order
    assert [b.rows for b in outcome.block_results] == [1, 10, 11]
    assert outcome.rows == 22
    assert outcome.block_results[1].output == '{"rows": 10, "token": "from-a"}'
    assert outcome.block_results[2].output == '{"rows": 11, "seen": ["b"]}'  # direct upstream only


def test_block_selection_runs_exactly_the_selected_blocks(ex: Executor, tmp_path: Path) -> None:
    marker = tmp_path / "ran.txt"
    body = f"    open({str(marker)!r}, 'a').write(context.block_uuid + '\\n')\n    return {{'rows': 1}}"
    pipe = pipeline(py("a", body), py("b", body, ("a",)), py("c", body, ("b",)))
    outcome = run_one(ex, request(1, pipe, block_uuids=("c", "a")))
    assert outcome.ok, outcome.error
    assert [b.uuid for b in outcome.block_results] == ["a", "c"]
    assert marker.read_text().split() == ["a", "c"]
    assert outcome.rows == 2

    ex.submit(request(2, pipe, block_uuids=("nope",)))
    (bad,) = collect(ex)
    assert not bad.ok
    assert bad.error is not None
    assert "nope" in bad.error
    assert ex.free_slots == 1


def test_log_captures_print_logger_and_subprocess_output(ex: Executor) -> None:
    body = (
        "    import os, sys\n"
        "    print('printed', context.ds)\n"
        "    context.logger.warning('logged %s', context.run_id)\n"
        "    sys.stdout.flush()\n"
        "    os.system('echo from-a-subprocess; echo to-stderr >&2')\n"
        "    return {'rows': 0}"
    )
    outcome = run_one(ex, request(41, pipeline(py("talk", body))))
    assert outcome.ok, outcome.error
    assert "printed 2024-01-01" in outcome.log
    assert "logged 41" in outcome.log
    assert "from-a-subprocess" in outcome.log
    assert "to-stderr" in outcome.log
    assert outcome.log.index("printed") < outcome.log.index("from-a-subprocess")
    assert outcome.log.startswith("--- block ")  # a header line per block
    # the next run on the same child starts with an empty log (a silent run stores no
    # log: its block's header alone is not output)
    assert run_one(ex, request(42, NOOP)).log == ""


def test_a_run_never_sees_the_log_of_the_run_before_it_in_its_slot(ex: Executor) -> None:
    """The slot keeps one log file for all its runs: it is emptied before the next run is
    sent, so a live read of a run that has just been handed to its child (a worker's
    partial-log flush) cannot return the previous run's output."""
    assert "first-run" in run_one(ex, request(43, pipeline(py("talk", "    print('first-run')")))).log
    ex.submit(request(44, pipeline(py("wait", "    import time\n    time.sleep(60)")), timeout=None))
    assert ex.read_log(44) == ""  # at once, before the child has even started it
    ex.cancel(44)
    (outcome,) = collect(ex)
    assert outcome.cancelled and "first-run" not in outcome.log


def test_a_removed_log_directory_is_made_again(ex: Executor) -> None:
    """A temp cleaner under a long-lived worker: the child opens its slot's file again."""
    assert run_one(ex, request(45, NOOP)).ok
    shutil.rmtree(ex._dir)
    outcome = run_one(ex, request(46, pipeline(py("talk", "    print('after-the-cleaner')"))))
    assert outcome.ok, outcome.error
    assert "after-the-cleaner" in outcome.log


def test_a_block_that_closes_the_slots_log_fd_breaks_neither_logs_nor_its_own_files(
    ex: Executor, tmp_path: Path
) -> None:
    """The child keeps its slot's log file open between runs. A block that closes that fd
    and opens a file of its own (likely under the same number) keeps its file open, and
    the next runs still get their logs."""
    kept = tmp_path / "kept.txt"
    closer = (
        "    import builtins, os\n"
        "    for name in os.listdir('/proc/self/fd'):\n"
        "        fd = int(name)\n"
        "        try:\n"
        "            target = os.readlink(f'/proc/self/fd/{fd}')\n"
        "        except OSError:\n"
        "            continue  # the listing's own fd\n"
        "        if fd > 2 and target.endswith('.log'):\n"
        "            os.close(fd)\n"
        f"    builtins.kept_file = open({str(kept)!r}, 'w')\n"
        "    print('second-run')"
    )
    writer = (
        "    import builtins\n"
        "    builtins.kept_file.write('still-open')\n"
        "    builtins.kept_file.flush()\n"
        "    print('third')"
    )
    assert "first" in run_one(ex, request(47, pipeline(py("one", "    print('first')")))).log
    assert "second-run" in run_one(ex, request(48, pipeline(py("two", closer)))).log
    third = run_one(ex, request(49, pipeline(py("three", writer))))
    assert third.ok, third.error
    assert "third" in third.log
    assert kept.read_text() == "still-open"


def test_unpicklable_return_values_are_summarized(ex: Executor) -> None:
    pipe = pipeline(
        py("gen", "    return {'rows': 2, 'lock': __import__('threading').Lock(), 'f': lambda: 1}"),
        py("big", "    return 'x' * 5000", ("gen",)),
    )
    outcome = run_one(ex, request(1, pipe))
    assert outcome.ok, outcome.error
    assert outcome.rows == 2
    assert outcome.block_results[0].output is not None
    assert '"rows": 2' in outcome.block_results[0].output
    big = outcome.block_results[1].output
    assert big is not None
    assert len(big) <= 1000


def test_context_in_europe_berlin(ex: Executor) -> None:
    start = datetime(2024, 3, 31, 0, 0, tzinfo=UTC)  # 01:00 CET; DST starts at 02:00 local
    body = (
        "    assert context['ds'] == context.ds\n"
        "    return {'ds': context.ds, 'hr': context['hr'], 'secs': context.interval_seconds,\n"
        "            'start': context.interval_start.isoformat(), 'var': context.variables['region'],\n"
        "            'ids': [context.backfill_id, context.run_id, context.attempt]}"
    )
    outcome = run_one(
        ex,
        request(
            7,
            pipeline(py("ctx", body)),
            start=start,
            end=start + timedelta(hours=2),
            timezone="Europe/Berlin",
            variables={"region": "eu"},
            attempt=3,
        ),
    )
    assert outcome.ok, outcome.error
    assert outcome.block_results[0].output == (
        '{"ds": "2024-03-31", "hr": "01", "secs": 7200, "start": "2024-03-31T00:00:00+00:00", '
        '"var": "eu", "ids": [5, 7, 3]}'
    )


# --------------------------------------------------------------------------- failures


def test_exception_names_block_and_skips_the_rest(ex: Executor, tmp_path: Path) -> None:
    path = tmp_path / "load.py"
    source = "def run(context):\n    rows = [1, 2]\n    raise ValueError('bad row')\n"
    path.write_text(source)
    pipe = pipeline(
        py("extract", "    return {'rows': 5}"),
        Block("load", BlockType.PYTHON, source, upstream=("extract",), path=str(path)),
        py("report", "    return {'rows': 1}", ("load",)),
    )
    outcome = run_one(ex, request(1, pipe))
    assert not outcome.ok
    assert outcome.error is not None
    first, _, rest = outcome.error.partition("\n")
    assert first == "block 'load' failed: ValueError: bad row"
    assert "Traceback" in rest
    assert str(path) in rest
    assert "raise ValueError('bad row')" in rest
    assert "executor.py" not in rest  # the traceback starts in the block's code
    assert [(b.uuid, b.status) for b in outcome.block_results] == [
        ("extract", "completed"),
        ("load", "failed"),
        ("report", "skipped"),
    ]
    assert outcome.block_results[1].error is not None
    assert outcome.block_results[1].error.startswith("block 'load' failed: ValueError: bad row")
    assert outcome.rows == 5
    assert_still_works(ex, 2)


def test_missing_run_function(ex: Executor) -> None:
    outcome = run_one(ex, request(1, pipeline(Block("x", BlockType.PYTHON, "y = 1\n"))))
    assert outcome.error == "block 'x' failed: python block 'x' defines no run(context) function"


def test_sys_exit_in_block_is_a_block_failure(ex: Executor) -> None:
    outcome = run_one(ex, request(1, pipeline(py("quit", "    import sys\n    sys.exit(3)"))))
    assert not outcome.ok
    assert outcome.error is not None
    assert outcome.error.startswith("block 'quit' failed: SystemExit: 3")
    assert_still_works(ex, 2)


def test_os_exit_kills_only_the_child(ex: Executor) -> None:
    pipe = pipeline(py("first", "    return {'rows': 4}"), py("die", "    import os\n    os._exit(9)", ("first",)))
    outcome = run_one(ex, request(1, pipe))
    assert not outcome.ok
    assert not outcome.timed_out
    assert not outcome.cancelled
    assert outcome.error == "executor process died (exit code 9) while running block 'die'"
    assert [(b.uuid, b.status) for b in outcome.block_results] == [("first", "completed"), ("die", "failed")]
    assert outcome.rows == 4
    assert_still_works(ex, 2)


def test_segfault_kills_only_the_child(ex: Executor) -> None:
    outcome = run_one(ex, request(1, pipeline(py("boom", "    import ctypes\n    ctypes.string_at(0)"))))
    assert not outcome.ok
    assert outcome.error is not None
    assert outcome.error.startswith("executor process died (signal 11)")
    assert_still_works(ex, 2)


def test_shell_nonzero_exit(ex: Executor) -> None:
    pipe = pipeline(Block("sh", BlockType.SHELL, "echo about to fail {{ ds }}; echo oops >&2; exit 3"))
    outcome = run_one(ex, request(1, pipe))
    assert not outcome.ok
    assert outcome.error == "block 'sh' failed: command exited with status 3"
    assert "about to fail 2024-01-01" in outcome.log
    assert "oops" in outcome.log


def test_sql_block_on_sqlite(ex: Executor, tmp_path: Path) -> None:
    db = tmp_path / "wh.db"
    conns = {"wh": f"sqlite:///{db}"}
    pipe = pipeline(
        Block("ddl", BlockType.SQL, "CREATE TABLE IF NOT EXISTS daily (ds TEXT, v INT)", connection="wh"),
        Block(
            "load",
            BlockType.SQL,
            "DELETE FROM daily WHERE ds = '{{ ds }}';\nINSERT INTO daily VALUES ('{{ ds }}', {{ variables.v }})",
            upstream=("ddl",),
            connection="wh",
        ),
        Block("check", BlockType.SQL, "SELECT ds, v FROM daily", upstream=("load",), connection="wh"),
    )
    outcome = run_one(ex, request(1, pipe, variables={"v": 42}, connections=conns))
    assert outcome.ok, outcome.error
    assert [b.rows for b in outcome.block_results] == [0, 1, 1]
    # sql results summarized, in the run detail and in the log under each block's header
    assert outcome.block_results[2].output == "sql: 1 statement; the last returned 1 row (ds, v)\n  '2024-01-01' | 42"
    assert outcome.block_results[1].output == "sql: 2 statements; the last affected 1 row"
    log = outcome.log
    headers = [line for line in log.splitlines() if line.startswith("--- block ")]
    assert [h.split()[2] for h in headers] == [b.uuid for b in outcome.block_results]
    assert log.index(headers[2]) < log.index("the last returned 1 row (ds, v)\n  '2024-01-01' | 42")
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT ds, v FROM daily").fetchall() == [("2024-01-01", 42)]

    bad = pipeline(Block("q", BlockType.SQL, "SELECT '{{ no_such_var }}'", connection="wh"))
    outcome = run_one(ex, request(2, bad, connections=conns))
    assert not outcome.ok
    assert outcome.error is not None
    assert outcome.error.startswith("block 'q' failed: template error: 'no_such_var' is undefined (valid names: ")
    assert "ds_nodash" in outcome.error  # the valid names are listed


# --------------------------------------------------------------------------- timeouts and cancel


def test_timeout_kills_a_sleeping_block(ex: Executor) -> None:
    pipe = pipeline(py("done", "    return {'rows': 2}"), py("slow", "    import time\n    time.sleep(60)", ("done",)))
    began = time.monotonic()
    outcome = run_one(ex, request(1, pipe, timeout=1))
    assert time.monotonic() - began < 5
    assert outcome.timed_out
    assert not outcome.ok
    assert not outcome.cancelled
    assert outcome.error is not None
    assert outcome.error.startswith("timed out after 1s")
    assert 0.9 < outcome.duration < 5
    assert [(b.uuid, b.status) for b in outcome.block_results] == [("done", "completed"), ("slow", "failed")]
    assert outcome.rows == 2
    assert_still_works(ex, 2)


def test_timeout_kills_the_whole_shell_tree(ex: Executor) -> None:
    pipe = pipeline(Block("sh", BlockType.SHELL, 'sleep 100 & echo "PIDS $$ $!"; sleep 100'))
    ex.submit(request(1, pipe, timeout=1.5))
    log = wait_for_log(ex, 1, "PIDS")
    sh_pid, bg_pid = (int(x) for x in log.split("PIDS ")[1].split()[:2])
    child = psutil.Process(sh_pid).parent()
    assert child is not None
    tree = [child.pid, *(p.pid for p in child.children(recursive=True))]
    assert sh_pid in tree
    assert bg_pid in tree
    assert len(tree) >= 4
    (outcome,) = collect(ex)
    assert outcome.timed_out
    assert "PIDS" in outcome.log
    for pid in tree:
        assert gone(pid), f"process {pid} of the killed tree is still running"
    assert_still_works(ex, 2)


def test_kill_reaches_descendants_in_another_process_group(ex: Executor) -> None:
    body = (
        "    import subprocess, time\n"
        "    p = subprocess.Popen(['sleep', '100'], start_new_session=True)\n"
        "    print('DETACHED', p.pid, flush=True)\n"
        "    time.sleep(100)"
    )
    ex.submit(request(1, pipeline(py("detach", body)), timeout=30))
    log = wait_for_log(ex, 1, "DETACHED")
    pid = int(log.split("DETACHED ")[1].split()[0])
    assert os.getpgid(pid) == pid  # really in its own group
    assert ex.cancel(1) is True
    (outcome,) = collect(ex)
    assert outcome.cancelled
    assert gone(pid)


def test_cancel_a_running_run(ex: Executor) -> None:
    body = "    import time\n    print('working', flush=True)\n    time.sleep(60)"
    pipe = pipeline(py("slow", body), py("after", "    return 1", ("slow",)))
    ex.submit(request(9, pipe, timeout=None))
    wait_for_log(ex, 9, "working")
    assert ex.running() == [(9, 1)]
    assert ex.cancel(9) is True
    assert ex.cancel(12345) is False
    (outcome,) = collect(ex)
    assert outcome.run_id == 9
    assert outcome.cancelled
    assert not outcome.ok
    assert not outcome.timed_out
    assert outcome.error is not None
    assert outcome.error.split("\n")[0] == "cancelled"
    assert "working" in outcome.log
    assert [(b.uuid, b.status) for b in outcome.block_results] == [("slow", "failed"), ("after", "skipped")]
    assert ex.running() == []
    assert ex.cancel(9) is False
    assert_still_works(ex, 10)


def test_cancel_of_a_finished_but_unpolled_run_keeps_its_real_outcome(ex: Executor) -> None:
    ex.submit(request(1, pipeline(py("quick", "    return {'rows': 7}"))))
    time.sleep(0.5)  # finished, not yet collected
    assert ex.cancel(1) is False
    (outcome,) = collect(ex)
    assert outcome.ok
    assert not outcome.cancelled
    assert outcome.rows == 7


# --------------------------------------------------------------------------- logs


def test_huge_output_is_capped_keeping_head_and_tail() -> None:
    body = (
        "    import sys\n"
        "    sys.stdout.write('HEAD-MARK\\n')\n"
        "    for _ in range(5000):\n"
        "        sys.stdout.write('y' * 1023 + '\\n')\n"
        "    sys.stdout.write('TAIL-MARK\\n')\n"
        "    return {'rows': 1}"
    )
    with Executor(1, max_log_bytes=100_000) as ex:
        outcome = run_one(ex, request(1, pipeline(py("loud", body))))
    assert outcome.ok, outcome.error
    header = "--- block loud (python) ---\n"
    assert outcome.log.startswith(header + "HEAD-MARK\n")
    assert outcome.log.endswith("TAIL-MARK\n")
    total = len(header) + len("HEAD-MARK\n") + 5000 * 1024 + len("TAIL-MARK\n")
    assert f"[... {total - 100_000} bytes truncated ...]" in outcome.log
    assert len(outcome.log) < 100_100


def test_read_log_of_a_running_run(ex: Executor) -> None:
    body = "    import time\n    print('partial-1', flush=True)\n    time.sleep(60)\n    print('never')"
    ex.submit(request(3, pipeline(py("tail", body)), timeout=None))
    log = wait_for_log(ex, 3, "partial-1")
    assert "never" not in log
    assert ex.read_log(999) == ""
    assert ex.log_size(3) == len(log.encode())  # what the worker checks before re-reading
    assert ex.log_size(999) == 0
    ex.cancel(3)
    collect(ex)


# --------------------------------------------------------------------------- slots and children


def test_four_slots_run_in_parallel_and_a_full_pool_refuses() -> None:
    pipe = pipeline(py("nap", "    import time\n    time.sleep(1)\n    return {'rows': 1}"))
    with Executor(4) as ex:
        assert ex.free_slots == 4
        began = time.monotonic()
        for run_id in range(1, 5):
            ex.submit(request(run_id, pipe))
        assert ex.free_slots == 0
        assert sorted(ex.running()) == [(1, 1), (2, 1), (3, 1), (4, 1)]
        with pytest.raises(RuntimeError, match="no free executor slot"):
            ex.submit(request(5, pipe))
        outcomes = collect(ex, 4)
        elapsed = time.monotonic() - began
    assert all(o.ok for o in outcomes)
    assert sorted(o.run_id for o in outcomes) == [1, 2, 3, 4]
    assert elapsed < 2.5, f"4 x 1s runs took {elapsed:.2f}s"


def test_children_are_reused_and_recycled_after_max_runs() -> None:
    pid_pipe = pipeline(py("pid", "    import os\n    return os.getpid()"))
    with Executor(1) as ex:
        pids = {run_one(ex, request(i, pid_pipe)).block_results[0].output for i in range(1, 4)}
        assert len(pids) == 1
        assert pids != {str(os.getpid())}
    with Executor(1, max_runs_per_child=2) as ex:
        pids_list = [run_one(ex, request(i, pid_pipe)).block_results[0].output for i in range(1, 6)]
        assert pids_list[0] == pids_list[1] != pids_list[2] == pids_list[3] != pids_list[4]


def test_poll_returns_each_outcome_once_and_times_out_quietly(ex: Executor) -> None:
    began = time.monotonic()
    assert ex.poll(0.2) == []
    assert 0.15 < time.monotonic() - began < 2
    run_one(ex, request(1, NOOP))
    assert ex.poll(0.1) == []


def test_submit_of_a_running_run_id_is_refused() -> None:
    pipe = pipeline(py("nap", "    import time\n    time.sleep(0.5)"))
    with Executor(2) as ex:
        ex.submit(request(1, pipe))
        with pytest.raises(RuntimeError, match="already executing"):
            ex.submit(request(1, pipe))
        collect(ex)


def test_close_kills_children_and_is_idempotent() -> None:
    ex = Executor(2)
    nap = "    import time\n    print('napping', flush=True)\n    time.sleep(60)"
    ex.submit(request(1, pipeline(py("nap", nap)), timeout=None))
    wait_for_log(ex, 1, "napping")
    children = [s.process.pid for s in ex._slots if s.process is not None and s.process.pid is not None]
    assert len(children) == 2
    ex.close()
    ex.close()
    for pid in children:
        assert gone(pid)
    assert ex.free_slots == 0
    assert ex.poll(0) == []
    with pytest.raises(RuntimeError, match="closed"):
        ex.submit(request(2, NOOP))


def test_many_noop_runs_on_reused_children() -> None:
    with Executor(2) as ex:
        for i in range(2):
            ex.submit(request(i, NOOP))
        collect(ex, 2)
        n = 400
        submitted = done = 0
        while submitted < 2:
            ex.submit(request(1000 + submitted, NOOP))
            submitted += 1
        while done < n:
            for outcome in ex.poll(1):
                assert outcome.ok, outcome.error
                done += 1
                if submitted < n:
                    ex.submit(request(1000 + submitted, NOOP))
                    submitted += 1
    # Speed is measured in benchmarks/executor.py, never asserted here (noisy machines).
    assert done == n


def test_block_changes_to_environ_and_cwd_do_not_leak_into_the_next_run(ex: Executor) -> None:
    leak = "    import os\n    os.environ['BACKFILL_TEST_LEAK'] = '1'\n    os.chdir('/')\n    return os.getcwd()"
    check = "    import os\n    return [os.environ.get('BACKFILL_TEST_LEAK'), os.getcwd()]"
    first = run_one(ex, request(1, pipeline(py("leak", leak))))
    assert first.block_results[0].output == '"/"'
    second = run_one(ex, request(2, pipeline(py("check", check))))
    assert second.block_results[0].output is not None
    leaked, cwd = json.loads(second.block_results[0].output)
    assert leaked is None
    assert cwd != "/"


WORKER_SCRIPT = """
import sys, time
from datetime import UTC, datetime, timedelta
from backfill.domain.model import BlockType
from backfill.domain.pipeline import Block, PipelineDefinition
from backfill.engine.executor import Executor, RunRequest

if __name__ == "__main__":
    start = datetime(2024, 1, 1, tzinfo=UTC)
    block = Block("sh", BlockType.SHELL, 'sleep 100 & echo "PIDS $$ $!"; sleep 100')
    pipe = PipelineDefinition("p", "p", (block,))
    ex = Executor(1)
    ex.submit(RunRequest(1, 1, 1, pipe, None, start, start + timedelta(days=1), "UTC", {}, {}, None))
    while "PIDS" not in ex.read_log(1):
        time.sleep(0.02)
    print(ex._slots[0].process.pid, ex.read_log(1).split("PIDS ")[1].strip(), flush=True)
    time.sleep(100)
"""


def test_runs_die_with_a_killed_worker_process(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # where the executor makes its log directory
    worker = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert worker.stdout is not None
        pids = [int(p) for p in worker.stdout.readline().split()]
        assert len(pids) == 3  # executor child, sh, background sleep
        for pid in pids:
            assert psutil.pid_exists(pid)
    finally:
        worker.kill()
        worker.wait()
    for pid in pids:
        assert gone(pid), f"process {pid} outlived the worker"
    deadline = time.monotonic() + 5
    while any(tmp_path.glob("backfill-executor-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(tmp_path.glob("backfill-executor-*")), "the dead worker's log directory is left"
