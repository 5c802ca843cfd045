"""The retry policy of every loop: which errors are transient, how long it waits, what it logs."""

from __future__ import annotations

import logging
import sqlite3

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from backfill.engine.backoff import Backoff, is_transient


class _PgError(Exception):
    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _wrapped(cls: type[DBAPIError], orig: Exception, *, invalidated: bool = False) -> DBAPIError:
    return cls("SELECT 1", {}, orig, connection_invalidated=invalidated)


@pytest.mark.parametrize(
    "exc",
    [
        _wrapped(OperationalError, sqlite3.OperationalError("database is locked")),
        _wrapped(OperationalError, ConnectionRefusedError("connection refused")),
        _wrapped(DBAPIError, _PgError("could not serialize access", "40001")),
        _wrapped(DBAPIError, _PgError("deadlock detected", "40P01")),
        _wrapped(DBAPIError, _PgError("canceling statement due to statement timeout", "57014")),
        _wrapped(DBAPIError, _PgError("terminating connection due to administrator command", "57P01")),
        _wrapped(DBAPIError, _PgError("whatever", "XX000"), invalidated=True),
        PoolTimeoutError("QueuePool limit reached"),
        ConnectionResetError("reset by peer"),
        sqlite3.OperationalError("database is locked"),  # a driver's own, unwrapped
    ],
)
def test_transient_database_errors(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        _wrapped(IntegrityError, _PgError("duplicate key", "23505")),
        _wrapped(ProgrammingError, _PgError("relation does not exist", "42P01")),
        sqlite3.IntegrityError("UNIQUE constraint failed"),
        ValueError("a bug"),
        KeyError("run_id"),
    ],
)
def test_other_errors_are_not_transient(exc: BaseException) -> None:
    assert not is_transient(exc)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_delay_grows_exponentially_with_jitter_and_is_capped_at_5_seconds() -> None:
    clock = _Clock()
    highest = Backoff("t", logging.getLogger("t"), base=0.1, cap=5.0, clock=clock, jitter=lambda: 1.0)
    lowest = Backoff("t", logging.getLogger("t"), base=0.1, cap=5.0, clock=clock, jitter=lambda: 0.0)
    error = ConnectionRefusedError()
    waits_high = [highest.failed(error) for _ in range(12)]
    waits_low = [lowest.failed(error) for _ in range(12)]
    assert waits_high[:4] == pytest.approx([0.1, 0.2, 0.4, 0.8])
    assert waits_low[:4] == pytest.approx([0.05, 0.1, 0.2, 0.4])
    assert max(waits_high) == pytest.approx(5.0)
    assert waits_high[-1] == pytest.approx(5.0)
    assert highest.remaining() == pytest.approx(5.0)
    clock.now += 5.0
    assert highest.due()


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    backoff = Backoff("worker", logging.getLogger("backfill.test"), clock=_Clock())
    error = _wrapped(OperationalError, sqlite3.OperationalError("database is locked"))
    with caplog.at_level(logging.WARNING, logger="backfill.test"):
        for _ in range(20):
            backoff.failed(error)
        backoff.succeeded()
        backoff.succeeded()  # a normal success logs nothing
        backoff.failed(error)
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "database unavailable" in m]) == 2
    assert len([m for m in messages if "reachable again" in m]) == 1
    assert backoff.outages == 2
    assert not backoff.due()


def test_a_bug_is_logged_with_its_traceback_every_time(caplog: pytest.LogCaptureFixture) -> None:
    backoff = Backoff("worker", logging.getLogger("backfill.test"), clock=_Clock())
    with caplog.at_level(logging.ERROR, logger="backfill.test"):
        for _ in range(3):
            backoff.failed(ValueError("a bug"))
    assert [r.exc_info is not None for r in caplog.records] == [True, True, True]
    assert backoff.outages == 0
