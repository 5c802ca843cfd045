"""Connecting through PgBouncer in transaction-pooling mode: ``?pgbouncer=true`` in the URL.

In transaction pooling, PgBouncer hands each transaction of a client connection to any
free server connection, so nothing may outlive a transaction on the server side:

- **Prepared statements.** psycopg 3 prepares a statement on the server after it ran 5
  times on one connection (``prepare_threshold``) and then executes it by name; the next
  transaction lands on another server connection, where that name does not exist
  (``prepared statement "_pg3_0" does not exist``; PgBouncer before 1.21 does not track
  them). The option turns preparing off (``prepare_threshold=None``).
- **The startup parameter ``options``** (``-c search_path=…``, ``-c statement_timeout=…``):
  PgBouncer refuses the connection (``unsupported startup parameter: options``). The
  option drops the parameters the Database adds there itself; server settings then come
  from the database side (``ALTER ROLE … SET``, or PgBouncer's ``connect_query``), and a
  URL that asks for ``options`` itself is refused with that advice.

The rest of the code base keeps no session state (no ``SET``, advisory locks, ``LISTEN``,
temporary tables or server-side cursors): row locks and everything else end with their
transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import URL

from backfill.domain.errors import ValidationError

URL_OPTION = "pgbouncer"
_VALUES = {"true": True, "false": False}


class DatabaseUrlError(ValidationError, ValueError):
    """The database URL asks for something that cannot work (said as one line by the CLI)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="database_url")


def split_option(url: URL) -> tuple[URL, bool]:
    """The URL without ``pgbouncer=…`` (the driver does not know it) and its value.

    Raises DatabaseUrlError (a ValueError) naming the option for a value other than
    ``true`` / ``false``, on a URL that is not PostgreSQL's, and with ``options=``
    (PgBouncer refuses that parameter)."""
    if URL_OPTION not in url.query:
        return url, False
    raw = url.query[URL_OPTION]
    value = raw if isinstance(raw, str) else ",".join(raw)
    if value.lower() not in _VALUES:
        raise DatabaseUrlError(f"database URL option {URL_OPTION}={value!r}: expected true or false")
    enabled = _VALUES[value.lower()]
    if enabled and url.get_backend_name() != "postgresql":
        raise DatabaseUrlError(f"database URL option {URL_OPTION}=true: only for PostgreSQL URLs (postgresql://…)")
    if enabled and "options" in url.query:
        raise DatabaseUrlError(
            f"database URL options {URL_OPTION}=true and options=…: PgBouncer refuses the startup parameter "
            "'options'; set server settings for the database user instead "
            "(ALTER ROLE name SET search_path = schema) and drop options= from the URL"
        )
    return url.difference_update_query([URL_OPTION]), enabled


def connect_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """psycopg connect arguments that hold across transactions on different server connections."""
    safe = {k: v for k, v in args.items() if k != "options"}
    safe["prepare_threshold"] = None
    return safe
