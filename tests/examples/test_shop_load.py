"""The example project's load block (examples/shop): two runs creating the warehouse at
once must not fail on SQLite's journal-mode switch."""

from __future__ import annotations

import importlib.util
import sqlite3
import threading
import time
from pathlib import Path
from types import ModuleType

LOAD = Path(__file__).resolve().parents[2] / "examples" / "shop" / "pipelines" / "daily_sales" / "load.py"


def load_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("shop_load", LOAD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_switching_to_wal_waits_while_another_run_holds_the_new_file(tmp_path: Path) -> None:
    load = load_module()
    path = tmp_path / "warehouse.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another run is writing the fresh file
    holder.execute("CREATE TABLE t (x INTEGER)")
    errors: list[BaseException] = []
    done = threading.Event()

    def second_run() -> None:
        db = sqlite3.connect(path, timeout=0.01, isolation_level=None)  # SQLite's own wait: ~nothing
        try:
            load.use_wal(db)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            db.close()
            done.set()

    thread = threading.Thread(target=second_run, daemon=True)
    thread.start()
    time.sleep(0.3)
    assert not done.is_set(), errors  # still waiting, not failed with "database is locked"
    holder.execute("COMMIT")
    holder.close()
    assert done.wait(10)
    assert errors == []
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
