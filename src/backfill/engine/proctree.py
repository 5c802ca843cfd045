"""Keeping the processes a run starts on a leash (Linux; elsewhere best effort).

An executor child is a *subreaper* (``PR_SET_CHILD_SUBREAPER``): a descendant whose parent
exits — a ``setsid()`` + double-fork daemon included — is re-parented to it instead of to
PID 1, so ``kill_descendants`` finds and kills it after every attempt. The child also asks
for a signal when its own parent (the executor's fork server, which exits with the worker)
dies (``PR_SET_PDEATHSIG``), and kills its descendants before it goes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Callable

import psutil

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def become_subreaper() -> bool:
    """Orphaned descendants of this process are re-parented to it (Linux >= 3.4)."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def on_parent_death(handler: Callable[[], None], signum: int | None = None) -> bool:
    """Call ``handler`` (in the main thread) when this process's parent dies."""
    sig = signum if signum is not None else signal.SIGRTMIN + 3 if hasattr(signal, "SIGRTMIN") else signal.SIGUSR2
    parent = os.getppid()
    signal.signal(sig, lambda _s, _f: handler())
    if not _prctl(_PR_SET_PDEATHSIG, int(sig)):
        signal.signal(sig, signal.SIG_DFL)
        return False
    if os.getppid() != parent:  # it died before the request took effect
        handler()
    return True


def _children(pid: int) -> list[int]:
    """Direct children of ``pid``: /proc's per-thread lists (cheap), else a psutil scan."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        tids = []
    found: list[int] = []
    try:
        for tid in tids:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                found.extend(int(p) for p in fh.read().split())
        if tids:
            return found
    except FileNotFoundError:  # a thread ended while listing: fine
        return found
    except OSError:
        pass
    with contextlib.suppress(psutil.Error):
        return [p.pid for p in psutil.Process(pid).children()]
    return []


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in _children(todo.pop()):
            if child not in out:
                out.append(child)
                todo.append(child)
    return out


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def kill_descendants(pid: int | None = None, *, reap: bool = True, timeout: float = 2.0) -> int:
    """SIGKILL every descendant of ``pid`` (default: this process); returns how many.

    Each one found is stopped first (a stopped process cannot fork), the tree is listed
    again until nothing new appears, then all are killed. With ``reap`` (only for this
    process) the dead are waited for, so none stays a zombie of a subreaper.
    """
    root = os.getpid() if pid is None else pid
    if root == os.getpid() and not _has_children():
        return 0
    stopped: list[int] = []
    for _ in range(10):
        fresh = [p for p in descendants(root) if p not in stopped]
        if not fresh:
            break
        _signal(fresh, signal.SIGSTOP)
        stopped.extend(fresh)
    if not stopped:
        return 0
    _signal(stopped, signal.SIGKILL)
    if reap and root == os.getpid():
        _reap_children(timeout)
    return len(stopped)


def _has_children() -> bool:
    """Whether this process has any child, running or not yet reaped (one system call,
    reaping nothing). A process with no child has no descendant either (an orphan below
    a subreaper becomes the subreaper's child)."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WSTOPPED | os.WCONTINUED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    except (OSError, AttributeError):  # no waitid here: assume there may be
        return True
    return True


def _reap_children(timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if time.monotonic() >= deadline:
                return
            time.sleep(0.005)
