"""load: write the per-day, per-store aggregates into the warehouse, idempotently.

Table ``daily_sales(day, store, orders, revenue)``. In one transaction the rows of every
day the interval covers are deleted and the fresh aggregates inserted, so running an
interval twice (a retry, a second backfill) never duplicates rows.
"""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS daily_sales (
    day TEXT NOT NULL,
    store TEXT NOT NULL,
    orders INTEGER NOT NULL,
    revenue REAL NOT NULL,
    PRIMARY KEY (day, store)
)
"""


def _get(context: Any, key: str, default: Any = None) -> Any:
    """Read a context value by attribute or by key (the context supports both)."""
    try:
        return getattr(context, key)
    except (AttributeError, KeyError):
        pass
    try:
        return context[key]
    except (KeyError, TypeError, IndexError):
        return default


def _log(context: Any, message: str) -> None:
    logger = _get(context, "logger")
    if logger is not None:
        logger.info(message)
    else:
        print(message)


def sqlite_path(url: str) -> Path:
    """The database file of a ``sqlite:///path`` URL (relative to the working directory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        raise ValueError(f"the warehouse must be a SQLite URL, got a {parsed.get_backend_name()!r} URL")
    if not parsed.database or parsed.database == ":memory:":
        raise ValueError("the warehouse must be a SQLite file, not an in-memory database")
    return Path(parsed.database).expanduser()


LOCK_TIMEOUT_SECONDS = 30.0


def use_wal(db: sqlite3.Connection) -> None:
    """Put the warehouse in WAL mode, so readers (the check block) never block the writer.

    Two runs that create the file at the same moment both switch its journal mode, and
    SQLite answers the second "database is locked" at once, without waiting for its busy
    timeout: wait and try again, up to the same timeout.
    """
    deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def aggregate(orders: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[int, float]]:
    """(day, store) -> (number of orders, revenue rounded to cents)."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    sums: dict[tuple[str, str], float] = defaultdict(float)
    for order in orders:
        key = (str(order["ordered_at"])[:10], str(order["store"]))
        counts[key] += 1
        sums[key] += float(order["amount"])
    return {key: (counts[key], round(sums[key], 2)) for key in sorted(counts)}


def run(context: Any) -> dict[str, Any]:
    extracted = (_get(context, "upstream") or {})["extract"]
    variables = _get(context, "variables") or {}
    connections = _get(context, "connections") or {}
    name = str(variables.get("warehouse_connection") or "warehouse")
    if name not in connections:
        raise KeyError(f"connection {name!r} is not defined in connections.yaml")

    path = sqlite_path(connections[name])
    path.parent.mkdir(parents=True, exist_ok=True)
    days = list(extracted["days"])
    totals = aggregate(extracted["orders"])

    db = sqlite3.connect(path, timeout=LOCK_TIMEOUT_SECONDS, isolation_level=None)
    try:
        use_wal(db)
        db.execute("BEGIN IMMEDIATE")
        db.execute(CREATE_TABLE)
        db.executemany("DELETE FROM daily_sales WHERE day = ?", [(day,) for day in days])
        db.executemany(
            "INSERT INTO daily_sales (day, store, orders, revenue) VALUES (?, ?, ?, ?)",
            [(day, store, n, revenue) for (day, store), (n, revenue) in totals.items()],
        )
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    finally:
        db.close()

    revenue = round(sum(r for _, r in totals.values()), 2)
    amount = f"{revenue:.2f} {variables.get('currency', '')}".strip()
    orders = sum(n for n, _ in totals.values())
    _log(context, f"load: {len(totals)} rows for {', '.join(days)} into {path} ({orders} orders, {amount})")
    return {"rows": len(totals), "days": days, "revenue": revenue}
