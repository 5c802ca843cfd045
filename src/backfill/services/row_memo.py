"""Values derived from a backfill row, kept per version of the row.

Every UPDATE of a backfill row bumps its ``version`` (``store.tables``), and every change
of its runs updates the row in the same transaction. A value computed from what a read
transaction saw of version *v* (error report, p95 duration, a dialect's rendered JSON)
therefore holds for as long as a fresh read still finds *v*: polling an unchanged
backfill costs one row read. Fill only from read transactions: a value computed in a
write transaction could belong to a version that is rolled back.

A value that also depends on the clock (a rendering with an ETA) is kept for at most
``max_age_seconds``, however long the row stays unchanged.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy import Engine, RowMapping

T = TypeVar("T")


class RowVersionMemo(Generic[T]):
    """Bounded, one table per engine (weakly held: a disposed database takes its table
    along). Safe to share between threads: plain dict operations; two threads missing
    at once both compute, and one result is kept."""

    def __init__(
        self,
        max_entries: int = 4096,
        *,
        max_age_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        self._by_engine: weakref.WeakKeyDictionary[Engine, dict[tuple[int, int], tuple[float, T]]] = (
            weakref.WeakKeyDictionary()
        )

    def _fresh(self, entry: tuple[float, T] | None) -> T | None:
        if entry is None:
            return None
        stamp, value = entry
        if self.max_age_seconds is not None and self._clock() - stamp > self.max_age_seconds:
            return None
        return value

    def peek(self, engine: Engine, row_id: int, version: int) -> T | None:
        table = self._by_engine.get(engine)
        return self._fresh(table.get((row_id, version))) if table is not None else None

    def get(self, engine: Engine, row: RowMapping, compute: Callable[[], T]) -> T:
        table = self._by_engine.get(engine)
        if table is None:
            table = self._by_engine.setdefault(engine, {})
        key = (int(row["id"]), int(row["version"]))
        found = self._fresh(table.get(key))
        if found is None:
            found = compute()
            if len(table) >= self.max_entries:
                table.clear()
            table[key] = (self._clock(), found)
        return found
