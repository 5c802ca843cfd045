"""Watch a project directory and call back when a pipeline file changes (docs/pipelines.md).

``serve`` and ``worker`` run :class:`ProjectWatcher` in a thread, with a callback that
re-syncs the project (``services.pipeline_sync``). File events come from the
``watchfiles`` library (inotify / FSEvents, polling where those do not exist); events
are debounced so that an editor's save (write, rename, chmod) triggers one sync.

Only what defines pipelines counts: ``connections.yaml`` and files under
``pipelines/`` — not databases, logs or editor droppings that may live in the
project directory. The loop never dies: a failing callback or watcher is logged and
the watch resumes after a short, growing pause.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import watchfiles
from watchfiles import Change, DefaultFilter

from backfill.pipelines.loader import CONNECTIONS_FILE, PIPELINES_DIR

log = logging.getLogger("backfill.pipelines.watch")

#: Quiet time (ms) after the last event before the callback runs.
DEBOUNCE_MS = 150
#: Longest pause after a failure before watching again (seconds).
MAX_BACKOFF_SECONDS = 5.0


class ProjectFilter(DefaultFilter):
    """Changes to ``connections.yaml`` and under ``pipelines/`` (minus the default
    ignores: ``__pycache__``, ``*.pyc``, swap and backup files, VCS directories)."""

    def __init__(self, project_dir: Path) -> None:
        super().__init__()
        self.root = project_dir.resolve()

    def __call__(self, change: Change, path: str) -> bool:
        if not super().__call__(change, path):
            return False
        try:
            relative = Path(path).resolve().relative_to(self.root)
        except ValueError:
            return False
        parts = relative.parts
        return bool(parts) and (parts == (CONNECTIONS_FILE,) or parts[0] == PIPELINES_DIR)


class ProjectWatcher:
    def __init__(self, project_dir: Path, on_change: Callable[[], object], *, debounce_ms: int = DEBOUNCE_MS) -> None:
        self.project_dir = Path(project_dir)
        self.on_change = on_change
        self.debounce_ms = debounce_ms

    def run(self, stop: threading.Event) -> None:
        """Watch until ``stop`` is set; call ``on_change`` after each burst of changes."""
        failures = 0
        log.info("watching %s for pipeline changes", self.project_dir)
        while not stop.is_set():
            try:
                for changes in watchfiles.watch(
                    self.project_dir,
                    watch_filter=ProjectFilter(self.project_dir),
                    debounce=self.debounce_ms,
                    step=50,
                    stop_event=stop,
                    raise_interrupt=False,
                ):
                    log.info("project changed (%d file events); re-syncing pipelines", len(changes))
                    self._notify(stop)
                    failures = 0
            except Exception:
                failures += 1
                pause = min(MAX_BACKOFF_SECONDS, 0.25 * 2**failures)
                log.exception("watching %s failed; watching again in %.1f s", self.project_dir, pause)
                stop.wait(pause)

    def _notify(self, stop: threading.Event) -> None:
        """Call back until it succeeds (a database outage must neither end the watch nor
        lose the change), pausing longer after each failure."""
        failures = 0
        while not stop.is_set():
            try:
                self.on_change()
                return
            except Exception:
                failures += 1
                pause = min(MAX_BACKOFF_SECONDS, 0.25 * 2**failures)
                if failures == 1:
                    log.exception("re-syncing %s failed; trying again until it works", self.project_dir)
                stop.wait(pause)
