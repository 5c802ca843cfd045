"""A client that never completes its request head is disconnected; others are served."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from backfill.http.slow_clients import bounded_head_protocol


async def hello(scope: dict[str, object], receive: object, send: object) -> None:  # noqa: ARG001
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]


@pytest.fixture
def server() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    config = uvicorn.Config(
        hello,
        host="127.0.0.1",
        port=port,
        log_config=None,
        lifespan="off",
        timeout_keep_alive=30,  # longer than the head bound: only the head bound can close
        http=bounded_head_protocol(1.0),
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started
    yield port
    srv.should_exit = True
    thread.join(timeout=10)


def closed_by_server(sock: socket.socket, wait: float = 15.0) -> bool:
    sock.settimeout(wait)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False


@pytest.mark.parametrize(
    "head", [b"", b"GET / HTTP/1.1\r\nHost: x\r\n"], ids=["nothing sent", "headers never finished"]
)
def test_a_stalled_request_head_is_disconnected(server: int, head: bytes) -> None:
    with socket.create_connection(("127.0.0.1", server)) as sock:
        sock.sendall(head)
        assert closed_by_server(sock)


def test_complete_requests_are_served_and_a_kept_alive_connection_stays_bounded(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server)) as sock:
        for _ in range(2):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.settimeout(10)
            assert sock.recv(1024).startswith(b"HTTP/1.1 200")
        # a second request that stalls part-way through its head is cut too
        sock.sendall(b"GET / HTTP/1.1\r\nHo")
        assert closed_by_server(sock)
