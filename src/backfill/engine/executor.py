"""Parent-side pool of long-lived child processes that execute interval runs (RELIABILITY.md).

The child side (what a child process does with a run) is ``engine/child.py``; what the
two send each other is ``engine/wire.py``. Here: the ``Executor``, its slots, polling,
timeouts, kills and the runs' log files.

Design
------
* ``slots`` children, started with multiprocessing's ``forkserver`` context (``spawn``
  where forkserver does not exist) — never plain ``fork``: the parent has threads. The
  fork server preloads ``engine.child`` (and so SQLAlchemy, Jinja2, psutil), so replacing
  a killed child takes milliseconds.
* Each child calls ``os.setsid()`` first, so it leads its own session and process group;
  shell commands a block starts stay in that group. Each child is also a subreaper
  (``engine.proctree``): descendants that ``setsid()`` and double-fork are re-parented to
  it, not to PID 1. After every run the child kills (and reaps) all its descendants.
  Killing a run (timeout, cancel) stops the group, stops and collects every descendant of
  the child (also those that moved to another group) and SIGKILLs all of them; the pool
  then starts a fresh child for the slot.
* A thread in each child watches its pipe, and the child asks for a signal when its
  parent dies (``PR_SET_PDEATHSIG``): when the worker died, even by SIGKILL, the child
  kills all its descendants and its process group, so no run outlives its worker.
* Children are reused across runs (compiled code, templates and SQL engines stay cached
  in ``blocks``); ``max_runs_per_child`` recycles a child after N runs. Changes a block
  makes to ``os.environ``, the working directory or ``sys.stdout`` are undone after the run.
* One duplex ``Pipe`` per child. Parent -> child: one pickled ``wire.Job`` per run.
  Child -> parent: ``wire.Progress`` after each completed block that is not the last one
  (so a killed run still reports its finished blocks) and ``wire.Finished`` when the run
  ends.
* In the child, fds 1 and 2 point at the slot's file in the executor's temp directory
  (emptied before each run) for the duration of the run, so output of subprocesses is
  captured too. The parent reads it for ``read_log`` and, capped to ``max_log_bytes``
  (head + tail), for the outcome.

Threading: ``poll`` is meant to be called from one thread; ``submit``, ``cancel``,
``running``, ``read_log`` and ``free_slots`` may be called from any thread.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import math
import multiprocessing
import os
import pickle
import select
import shutil
import signal
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from backfill.domain.pipeline import Block, PipelineDefinition, selected_blocks
from backfill.engine import proctree
from backfill.engine.child import MAX_ERROR_CHARS, child_main
from backfill.engine.wire import Finished, Job, Message, Progress, WireBlockResult, to_micros

__all__ = ["BlockResult", "Executor", "RunOutcome", "RunRequest"]


@dataclass(frozen=True)
class RunRequest:
    run_id: int
    attempt: int
    backfill_id: int
    pipeline: PipelineDefinition
    block_uuids: tuple[str, ...] | None  # None = all blocks
    interval_start: datetime  # aware UTC
    interval_end: datetime  # aware UTC, exclusive
    timezone: str  # for ds/hr: local date/hour of interval_start in this zone
    variables: Mapping[str, Any]  # already merged: pipeline globals <- backfill overrides
    connections: Mapping[str, str]  # name -> SQLAlchemy URL
    timeout_seconds: float | None  # None (or <= 0): no timeout


@dataclass(frozen=True)
class BlockResult:
    uuid: str
    status: str  # "completed" | "failed" | "skipped" (not run because an earlier block failed)
    started_at: datetime | None
    ended_at: datetime | None
    rows: int | None
    error: str | None
    output: str | None  # short JSON (or repr) of the return value, <= 1000 chars


@dataclass(frozen=True)
class RunOutcome:
    run_id: int
    attempt: int
    ok: bool
    error: str | None
    timed_out: bool
    cancelled: bool
    rows: int
    duration: float
    block_results: tuple[BlockResult, ...]
    log: str

    @classmethod
    def not_run(cls, run_id: int, attempt: int, error: str) -> RunOutcome:
        """The failed outcome of an attempt that never ran (it could not start)."""
        return cls(
            run_id=run_id,
            attempt=attempt,
            ok=False,
            error=error[:MAX_ERROR_CHARS],
            timed_out=False,
            cancelled=False,
            rows=0,
            duration=0.0,
            block_results=(),
            log="",
        )


def _start_context(method: str | None) -> Any:
    """The multiprocessing context children are started with (never plain fork)."""
    if method is None:
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    if method == "forkserver":
        ctx = multiprocessing.get_context("forkserver")
        # Preloaded once in the fork server, so a fresh child starts in milliseconds.
        ctx.set_forkserver_preload(["__main__", "backfill.engine.child"])
        return ctx
    if method == "spawn":
        return multiprocessing.get_context("spawn")
    raise ValueError("start_method must be 'forkserver' or 'spawn' (the parent has threads)")


def _kill_tree(process: BaseProcess) -> None:
    """SIGKILL a child, its process group and all its descendants."""
    pid = process.pid
    if pid is None:
        return
    if process.exitcode is not None:
        # Already gone (and possibly reaped): only its group may be left. A process
        # group id stays reserved while the group has members, so this hits nobody else.
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        return
    try:
        leader = os.getpgid(pid) == pid
    except OSError:
        leader = False
    if leader:  # freeze the group so nobody forks while we collect the tree
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGSTOP)
    # every descendant (also those in other sessions, re-parented to the subreaper child)
    proctree.kill_descendants(pid, reap=False)
    with contextlib.suppress(OSError):
        if leader:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)


def _read_capped(path: str, limit: int) -> str:
    """The file's text; above ``limit`` bytes keep head and tail around a truncation marker."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size <= limit:
                return f.read(size).decode("utf-8", "replace")
            head_bytes = limit // 2
            tail_bytes = limit - head_bytes
            head = f.read(head_bytes)
            f.seek(size - tail_bytes)
            tail = f.read(tail_bytes)
    except FileNotFoundError:
        return ""
    cut = size - len(head) - len(tail)
    return head.decode("utf-8", "replace") + f"\n[... {cut} bytes truncated ...]\n" + tail.decode("utf-8", "replace")


def _exit_description(exitcode: int | None) -> str:
    if exitcode is None:
        return "exit status unknown"
    if exitcode < 0:
        return f"signal {-exitcode}"
    return f"exit code {exitcode}"


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds:g}s"


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _block_result(t: WireBlockResult) -> BlockResult:
    return BlockResult(t.uuid, t.status, _dt(t.started), _dt(t.ended), t.rows, t.error, t.output)


@dataclass
class _Run:
    request: RunRequest
    block_uuids: tuple[str, ...]
    log_path: str
    started_mono: float
    started_wall: float
    deadline: float | None
    results: list[WireBlockResult] = field(default_factory=list)
    cancelled: bool = False


@dataclass
class _Slot:
    index: int
    process: BaseProcess | None = None
    conn: Connection | None = None
    readable: select.poll | None = None  # polls just this child's pipe, for draining
    runs: int = 0
    run: _Run | None = None


def _close_weak(ref: weakref.ReferenceType[Executor]) -> None:
    executor = ref()
    if executor is not None:
        executor.close()


_SELECTION_CACHE_SIZE = 64
_POLL_IN = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR


class Executor:
    """A pool of ``slots`` child processes, each executing one run at a time."""

    def __init__(
        self,
        slots: int,
        *,
        max_log_bytes: int = 1_000_000,
        max_runs_per_child: int | None = None,
        start_method: str | None = None,
    ) -> None:
        if slots < 1:
            raise ValueError("slots must be >= 1")
        if max_log_bytes < 1:
            raise ValueError("max_log_bytes must be >= 1")
        if max_runs_per_child is not None and max_runs_per_child < 1:
            raise ValueError("max_runs_per_child must be >= 1 or None")
        self._ctx = _start_context(start_method)
        self.max_log_bytes = max_log_bytes
        self.max_runs_per_child = max_runs_per_child
        self._lock = threading.RLock()
        self._closed = False
        self._waiting = False
        self._ready: list[RunOutcome] = []
        self._selections: dict[
            tuple[int, tuple[str, ...] | None], tuple[PipelineDefinition, tuple[Block, ...], bytes]
        ] = {}
        self._dir = tempfile.mkdtemp(prefix="backfill-executor-")
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        # One poll object over every child's pipe and exit sentinel, kept up to date
        # as children come and go: cheaper than building a selector on every wait.
        self._poller = select.poll()
        self._poller.register(self._wake_r, _POLL_IN)
        self._fds: dict[int, tuple[_Slot, BaseProcess, bool]] = {}  # fd -> (slot, child, is_sentinel)
        self._slots = [_Slot(i) for i in range(slots)]
        self._atexit = functools.partial(_close_weak, weakref.ref(self))
        atexit.register(self._atexit)
        try:
            for slot in self._slots:
                self._spawn(slot)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ public API

    @property
    def free_slots(self) -> int:
        with self._lock:
            return 0 if self._closed else sum(1 for s in self._slots if s.run is None)

    def submit(self, request: RunRequest) -> None:
        """Start ``request`` on a free slot (non-blocking); RuntimeError when none is free."""
        with self._lock:
            if self._closed:
                raise RuntimeError("executor is closed")
            if any(s.run is not None and s.run.request.run_id == request.run_id for s in self._slots):
                raise RuntimeError(f"run {request.run_id} is already executing")
            slot = next((s for s in self._slots if s.run is None), None)
            if slot is None:
                raise RuntimeError("no free executor slot")
            try:
                blocks, blocks_blob = self._selected(request.pipeline, request.block_uuids)
            except Exception as exc:
                self._fail_now(request, f"invalid block selection: {exc}")
                return
            # one file per slot: the last run's log was read (``_collect_log``) when it
            # ended; emptied now, before this run is sent (``read_log`` never sees it)
            log_path = os.path.join(self._dir, f"slot-{slot.index}.log")
            with contextlib.suppress(FileNotFoundError):
                os.truncate(log_path, 0)
            job = Job(
                request.run_id,
                request.attempt,
                request.backfill_id,
                request.pipeline.uuid,
                blocks_blob,
                to_micros(request.interval_start),
                to_micros(request.interval_end),
                request.timezone or "UTC",
                dict(request.variables),
                dict(request.connections),
                log_path,
            )
            try:
                # plain pickle: ForkingPickler looks a NamedTuple up in its Python-level
                # reducer table (twice the cost); a job holds nothing it would reduce
                data = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                self._fail_now(request, f"run request cannot be sent to the executor: {exc}")
                return
            sent = False
            for _ in range(2):
                if slot.conn is None:
                    try:
                        self._spawn(slot)
                    except Exception as exc:
                        self._fail_now(request, f"executor process could not be started: {exc}")
                        return
                assert slot.conn is not None
                try:
                    slot.conn.send_bytes(data)
                    sent = True
                    break
                except OSError:  # the idle child died; start a fresh one and retry once
                    self._replace_child(slot)
            if not sent:
                self._fail_now(request, "executor process could not be reached")
                return
            timeout = request.timeout_seconds
            now = time.monotonic()
            slot.run = _Run(
                request=request,
                block_uuids=tuple(b.uuid for b in blocks),
                log_path=log_path,
                started_mono=now,
                started_wall=time.time(),
                deadline=now + timeout if timeout is not None and timeout > 0 else None,
            )
            self._wake()

    def poll(self, timeout: float) -> list[RunOutcome]:
        """Wait up to ``timeout`` seconds for finished runs and return their outcomes.

        Also enforces per-run timeouts and notices dead children. Every outcome is
        returned exactly once. Returns as soon as at least one outcome is available.
        """
        end = time.monotonic() + max(0.0, timeout)
        while True:
            with self._lock:
                if self._closed:
                    return self._take_ready()
                self._enforce_deadlines()
                now = time.monotonic()
                wait_for = 0.0 if self._ready else max(0.0, end - now)
                for slot in self._slots:
                    if slot.run is not None and slot.run.deadline is not None:
                        wait_for = min(wait_for, max(0.0, slot.run.deadline - now))
                self._waiting = True
            try:
                events = self._poller.poll(math.ceil(wait_for * 1000))
            finally:
                with self._lock:
                    self._waiting = False
            with self._lock:
                if self._closed:
                    return self._take_ready()
                for fd, _ in events:
                    if fd == self._wake_r:
                        self._drain_wake()
                        continue
                    owner = self._fds.get(fd)
                    if owner is None:  # unregistered in this round (child replaced)
                        continue
                    slot, process, is_sentinel = owner
                    if slot.process is not process:
                        continue
                    dead = self._drain(slot)
                    if slot.process is not process:  # recycled after its last run
                        continue
                    if dead or (is_sentinel and process.exitcode is not None):
                        self._on_child_exit(slot)
                if self._ready or time.monotonic() >= end:
                    return self._take_ready()

    def cancel(self, run_id: int) -> bool:
        """Kill the run's process tree; its outcome (cancelled=True) comes from a later poll.

        Returns False when the run is not executing here (or has just finished).
        """
        with self._lock:
            slot = self._slot_of(run_id)
            if slot is None or slot.run is None:
                return False
            if slot.run.cancelled:
                return True
            dead = self._drain(slot)
            if slot.run is None:  # it finished meanwhile; its real outcome is queued
                return False
            slot.run.cancelled = True
            if not dead and slot.process is not None:
                _kill_tree(slot.process)
            self._wake()
            return True

    def running(self) -> list[tuple[int, int]]:
        with self._lock:
            return [(s.run.request.run_id, s.run.request.attempt) for s in self._slots if s.run is not None]

    def read_log(self, run_id: int) -> str:
        """Output captured so far for an executing run ("" when the run is not executing)."""
        with self._lock:
            slot = self._slot_of(run_id)
            path = slot.run.log_path if slot is not None and slot.run is not None else None
        return "" if path is None else _read_capped(path, self.max_log_bytes)

    def log_size(self, run_id: int) -> int:
        """Bytes of output captured so far for an executing run (0 when not executing):
        a stat, so a caller can skip reading a log that has not grown."""
        with self._lock:
            slot = self._slot_of(run_id)
            path = slot.run.log_path if slot is not None and slot.run is not None else None
        try:
            return os.path.getsize(path) if path is not None else 0
        except OSError:
            return 0

    def close(self) -> None:
        """Kill every child (and its tree). Idempotent; outcomes of executing runs are dropped."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for slot in self._slots:
                if slot.process is not None:
                    _kill_tree(slot.process)
            for slot in self._slots:
                self._discard_child(slot)
                slot.run = None
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
            shutil.rmtree(self._dir, ignore_errors=True)
            self._selections.clear()
            atexit.unregister(self._atexit)

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _selected(
        self, pipeline: PipelineDefinition, selection: tuple[str, ...] | None
    ) -> tuple[tuple[Block, ...], bytes]:
        """``selected_blocks`` and their pickle, memoized per pipeline object (kept alive here)."""
        key = (id(pipeline), None if selection is None else tuple(selection))
        hit = self._selections.get(key)
        if hit is not None and hit[0] is pipeline:
            return hit[1], hit[2]
        blocks = selected_blocks(pipeline, selection)
        blob = pickle.dumps(blocks, protocol=pickle.HIGHEST_PROTOCOL)
        if len(self._selections) >= _SELECTION_CACHE_SIZE:
            self._selections.clear()
        self._selections[key] = (pipeline, blocks, blob)
        return blocks, blob

    def _slot_of(self, run_id: int) -> _Slot | None:
        for slot in self._slots:
            if slot.run is not None and slot.run.request.run_id == run_id:
                return slot
        return None

    def _take_ready(self) -> list[RunOutcome]:
        out, self._ready = self._ready, []
        return out

    def _wake(self) -> None:
        if self._waiting:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            while os.read(self._wake_r, 4096):
                pass

    def _spawn(self, slot: _Slot) -> None:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process: BaseProcess = self._ctx.Process(
            target=child_main,
            args=(child_conn, self._dir),
            name=f"backfill-executor-{slot.index}",
        )
        try:
            process.start()
        except BaseException:
            parent_conn.close()
            raise
        finally:
            child_conn.close()
        readable = select.poll()
        readable.register(parent_conn.fileno(), _POLL_IN)
        slot.process, slot.conn, slot.readable, slot.runs = process, parent_conn, readable, 0
        for fd, is_sentinel in ((parent_conn.fileno(), False), (process.sentinel, True)):
            self._fds[fd] = (slot, process, is_sentinel)
            self._poller.register(fd, _POLL_IN)

    def _discard_child(self, slot: _Slot) -> None:
        process, conn = slot.process, slot.conn
        slot.process, slot.conn, slot.readable = None, None, None
        if conn is not None:
            self._forget_fd(conn.fileno())
            conn.close()
        if process is not None:
            self._forget_fd(process.sentinel)
            process.join(5)
            if process.exitcode is None:  # should not happen after SIGKILL
                _kill_tree(process)
                process.join(1)
            else:
                _kill_tree(process)  # leftovers of its process group
            with contextlib.suppress(ValueError):
                process.close()

    def _forget_fd(self, fd: int) -> None:
        if self._fds.pop(fd, None) is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._poller.unregister(fd)

    def _replace_child(self, slot: _Slot) -> None:
        if slot.process is not None:
            _kill_tree(slot.process)
        self._discard_child(slot)
        if not self._closed:
            with contextlib.suppress(Exception):  # else submit() starts it when the slot is used
                self._spawn(slot)

    def _drain(self, slot: _Slot) -> bool:
        """Handle every message the child has sent; True when its end of the pipe is closed."""
        conn, readable = slot.conn, slot.readable
        if conn is None or readable is None:
            return True
        try:
            while readable.poll(0):
                self._on_message(slot, conn.recv())
                if slot.conn is not conn:  # the child was recycled after that run
                    return False
        except (EOFError, OSError):
            return True
        return False

    def _on_message(self, slot: _Slot, msg: Message) -> None:
        run = slot.run
        if run is None:
            return
        run.results.extend(msg.results)
        if type(msg) is Progress:
            return
        assert type(msg) is Finished
        outcome = RunOutcome(
            run_id=run.request.run_id,
            attempt=run.request.attempt,
            ok=msg.ok,
            error=msg.error,
            timed_out=False,
            cancelled=False,
            rows=msg.rows,
            duration=msg.duration,
            block_results=tuple(_block_result(t) for t in run.results),
            log="" if msg.log_size == 0 else self._collect_log(run),
        )
        self._ready.append(outcome)
        slot.run = None
        slot.runs += 1
        if self.max_runs_per_child is not None and slot.runs >= self.max_runs_per_child:
            self._replace_child(slot)

    def _collect_log(self, run: _Run) -> str:
        return _read_capped(run.log_path, self.max_log_bytes)

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            run = slot.run
            if run is None or run.deadline is None or run.deadline > now:
                continue
            process = slot.process
            dead = self._drain(slot)
            if slot.run is not run:  # finished just in time
                continue
            if not dead and process is not None:
                _kill_tree(process)
                process.join(5)
                self._drain(slot)  # progress sent before the kill
            if slot.run is run:
                timeout = run.request.timeout_seconds or 0.0
                reason = f"timed out after {_fmt_seconds(timeout)}"
                self._ready.append(self._aborted(run, reason, timed_out=True))
                slot.run = None
            if slot.process is process:
                self._replace_child(slot)

    def _on_child_exit(self, slot: _Slot) -> None:
        process = slot.process
        run = slot.run
        if run is not None and process is not None:
            if process.exitcode is None:
                _kill_tree(process)  # its pipe broke but it lives on: make sure it is gone
            process.join(5)
            if run.cancelled:
                outcome = self._aborted(run, "cancelled", cancelled=True)
            else:
                reason = f"executor process died ({_exit_description(process.exitcode)})"
                outcome = self._aborted(run, reason, died=True)
            self._ready.append(outcome)
            slot.run = None
        self._replace_child(slot)

    def _aborted(
        self, run: _Run, reason: str, *, timed_out: bool = False, cancelled: bool = False, died: bool = False
    ) -> RunOutcome:
        """The outcome of a run whose child was killed or died."""
        now = time.time()
        results = [_block_result(t) for t in run.results]
        error = reason
        done = len(results)
        if done < len(run.block_uuids):
            current = run.block_uuids[done]
            started = results[-1].ended_at if results else _dt(run.started_wall)
            error = f"{reason} while running block {current!r}" if died else f"{reason}\nblock {current!r} was running"
            headline = error.partition("\n")[0]
            results.append(BlockResult(current, "failed", started, _dt(now), None, headline, None))
            results.extend(BlockResult(u, "skipped", None, None, None, None, None) for u in run.block_uuids[done + 1 :])
        return RunOutcome(
            run_id=run.request.run_id,
            attempt=run.request.attempt,
            ok=False,
            error=error,
            timed_out=timed_out,
            cancelled=cancelled,
            rows=sum(r.rows or 0 for r in results if r.status == "completed"),
            duration=time.monotonic() - run.started_mono,
            block_results=tuple(results),
            log=self._collect_log(run),
        )

    def _fail_now(self, request: RunRequest, error: str) -> None:
        """Queue a failed outcome for a request that never reached a child."""
        self._ready.append(RunOutcome.not_run(request.run_id, request.attempt, error))
        self._wake()
