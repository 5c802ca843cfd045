"""Engine creation and transactions for SQLite and PostgreSQL.

SQLite connections use WAL, foreign keys and a busy timeout, and write transactions
start with ``BEGIN IMMEDIATE`` so a read-then-write never fails half way with
"database is locked". PostgreSQL goes through psycopg 3.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Select, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from backfill.store import pgbouncer

DEFAULT_SQLITE_PATH = Path(".backfill") / "backfill.db"


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` / ``postgres://`` and pick the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def default_url() -> str:
    return f"sqlite:///{DEFAULT_SQLITE_PATH}"


class Database:
    """One engine plus the two kinds of transaction the code base uses."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = normalize_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        # ?pgbouncer=true: behind PgBouncer in transaction pooling (see store.pgbouncer)
        parsed, self.behind_pgbouncer = pgbouncer.split_option(parsed)
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.is_sqlite:
            database = parsed.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            if database in (None, "", ":memory:"):
                raise ValueError("an in-memory SQLite database cannot be shared by workers; use a file")
        else:
            # A schema can be chosen in the URL: ?options=-csearch_path%3Dmyschema
            kwargs["connect_args"] = {"connect_timeout": 10}
            kwargs["pool_size"] = 10
            kwargs["max_overflow"] = 20
            kwargs["pool_pre_ping"] = True
            if self.behind_pgbouncer:
                kwargs["connect_args"] = pgbouncer.connect_args(kwargs["connect_args"])
        self.engine: Engine = create_engine(parsed, **kwargs)
        self._driver_sql: dict[Select[Any], tuple[str, tuple[str, ...]]] = {}
        if self.is_sqlite:
            _install_sqlite_hooks(self.engine)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction (deferred on SQLite, so readers never block writers)."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def read_scalar(self, statement: Select[Any], params: Mapping[str, Any]) -> Any:
        """The first column of the first row of ONE prebuilt SELECT, or None.

        On SQLite it runs on the driver connection of a pooled connection, compiled once
        by SQLAlchemy: for the hottest read (the version probe of a polled backfill)
        SQLAlchemy's execution machinery cost 7x the statement itself (96 vs 13 us,
        BENCHMARKS.md). A lone SELECT needs no BEGIN: the driver is in autocommit mode and
        the statement reads one consistent snapshot. Only for statements whose parameters
        and result need no type conversion (integers, strings). On PostgreSQL: a read
        transaction as usual.
        """
        if not self.is_sqlite:
            with self.read() as conn:
                return conn.execute(statement, params).scalar()
        compiled = self._driver_sql.get(statement)
        if compiled is None:
            c = statement.compile(dialect=self.engine.dialect)
            compiled = self._driver_sql[statement] = (c.string, tuple(c.positiontup or ()))
        sql, names = compiled
        values = [params[name] for name in names]
        driver_error = self.engine.dialect.loaded_dbapi.Error
        raw = self.engine.raw_connection()
        try:
            row = raw.driver_connection.execute(sql, values).fetchone()  # type: ignore[union-attr]
        except driver_error as exc:  # as SQLAlchemy would raise it (mapped to 503 / 500 alike)
            raise DBAPIError.instance(sql, values, exc, driver_error) from exc
        finally:
            raw.close()
        return row[0] if row is not None else None

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: ``BEGIN IMMEDIATE`` on SQLite; committed on success.

        On SQLite, writers of this process also queue on an in-process lock first: they
        would be serialized by the database anyway, and waiting on a lock is immediate
        where SQLite's busy handler polls with sleeps (the cause of long tail latencies
        when the API and the worker write at once)."""
        guard = _sqlite_write_lock(self.url) if self.is_sqlite else nullcontext()
        with guard, self.engine.connect() as conn:
            conn.execution_options(backfill_write=True)
            with conn.begin():
                yield conn

    def dispose(self) -> None:
        self.engine.dispose()


_SQLITE_WRITE_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _sqlite_write_lock(url: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _SQLITE_WRITE_LOCKS.setdefault(url, threading.Lock())


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own handling is off).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Straight to the driver: through exec_driver_sql this BEGIN cost as much as the
        # SELECT of a hot read.
        statement = "BEGIN IMMEDIATE" if conn.get_execution_options().get("backfill_write") else "BEGIN"
        conn.connection.driver_connection.execute(statement)  # type: ignore[union-attr]
