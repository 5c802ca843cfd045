"""Which database errors a retry can cure (a refused or reset connection, a timeout,
SQLite busy past its timeout, a serialization failure or deadlock), for every loop's
backoff (``engine.backoff``) and for start-up checks that should wait rather than fail."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

# SQLSTATE classes and codes a retry can cure: connection exceptions, serialization
# failure, deadlock, lock not available, query canceled (statement/lock timeout),
# admin shutdown / crash shutdown / cannot connect now, insufficient resources.
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "53", "57P")
_TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03", "57014"}
_TRANSIENT_MESSAGES = (
    "database is locked",
    "database table is locked",
    "database is busy",
    "connection refused",
    "connection reset",
    "connection timed out",
    "timeout expired",
    "server closed the connection",
    "terminating connection",
    "could not connect",
    "connection is closed",
    "connection is lost",
    "consuming input failed",
    "ssl syscall error",
    "broken pipe",
    "no route to host",
)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a database error that a later retry can cure: SQLAlchemy's or a
    driver's own (PEP 249 names its classes), by class, SQLSTATE or message."""
    if isinstance(exc, PoolTimeoutError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
            return True
        if exc.orig is None:
            return False
        exc = exc.orig
    elif not any(cls.__name__ in _DRIVER_ERRORS for cls in type(exc).__mro__):
        return False
    if any(cls.__name__ in _DRIVER_TRANSIENT for cls in type(exc).__mro__):
        return True
    sqlstate = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    if isinstance(sqlstate, str) and (
        sqlstate in _TRANSIENT_SQLSTATES or sqlstate.startswith(_TRANSIENT_SQLSTATE_PREFIXES)
    ):
        return True
    message = str(exc).lower()
    return any(m in message for m in _TRANSIENT_MESSAGES)


_DRIVER_ERRORS = {"DatabaseError", "InterfaceError"}  # PEP 249: every driver error derives from these
_DRIVER_TRANSIENT = {"OperationalError", "InterfaceError"}
