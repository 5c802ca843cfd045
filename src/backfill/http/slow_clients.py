"""A bound on how long a client may take to send its request head.

uvicorn closes a keep-alive connection that stays idle between requests, but not one
that never completes a request head: a client that connects and sends nothing, or sends
its headers a byte at a time and then stalls, holds a connection (and its buffers)
forever. :func:`bounded_head_protocol` returns uvicorn's httptools protocol with a timer
that starts when a connection opens and when each request begins, stops when the head
is complete, and closes the connection when it fires. The body is bounded elsewhere
(``api/middleware.py``: its size) and by the handlers.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _BoundedHeadProtocol(HttpToolsProtocol):
    head_timeout_seconds: float = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.head_timeout_seconds, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def bounded_head_protocol(seconds: float) -> type[HttpToolsProtocol]:
    """uvicorn's ``http=`` protocol class closing connections whose request head takes
    longer than ``seconds`` to arrive."""
    return type("BoundedHeadProtocol", (_BoundedHeadProtocol,), {"head_timeout_seconds": float(seconds)})
