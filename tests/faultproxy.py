"""A TCP proxy on 127.0.0.1 that a test puts between a process and its database to
break the connection on purpose.

``cut()``: every connection is reset and new ones are refused-by-reset (a database that
went away); ``blackhole()``: connections are accepted and data is swallowed, nothing
comes back (a network that drops packets); ``restore()``: back to forwarding.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

FORWARD, CUT, BLACKHOLE = "forward", "cut", "blackhole"


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode = FORWARD
        self.cuts = 0
        self.refused = 0  # connections reset on arrival while cut
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="faultproxy", daemon=True)
        self._thread.start()

    # ---- control -------------------------------------------------------------------

    def cut(self) -> None:
        """Reset every open connection and every new one until ``restore()``."""
        with self._lock:
            self.mode = CUT
            self.cuts += 1
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for s in pair:
                _reset(s)

    def blackhole(self) -> None:
        """Keep connections open but forward nothing either way until ``restore()``."""
        with self._lock:
            self.mode = BLACKHOLE

    def restore(self) -> None:
        """Forward again; connections accepted while black-holed (never connected) are reset."""
        with self._lock:
            self.mode = FORWARD
            stale = [pair for pair in self._pairs if pair[1] is None]
            self._pairs = [pair for pair in self._pairs if pair[1] is not None]
        for client, _ in stale:
            _reset(client)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for s in pair:
                _reset(s)
        self._listener.close()

    def url_for(self, url: str) -> str:
        """``url`` (postgresql://user@host:port/db?...) pointed at this proxy."""
        parts = urlsplit(url)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@127.0.0.1:{self.port}" if auth else f"127.0.0.1:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    # ---- the loop --------------------------------------------------------------------

    def _loop(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ, None)
        registered: dict[socket.socket, socket.socket] = {}
        while not self._stop.is_set():
            with self._lock:
                live = {s for pair in self._pairs for s in pair if s is not None}
                mode = self.mode
            for s in list(registered):
                if s not in live:
                    with contextlib.suppress(KeyError, ValueError):
                        sel.unregister(s)
                    registered.pop(s, None)
            for client, upstream in list(self._pairs):
                if upstream is None:
                    continue
                for a, b in ((client, upstream), (upstream, client)):
                    if a not in registered:
                        with contextlib.suppress(ValueError, OSError):
                            sel.register(a, selectors.EVENT_READ, None)
                            registered[a] = b
            for key, _ in sel.select(0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._listener:
                    self._accept(mode)
                    continue
                peer = registered.get(sock)
                if peer is None:
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._drop(sock)
                    continue
                if mode == FORWARD:
                    try:
                        peer.sendall(data)
                    except OSError:
                        self._drop(sock)
                # BLACKHOLE: swallowed
        sel.close()

    def _accept(self, mode: str) -> None:
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        client.setblocking(True)
        if mode == CUT:
            self.refused += 1
            _reset(client)
            return
        upstream: socket.socket | None = None
        if mode == FORWARD:
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                return
        with self._lock:
            self._pairs.append((client, upstream))

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            for pair in self._pairs:
                if sock in pair:
                    self._pairs.remove(pair)
                    for s in pair:
                        _reset(s)
                    return


def _reset(sock: socket.socket | None) -> None:
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


@contextlib.contextmanager
def fault_proxy(url: str) -> Iterator[tuple[FaultProxy, str]]:
    """A proxy in front of the database of ``url``, and the URL that goes through it."""
    parts = urlsplit(url)
    proxy = FaultProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    try:
        yield proxy, proxy.url_for(url)
    finally:
        proxy.close()
