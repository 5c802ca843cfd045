"""How an async route calls a service: where the call runs, and which of its validation
errors are about a query parameter (a 400, not a 422)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from backfill.api.problems import ApiError
from backfill.api.rendering import database
from backfill.domain.errors import ValidationError

T = TypeVar("T")


async def read(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a read use case. On SQLite it runs inline: a local read takes less time than
    handing it to a worker thread, and threads competing for the GIL slow the event loop
    down. On PostgreSQL (network round trips) it runs in the thread pool."""
    if database(request).is_sqlite:
        return fn(*args, **kwargs)
    return await run_in_threadpool(fn, *args, **kwargs)


@contextmanager
def query_parameters(*fields: str) -> Iterator[None]:
    """A ``ValidationError`` about one of ``fields`` is the client's query: a 400
    ``invalid query parameter <field>: ...``; any other passes on unchanged."""
    try:
        yield
    except ValidationError as exc:
        if exc.field in fields:
            raise ApiError(400, f"invalid query parameter {exc.field}: {exc.message}", field=exc.field) from exc
        raise
