"""SQLite: WAL checkpoints off the writers' path.

By default SQLite checkpoints the write-ahead log from inside a commit once the log holds
1,000 pages: that commit copies them into the database file and syncs it. A worker commits
a step every few milliseconds, and those checkpoints cost about a third of its database
path (BENCHMARKS.md, "checkpoints off the commit path").

Here every connection raises that threshold to ``WAL_AUTOCHECKPOINT_PAGES`` (a safety net
that still bounds the log should no checkpointer run), and one daemon thread per process
runs a PASSIVE checkpoint of each database this process has written to, every
``CHECKPOINT_SECONDS``, on a connection of its own. SQLite does that work without Python's
GIL, so it overlaps the writers instead of stalling one of them; PASSIVE never waits for
readers or writers (frames a reader still uses are copied by a later round), and pages
written many times between two rounds are copied once. A failed round is logged and
retried at the next one; no error ends the thread. It ends when every ``Database`` that
registered a file is disposed or collected, and the next write starts it again.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
import urllib.parse

log = logging.getLogger("backfill.store")

WAL_AUTOCHECKPOINT_PAGES = 10_000  # ~40 MiB of 4 KiB pages: only when no round has run
CHECKPOINT_SECONDS = 1.0


class Checkpointer:
    """Checkpoints the registered database files, one round every ``interval`` seconds."""

    def __init__(self, interval: float = CHECKPOINT_SECONDS) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._users: dict[str, int] = {}  # database file -> open Database objects writing it
        self._connections: dict[str, sqlite3.Connection] = {}  # used by the thread only
        self._thread: threading.Thread | None = None
        self._failing: set[str] = set()  # files whose last round failed (logged once)

    def register(self, path: str) -> None:
        """Checkpoint ``path`` from now on (until as many ``unregister`` calls)."""
        with self._lock:
            self._users[path] = self._users.get(path, 0) + 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="backfill-sqlite-checkpoint", daemon=True)
                self._thread.start()

    def unregister(self, path: str) -> None:
        with self._lock:
            left = self._users.get(path, 0) - 1
            if left > 0:
                self._users[path] = left
            else:
                self._users.pop(path, None)

    def run_once(self) -> None:
        """One round: a PASSIVE checkpoint of every registered file. Never raises."""
        with self._lock:
            paths = list(self._users)
        for path in list(self._connections):
            if path not in paths:
                self._close(path)
        self._failing &= set(paths)  # a file registered again reports its first failure again
        for path in paths:
            try:
                connection = self._connections.get(path)
                if connection is None:  # mode=rw: a file removed meanwhile is not made again
                    uri = f"file:{urllib.parse.quote(path)}?mode=rw"
                    connection = sqlite3.connect(uri, uri=True, timeout=0.1, check_same_thread=False)
                    self._connections[path] = connection
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except Exception as exc:  # never ends the loop: the next round tries again
                self._close(path)
                if path not in self._failing:
                    self._failing.add(path)
                    log.warning("sqlite checkpoint of %s failed (retried every %gs): %s", path, self.interval, exc)
            else:
                if path in self._failing:
                    self._failing.discard(path)
                    log.info("sqlite checkpoint of %s works again", path)

    def _close(self, path: str) -> None:
        connection = self._connections.pop(path, None)
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def _run(self) -> None:
        """Rounds until no file is registered (``register`` starts a new thread then)."""
        while True:
            time.sleep(self.interval)
            try:
                self.run_once()
            except Exception:  # run_once does not raise; this guards the thread all the same
                log.exception("sqlite checkpoint round failed")
            with self._lock:
                if not self._users:
                    for path in list(self._connections):
                        self._close(path)
                    self._thread = None
                    return


CHECKPOINTER = Checkpointer()
