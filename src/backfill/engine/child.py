"""The child side of the executor: the process that executes runs (RELIABILITY.md).

``child_main`` is the entry point of every executor child (``executor.py`` starts them
and is the parent side). A child leads its own session, is a subreaper of everything its
runs start, dies with its parent (a pipe watcher and ``PR_SET_PDEATHSIG``), and serves one
``wire.Job`` at a time: fds 1 and 2 point at the run's log file, blocks run in order
(``blocks.run_block``), a ``wire.Progress`` goes back after each block but the last and a
``wire.Finished`` at the end. Changes a block makes to ``os.environ``, the working
directory or ``sys.stdout`` are undone after the run; every process the run started is
killed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import pickle
import select
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from multiprocessing.connection import Connection
from typing import Any

from backfill.domain.model import BlockType
from backfill.domain.pipeline import Block
from backfill.engine import proctree
from backfill.engine.blocks import BlockContext, BlockError, run_block, sql_summary
from backfill.engine.wire import Finished, Job, Progress, WireBlockResult, from_micros

MAX_ERROR_CHARS = 10_000
MAX_HEADLINE_CHARS = 1000
MAX_OUTPUT_CHARS = 1000


def _dup_or_devnull(fd: int) -> int:
    try:
        return os.dup(fd)
    except OSError:
        return os.open(os.devnull, os.O_WRONLY)


def _watch_parent(fd: int, log_dir: str) -> None:
    """Kill this child's whole process group as soon as the parent's end of the pipe closes.

    The parent never closes it while a run executes (it kills the child instead), so this
    only fires when the executor's process died: no run outlives its worker, and the log
    directory the dead parent can no longer clean up goes too.
    """
    hangup = select.POLLRDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL
    poller = select.poll()
    poller.register(fd, select.POLLRDHUP)
    while not any(event & hangup for _, event in poller.poll()):
        pass
    _orphaned(log_dir)


def _orphaned(log_dir: str) -> None:
    """The worker is gone: take every process of its runs along, and go."""
    shutil.rmtree(log_dir, ignore_errors=True)
    proctree.kill_descendants(reap=False)
    with contextlib.suppress(OSError):
        if os.getpgrp() == os.getpid():
            os.killpg(0, signal.SIGKILL)
    os._exit(1)


def _schedule_as_batch() -> None:
    """Run this child (and what its runs start) under ``SCHED_BATCH`` (Linux): a child the
    worker wakes by sending it a run no longer preempts the worker on its core. Without
    it, each send handed the core to the child until the child blocked again: a worker
    sending a step's eight runs spent ~240 us of wall time per send (BENCHMARKS.md).
    Same nice value, same share of the CPU; only wake-up preemption is given up, which
    suits batch work. Best effort: elsewhere nothing changes."""
    batch = getattr(os, "SCHED_BATCH", None)
    if batch is not None:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, batch, os.sched_param(0))


def child_main(conn: Connection, log_dir: str) -> None:
    """Entry point of an executor child: serve runs until told to stop or the parent goes."""
    with contextlib.suppress(OSError):
        os.setsid()
    proctree.become_subreaper()
    _schedule_as_batch()
    # The parent is the fork server, which exits when the worker does.
    proctree.on_parent_death(functools.partial(_orphaned, log_dir))
    if hasattr(select, "POLLRDHUP"):  # Linux
        threading.Thread(
            target=_watch_parent, args=(conn.fileno(), log_dir), name="backfill-parent-watch", daemon=True
        ).start()
    saved = (_dup_or_devnull(1), _dup_or_devnull(2))
    if sys.stdout is not None and hasattr(sys.stdout, "reconfigure"):
        with contextlib.suppress(Exception):
            sys.stdout.reconfigure(line_buffering=True)  # print() reaches read_log promptly
    home = os.getcwd()
    while True:
        try:
            job: Job | None = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        reply = _execute(conn, job, saved)
        proctree.kill_descendants()  # nothing a run started outlives it
        with contextlib.suppress(OSError):
            if os.getcwd() != home:
                os.chdir(home)
        try:
            conn.send(reply)
        except OSError:
            return


def _restore_stdio(saved: tuple[int, int]) -> int:
    """Flush python's streams, point fds 1 and 2 back; return the size of the run's log."""
    if sys.stdout is not sys.__stdout__ and sys.__stdout__ is not None:
        sys.stdout = sys.__stdout__
    if sys.stderr is not sys.__stderr__ and sys.__stderr__ is not None:
        sys.stderr = sys.__stderr__
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.flush()
    try:
        size = os.fstat(1).st_size
    except OSError:
        size = -1
    os.dup2(saved[0], 1)
    os.dup2(saved[1], 2)
    return size


_blocks_cache: dict[bytes, tuple[Block, ...]] = {}  # pickled selection -> blocks


def _environ_snapshot() -> dict[Any, Any]:
    data = getattr(os.environ, "_data", None)  # CPython's raw bytes mapping: a cheap copy
    return dict(data) if isinstance(data, dict) else dict(os.environ)


def _restore_environ(snapshot: dict[Any, Any]) -> None:
    """Undo changes a block made to os.environ, so they do not leak into later runs."""
    if _environ_snapshot() == snapshot:
        return
    data = getattr(os.environ, "_data", None)
    if isinstance(data, dict):
        decode = os.fsdecode
        wanted = {decode(k): decode(v) for k, v in snapshot.items()}
    else:
        wanted = snapshot
    for key in [k for k in os.environ if k not in wanted]:
        del os.environ[key]
    for key, value in wanted.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


_log: list[tuple[str, int, int]] = []  # the slot's log file: path, the fd kept open, inode


def _log_fd(path: str) -> int:
    """An fd of the run's log file. The executor gives a slot one file for all its runs
    and empties it before it sends the next run (it has read the last run's log), so the
    fd stays open from run to run; the file is opened again when its path changed or it
    was removed (a temp cleaner under a long-lived worker: the directory is made again).
    An fd a block closed (its number maybe reused by a file of the block's) is left alone."""
    if _log:
        kept_path, fd, inode = _log.pop()
        try:
            ours = os.fstat(fd).st_ino == inode
        except OSError:
            ours = False
        try:
            if ours and kept_path == path and os.stat(path).st_ino == inode:
                _log.append((kept_path, fd, inode))
                return fd
        except OSError:
            pass
        if ours:
            with contextlib.suppress(OSError):
                os.close(fd)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, flags, 0o600)
    _log.append((path, fd, os.fstat(fd).st_ino))
    return fd


def _execute(conn: Connection, job: Job, saved: tuple[int, int]) -> Finished:
    """Run the job's blocks with fds 1 and 2 on its log file; what the parent is told."""
    blocks_blob, log_path = job.blocks_blob, job.log_path
    t0 = time.perf_counter()
    blocks = _blocks_cache.get(blocks_blob)
    if blocks is None:
        blocks = pickle.loads(blocks_blob)
        if len(_blocks_cache) >= 256:
            _blocks_cache.clear()
        _blocks_cache[blocks_blob] = blocks
    interval_start = from_micros(job.start_us)
    interval_end = from_micros(job.end_us)
    fd = _log_fd(log_path)
    environ = _environ_snapshot()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    pending: list[WireBlockResult] = []
    values: dict[str, Any] = {}
    rows = 0
    error: str | None = None
    last = len(blocks) - 1
    header_bytes = 0  # a success that printed nothing but block headers stores no log
    try:
        for index, block in enumerate(blocks):
            if error is not None:
                pending.append(WireBlockResult(block.uuid, "skipped", None, None, None, None, None))
                continue
            started = time.time()
            header_bytes += _write_block_header(block)
            try:
                context = BlockContext(
                    interval_start=interval_start,
                    interval_end=interval_end,
                    timezone=job.timezone,
                    variables=job.variables,
                    backfill_id=job.backfill_id,
                    run_id=job.run_id,
                    attempt=job.attempt,
                    upstream={u: values[u] for u in block.upstream if u in values},
                    connections=job.connections,
                    block_uuid=block.uuid,
                    block_path=block.path,
                    pipeline_uuid=job.pipeline_uuid,
                )
                value = run_block(block, context)
                block_rows = _rows_of(value)
                output = sql_summary(value) if block.type == BlockType.SQL else _summarize(value)
            except BaseException as exc:  # a block may raise anything, SystemExit included
                error = _describe_failure(block, exc)
                pending.append(WireBlockResult(block.uuid, "failed", started, time.time(), None, error, None))
                continue
            values[block.uuid] = value
            rows += block_rows or 0
            pending.append(WireBlockResult(block.uuid, "completed", started, time.time(), block_rows, None, output))
            if index < last:
                conn.send(Progress(pending))
                pending = []
    finally:
        log_size = _restore_stdio(saved)
        _restore_environ(environ)
    if error is None and log_size == header_bytes:  # a silent success: nothing to store
        log_size = 0
    return Finished(pending, error is None, error, rows, time.perf_counter() - t0, log_size)


def block_header(block: Block) -> str:
    """The line that starts a block's part of the run's log."""
    return f"--- block {block.uuid} ({block.type.value}) ---\n"


def _write_block_header(block: Block) -> int:
    """Write the header at the log's current end, after what earlier blocks printed;
    returns the bytes written."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.flush()
    try:
        return os.write(1, block_header(block).encode())
    except OSError:
        return 0


def _rows_of(value: Any) -> int | None:
    if isinstance(value, Mapping):
        rows = value.get("rows")
        if isinstance(rows, int) and not isinstance(rows, bool):
            return rows
    return None


def _summarize(value: Any) -> str | None:
    """A short, always picklable text for a block's return value."""
    if value is None:
        return None
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except Exception:
        try:
            text = repr(value)
        except Exception:
            text = f"<{type(value).__name__}>"
    if len(text) > MAX_OUTPUT_CHARS:
        text = text[: MAX_OUTPUT_CHARS - 3] + "..."
    return text


def _describe_failure(block: Block, exc: BaseException) -> str:
    """``block 'x' failed: <what>`` on the first line, then details (traceback for python)."""
    try:
        message = str(exc)
    except Exception:
        message = "<exception message could not be rendered>"
    if isinstance(exc, BlockError):
        what = message
    else:
        what = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    first, _, rest = what.partition("\n")
    headline = f"block {block.uuid!r} failed: {first}"
    if len(headline) > MAX_HEADLINE_CHARS:
        headline = headline[: MAX_HEADLINE_CHARS - 3] + "..."
    detail = ""
    if block.type == BlockType.PYTHON and not isinstance(exc, BlockError):
        detail = _block_traceback(block, exc)
    elif rest:
        detail = rest
    text = f"{headline}\n{detail.rstrip()}" if detail.strip() else headline
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 3] + "..."
    return text


def _block_traceback(block: Block, exc: BaseException) -> str:
    filename = block.path or f"<block {block.uuid}>"
    if isinstance(exc, SyntaxError) and exc.filename == filename:
        return "".join(traceback.format_exception_only(type(exc), exc))
    tb = exc.__traceback__
    frame = tb
    while frame is not None and frame.tb_frame.f_code.co_filename != filename:
        frame = frame.tb_next
    try:
        return "".join(traceback.format_exception(type(exc), exc, frame if frame is not None else tb))
    except Exception:
        return ""
