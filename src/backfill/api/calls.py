"""How a route calls a service: what it calls with (``Call``: the request and its
authorized principal), where the call runs, and which of its validation errors are about a
query parameter (a 400, not a 422)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Depends
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from backfill.api.problems import ApiError
from backfill.api.rendering import database
from backfill.domain.errors import ValidationError
from backfill.services.actor import Actor
from backfill.services.auth import Principal
from backfill.store.db import Database

T = TypeVar("T")


async def read(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a read use case. On SQLite it runs inline: a local read takes less time than
    handing it to a worker thread, and threads competing for the GIL slow the event loop
    down. On PostgreSQL (network round trips) it runs in the thread pool."""
    if database(request).is_sqlite:
        return fn(*args, **kwargs)
    return await run_in_threadpool(fn, *args, **kwargs)


@dataclass(frozen=True)
class Call:
    """What a route works with: its request and the principal its dependency authorized
    (each dialect declares the dependency, ``ReadCall`` / ``WriteCall``, with its own
    authentication)."""

    request: Request
    principal: Principal

    @property
    def db(self) -> Database:
        return database(self.request)

    @property
    def actor(self) -> Actor:
        return self.principal.actor

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """The read use case ``fn(db, actor, *args, **kwargs)``, run where ``read`` says."""
        return await read(self.request, fn, self.db, self.actor, *args, **kwargs)


def call_with(authorize: Callable[..., Any]) -> Any:
    """``Depends`` of a ``Call``: the request, with the principal ``authorize`` (a dialect's
    authentication dependency) returns. Inline: it only wraps what ``authorize`` did."""

    async def dependency(request: Request, principal: Principal = Depends(authorize)) -> Call:
        return Call(request, principal)

    return Depends(dependency)


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
