"""Test hosts on one machine: network namespaces joined to the host by veth pairs.

Each host gets its own network namespace and its own hostname (a UTS namespace, so a
worker's lease owner names its host as it would on a real machine). It reaches
PostgreSQL, which listens on the host's loopback only, through a TCP forwarder
(``socat``) that the test runs in the host namespace on the veth address. Downing the
host side of the veth link cuts that host off, as a lost machine would be.

Needs root, ``ip`` (iproute2), ``unshare`` (util-linux) and ``socat``; without them the
caller fails with a message that says what is missing — it never skips.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit


class HostsUnavailable(RuntimeError):
    """This machine cannot make network namespaces (not root, or a tool is missing)."""


@dataclass
class Host:
    name: str  # also its hostname
    netns: str
    link: str  # the host-side end of its veth pair
    gateway: str  # the host namespace's address on that link: where its forwarder listens
    address: str  # the address inside the namespace
    forward_port: int
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    forwarder: subprocess.Popen[bytes] | None = None

    def database_url(self, url: str) -> str:
        """``url`` (a PostgreSQL URL on this machine) as this host reaches it."""
        parts = urlsplit(url)
        user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urlunsplit(parts._replace(netloc=f"{user}{self.gateway}:{self.forward_port}"))

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host: its network namespace and its own hostname."""
        script = f'hostname {self.name} && exec "$@"'
        return ["ip", "netns", "exec", self.netns, "unshare", "--uts", "sh", "-c", script, "sh", *argv]

    def start(self, argv: Sequence[str], *, env: dict[str, str], log: str) -> subprocess.Popen[bytes]:
        out = open(log, "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(self.command(argv), env=env, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        self.processes.append(proc)
        return proc

    def cut_off(self) -> None:
        """The machine is lost: its link goes down and its open connections die with it.

        The forwarder (one process per connection, in its own process group) goes too, so
        PostgreSQL sees those connections close and rolls back what they held open, as it
        would once TCP keepalive or ``idle_in_transaction_session_timeout`` gives up on a
        real lost machine. The caller kills the host's own processes."""
        _run("ip", "link", "set", self.link, "down")
        self.stop_forwarder()

    def stop_forwarder(self) -> None:
        if self.forwarder is not None and self.forwarder.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.forwarder.pid, signal.SIGKILL)
            self.forwarder.wait(timeout=10)


def check_available() -> None:
    missing = [tool for tool in ("ip", "unshare", "socat") if shutil.which(tool) is None]
    if missing:
        raise HostsUnavailable(
            f"multi-host tests need {', '.join(missing)} (Debian: iproute2, util-linux, socat; make test installs them)"
        )
    if os.geteuid() != 0:
        raise HostsUnavailable("multi-host tests need root to create network namespaces (ip netns add)")
    probe = f"bfprobe{uuid.uuid4().hex[:6]}"
    result = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise HostsUnavailable(f"'ip netns add' failed here: {result.stderr.strip()}")
    _run("ip", "netns", "delete", probe)


def _run(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def _wait_listening(address: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s, suppress(OSError):
            s.settimeout(0.2)
            s.connect((address, port))
            return
        time.sleep(0.05)
    raise RuntimeError(f"forwarder on {address}:{port} did not start")


@contextmanager
def hosts(count: int, *, target: tuple[str, int]) -> Iterator[list[Host]]:
    """``count`` test hosts, each with a forwarder to ``target`` (host, port) on this machine."""
    check_available()
    tag = uuid.uuid4().hex[:4]
    # One /30 per host in a subnet picked per run, so concurrent runs do not collide.
    subnet = 64 + int(tag, 16) % 128
    made: list[Host] = []
    try:
        for i in range(count):
            name = f"bf{tag}h{i}"
            host = Host(
                name=name,
                netns=name,
                link=f"{name}a",
                gateway=f"10.213.{subnet}.{4 * i + 1}",
                address=f"10.213.{subnet}.{4 * i + 2}",
                forward_port=0,
            )
            _run("ip", "netns", "add", host.netns)
            made.append(host)
            _run("ip", "link", "add", host.link, "type", "veth", "peer", "name", f"{name}b")
            _run("ip", "link", "set", f"{name}b", "netns", host.netns)
            _run("ip", "addr", "add", f"{host.gateway}/30", "dev", host.link)
            _run("ip", "link", "set", host.link, "up")
            _run("ip", "-n", host.netns, "addr", "add", f"{host.address}/30", "dev", f"{name}b")
            _run("ip", "-n", host.netns, "link", "set", f"{name}b", "up")
            _run("ip", "-n", host.netns, "link", "set", "lo", "up")
            host.forward_port = _free_port(host.gateway)
            host.forwarder = subprocess.Popen(
                [
                    "socat",
                    f"TCP-LISTEN:{host.forward_port},bind={host.gateway},fork,reuseaddr",
                    f"TCP:{target[0]}:{target[1]}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # its per-connection children are killed with it
            )
            _wait_listening(host.gateway, host.forward_port)
        yield made
    finally:
        for host in made:
            for proc in host.processes:
                if proc.poll() is None:
                    proc.kill()
                    with suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=10)
        for host in made:
            host.stop_forwarder()
            with suppress(RuntimeError):
                _run("ip", "link", "delete", host.link)
            with suppress(RuntimeError):
                _run("ip", "netns", "delete", host.netns)
