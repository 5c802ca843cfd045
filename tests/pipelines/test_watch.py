"""The project watcher: what counts as a pipeline change, and that a change (even after
a failing callback) leads to a call back."""

from __future__ import annotations

import threading
from pathlib import Path

from tests.engine.procs import wait_for
from watchfiles import Change

from backfill.pipelines.watch import ProjectFilter, ProjectWatcher


def test_only_pipeline_files_count(tmp_path: Path) -> None:
    accept = ProjectFilter(tmp_path)
    for relative in ("connections.yaml", "pipelines/p/pipeline.yaml", "pipelines/p/extract.py", "pipelines/p/q.sql"):
        assert accept(Change.modified, str(tmp_path / relative)), relative
    for relative in (
        ".backfill/backfill.db",
        "data/orders.csv",
        "pipelines/p/__pycache__/extract.cpython-311.pyc",
        "pipelines/p/.extract.py.swp",
        "README.md",
    ):
        assert not accept(Change.modified, str(tmp_path / relative)), relative
    assert not accept(Change.modified, "/elsewhere/pipelines/p/pipeline.yaml")


def test_a_change_calls_back_and_a_failing_callback_is_retried(tmp_path: Path) -> None:
    block = tmp_path / "pipelines" / "p" / "main.py"
    block.parent.mkdir(parents=True)
    block.write_text("def run(context):\n    return 1\n")
    calls: list[int] = []

    def on_change() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("database is down")  # the watcher tries again

    stop = threading.Event()
    watcher = ProjectWatcher(tmp_path, on_change, debounce_ms=50)
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    thread.start()
    try:

        def edit_until_called() -> bool:
            if not calls:
                block.write_text(f"def run(context):\n    return {len(calls) + 2}\n")
            return len(calls) >= 2

        wait_for(edit_until_called, timeout=30, interval=0.3)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert calls[:2] == [0, 1]
