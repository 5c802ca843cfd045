"""SQLite WAL checkpoints run in a thread of their own, not inside the writers' commits."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from tests.engine.procs import wait_for

from backfill.store.db import Database
from backfill.store.sqlite_checkpoint import WAL_AUTOCHECKPOINT_PAGES, Checkpointer

PAGES = 1500  # more than SQLite's default threshold for a checkpoint inside a commit (1,000)


def _fill(db: Database, rows: int = PAGES) -> None:
    """Write ~``rows`` pages to the WAL (one 4 KiB blob per row)."""
    with db.write() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS blobs (b BLOB)"))
    with db.write() as conn:
        for _ in range(rows):
            conn.execute(text("INSERT INTO blobs VALUES (randomblob(4000))"))


def _main_file_size(path: Path) -> int:
    return os.path.getsize(path)


def test_connections_leave_checkpoints_to_the_thread(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        with db.write() as conn:
            pages = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        assert pages == WAL_AUTOCHECKPOINT_PAGES
    finally:
        db.dispose()


def test_a_round_copies_the_wal_into_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    db = Database(f"sqlite:///{path}")
    checkpointer = Checkpointer(interval=3600)  # rounds only when the test asks
    try:
        _fill(db)
        before = _main_file_size(path)
        assert before < 100 * 4096, "the commits themselves must not have checkpointed"
        checkpointer.register(str(path))
        checkpointer.run_once()
        assert _main_file_size(path) > PAGES * 4000
    finally:
        db.dispose()


def test_the_process_thread_checkpoints_what_a_database_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real thing: a Database that writes joins the process's checkpointer, whose
    thread copies the WAL within a few rounds; disposing it leaves the checkpointer."""
    checkpointer = Checkpointer(interval=0.05)
    monkeypatch.setattr("backfill.store.db.CHECKPOINTER", checkpointer)
    path = tmp_path / "a.db"
    db = Database(f"sqlite:///{path}")
    _fill(db)
    wait_for(lambda: _main_file_size(path) > PAGES * 4000, timeout=10)
    thread = checkpointer._thread
    assert thread is not None
    db.dispose()
    assert str(path) not in checkpointer._users
    thread.join(5)  # nothing left to checkpoint: the thread ends (a new write starts another)
    assert not thread.is_alive() and checkpointer._thread is None
    _fill(db, rows=1)  # the same Database, written to again after its dispose
    assert checkpointer._users == {str(path): 1}
    assert checkpointer._thread is not None and checkpointer._thread.is_alive()
    db.dispose()


def test_a_failing_round_is_logged_once_and_the_others_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = tmp_path / "good.db"
    db = Database(f"sqlite:///{good}")
    checkpointer = Checkpointer(interval=3600)
    checkpointer.register(str(tmp_path / "missing-dir" / "x.db"))  # cannot even be opened
    checkpointer.register(str(good))
    try:
        _fill(db)
        with caplog.at_level(logging.WARNING, logger="backfill.store"):
            checkpointer.run_once()
            checkpointer.run_once()
        failures = [r for r in caplog.records if "checkpoint" in r.getMessage()]
        assert len(failures) == 1 and "missing-dir" in failures[0].getMessage()
        assert _main_file_size(good) > PAGES * 4000
        # and the loop itself survives a round that raises
        calls: list[int] = []

        def boom() -> None:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("boom")
            raise SystemExit  # ends the test's loop (never raised by run_once)

        monkeypatch.setattr(checkpointer, "run_once", boom)
        checkpointer.interval = 0
        with pytest.raises(SystemExit):
            checkpointer._run()
        assert len(calls) == 2
    finally:
        db.dispose()


def test_a_round_never_creates_a_database_file(tmp_path: Path) -> None:
    checkpointer = Checkpointer(interval=3600)
    removed = tmp_path / "removed.db"
    checkpointer.register(str(removed))
    checkpointer.run_once()
    assert not removed.exists()


def test_a_checkpoint_round_does_not_block_a_writer(tmp_path: Path) -> None:
    """PASSIVE: a writer holding the write lock does not stop the round from copying what
    was committed before, nor make it fail."""
    path = tmp_path / "a.db"
    db = Database(f"sqlite:///{path}")
    checkpointer = Checkpointer(interval=3600)
    checkpointer.register(str(path))
    try:
        _fill(db)
        writer = sqlite3.connect(path, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO blobs VALUES (randomblob(10))")
        assert _main_file_size(path) < 100 * 4096
        checkpointer.run_once()
        assert not checkpointer._failing
        assert _main_file_size(path) > PAGES * 4000
        writer.execute("COMMIT")
        writer.close()
    finally:
        db.dispose()
