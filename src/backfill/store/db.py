"""Engine creation and transactions for SQLite and PostgreSQL.

SQLite connections use WAL, foreign keys and a busy timeout, and write transactions
start with ``BEGIN IMMEDIATE`` so a read-then-write never fails half way with
"database is locked". The WAL is checkpointed by a thread, not inside commits
(``store.sqlite_checkpoint``). The file (and its -wal/-shm companions, which SQLite creates
with the file's mode) is private to its owner: 0600, in a 0700 directory when created here.

PostgreSQL goes through psycopg 3. Every wait is bounded (``DatabaseTimeouts``): connect,
statement and lock timeouts, TCP keepalives and a TCP user timeout (a database that drops
packets breaks the connection instead of hanging it), and the pool checkout.

A pooled PostgreSQL connection is pinged (``SELECT 1``) on checkout only when it has been
idle for ``PING_AFTER_IDLE_SECONDS``: a worker's steps reuse one connection every few
milliseconds, and a ping before each was one round trip in eight of the hot path. A
connection that broke within that window fails its next statement instead; SQLAlchemy then
discards every pooled connection (a disconnect invalidates the pool) and the caller retries
as after any transient error (a worker backs off, the API answers 503 once).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Select, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InvalidatePoolError

from backfill.store import pgbouncer
from backfill.store.sqlite_checkpoint import CHECKPOINTER, WAL_AUTOCHECKPOINT_PAGES

DEFAULT_SQLITE_PATH = Path(".backfill") / "backfill.db"
PING_AFTER_IDLE_SECONDS = 1.0


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` / ``postgres://`` and pick the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def default_url() -> str:
    return f"sqlite:///{DEFAULT_SQLITE_PATH}"


@dataclass(frozen=True)
class DatabaseTimeouts:
    """Upper bounds of every wait on the database, in seconds."""

    busy: float = 30.0  # SQLite: how long a writer waits for the file lock
    connect: float = 2.0  # PostgreSQL: TCP + authentication (libpq counts whole seconds, >= 2)
    statement: float = 30.0  # PostgreSQL statement_timeout
    lock: float = 10.0  # PostgreSQL lock_timeout (row and table locks)
    # PostgreSQL idle_in_transaction_session_timeout: a session of a lost machine that sits
    # inside a transaction (holding row locks other workers wait for) is ended by the server
    # instead of waiting for TCP keepalive to notice; our transactions never idle this long.
    idle_in_transaction: float = 60.0
    # PostgreSQL: data unacknowledged for this long breaks the connection (a network that
    # drops packets); with ``connect`` this bounds a request to about 4.5 s, then 503
    tcp_user: float = 2.5
    keepalive_idle: float = 5.0  # PostgreSQL: TCP keepalive probes on idle connections
    pool: float = 4.0  # waiting for a free pooled connection


def _pg_connect_args(url_options: str | None, t: DatabaseTimeouts) -> dict[str, Any]:
    # Server-side timeouts travel in libpq's "options"; keep any given in the URL (a schema
    # can be chosen there: ?options=-csearch_path%3Dmyschema).
    server = (
        f"-c statement_timeout={int(t.statement * 1000)} -c lock_timeout={int(t.lock * 1000)}"
        f" -c idle_in_transaction_session_timeout={int(t.idle_in_transaction * 1000)}"
    )
    return {
        "connect_timeout": max(2, round(t.connect)),
        "options": f"{url_options} {server}" if url_options else server,
        "keepalives": 1,
        "keepalives_idle": max(1, round(t.keepalive_idle)),
        "keepalives_interval": 1,
        "keepalives_count": 3,
        "tcp_user_timeout": int(t.tcp_user * 1000),
    }


def _private_sqlite_file(path: Path) -> None:
    """Create the database file 0600 (and a missing directory 0700) before SQLite opens it."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.parent.chmod(0o700)  # whatever the umask
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


class Database:
    """One engine plus the two kinds of transaction the code base uses."""

    def __init__(self, url: str, *, echo: bool = False, timeouts: DatabaseTimeouts | None = None) -> None:
        self.url = normalize_url(url)
        self.timeouts = timeouts = timeouts or DatabaseTimeouts()
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        # ?pgbouncer=true: behind PgBouncer in transaction pooling (see store.pgbouncer)
        parsed, self.behind_pgbouncer = pgbouncer.split_option(parsed)
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        self._sqlite_path: str | None = None
        if self.is_sqlite:
            database = parsed.database
            if database in (None, "", ":memory:"):
                raise ValueError("an in-memory SQLite database cannot be shared by workers; use a file")
            _private_sqlite_file(Path(database))
            self._sqlite_path = os.path.abspath(database)  # the checkpointer's, whatever the cwd later
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": timeouts.busy}
        else:
            options = parsed.query.get("options")
            kwargs["connect_args"] = _pg_connect_args(options if isinstance(options, str) else None, timeouts)
            kwargs["pool_size"] = 10
            kwargs["max_overflow"] = 20
            kwargs["pool_timeout"] = timeouts.pool
            if self.behind_pgbouncer:  # no server timeouts in "options" through PgBouncer
                kwargs["connect_args"] = pgbouncer.connect_args(kwargs["connect_args"])
        self.engine: Engine = create_engine(parsed, **kwargs)
        # SQLite: the file joins the process's checkpointer at the first write transaction
        self._checkpointed: weakref.finalize[Any, Any] | None = None
        self._driver_sql: dict[Select[Any], tuple[str, tuple[str, ...]]] = {}
        if self.is_sqlite:
            _install_sqlite_hooks(self.engine, busy_ms=int(timeouts.busy * 1000))
        else:
            _install_idle_ping(self.engine)

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

    def ping(self) -> None:
        """Raise if the database cannot run a statement now (``SELECT 1``)."""
        with self.read() as conn:
            conn.execute(text("SELECT 1"))

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
        if self.is_sqlite and (self._checkpointed is None or not self._checkpointed.alive):
            self._checkpoint_in_background()  # the first write (again after a dispose)
        with guard, self.engine.connect() as conn:
            conn.execution_options(backfill_write=True)
            with conn.begin():
                yield conn

    def _checkpoint_in_background(self) -> None:
        """SQLite: this file's WAL is checkpointed by the process's checkpointer thread
        (``store.sqlite_checkpoint``), not inside commits, until this object is disposed
        or collected."""
        path = self._sqlite_path
        assert path is not None
        CHECKPOINTER.register(path)
        self._checkpointed = weakref.finalize(self, CHECKPOINTER.unregister, path)

    def dispose(self) -> None:
        if self._checkpointed is not None:
            self._checkpointed()  # unregisters once; later calls do nothing
        self.engine.dispose()


_SQLITE_WRITE_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _sqlite_write_lock(url: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _SQLITE_WRITE_LOCKS.setdefault(url, threading.Lock())


def _install_idle_ping(engine: Engine) -> None:
    """Ping a pooled connection on checkout when it sat idle for ``PING_AFTER_IDLE_SECONDS``
    (SQLAlchemy's ``pool_pre_ping`` pings every checkout). A ping that finds the connection
    gone invalidates the pool, and the checkout goes on with a fresh connection."""
    dialect = engine.dialect

    @event.listens_for(engine, "connect")
    def _on_connect(_dbapi_connection: Any, record: Any) -> None:
        record.info["backfill_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["backfill_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("backfill_idle_since")
        if since is not None and time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None):
                raise InvalidatePoolError() from exc
            raise


def _install_sqlite_hooks(engine: Engine, *, busy_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own handling is off).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # checkpoints run in a thread of their own (store.sqlite_checkpoint), not in commits
        cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Straight to the driver: through exec_driver_sql this BEGIN cost as much as the
        # SELECT of a hot read.
        statement = "BEGIN IMMEDIATE" if conn.get_execution_options().get("backfill_write") else "BEGIN"
        try:
            conn.connection.driver_connection.execute(statement)  # type: ignore[union-attr]
        except sqlite3.Error as exc:  # "database is locked" past the busy timeout: as SQLAlchemy raises it
            raise DBAPIError.instance(statement, (), exc, sqlite3.Error) from exc
