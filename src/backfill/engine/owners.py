"""Lease owners on this host whose process is gone (``host:pid:random``, see
``worker.new_owner_id``): a worker that starts re-queues their runs at once instead of
waiting for the leases to expire (RELIABILITY.md "Faults")."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import psutil
from sqlalchemy import Connection

from backfill.store import queue

# psutil derives a create time from the boot time, which /proc gives in whole seconds:
# a pid counts as reused only when its process started clearly after the runs did.
CREATE_TIME_SLACK = timedelta(seconds=5)


def parse_owner(owner: str) -> tuple[str, int] | None:
    """``(host, pid)`` of an owner id, or None when it is not one of ours."""
    host, sep, rest = owner.rpartition(":")
    host, sep2, pid = host.rpartition(":")
    if not (sep and sep2 and host and pid.isdigit() and rest):
        return None
    return host, int(pid)


def process_gone(pid: int, held_since: datetime | None) -> bool:
    """No process ``pid``, or only a newer one that reused the pid (created after the
    owner started holding its runs), or a zombie."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return True
        created = datetime.fromtimestamp(proc.create_time(), UTC)
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False  # cannot tell (permissions): leave it to lease expiry
    return held_since is not None and created > held_since + CREATE_TIME_SLACK


def dead_owners_on_this_host(held: Mapping[str, datetime | None], host: str | None = None) -> list[str]:
    """The owners in ``held`` (owner -> earliest start of its runs) on ``host`` (this one)
    whose process no longer exists."""
    host = host or socket.gethostname()
    dead = []
    for owner, since in held.items():
        parsed = parse_owner(owner)
        if parsed is not None and parsed[0] == host and process_gone(parsed[1], since):
            dead.append(owner)
    return sorted(dead)


def reclaim_dead_on_this_host(conn: Connection, now: datetime) -> list[queue.RunKey]:
    dead = dead_owners_on_this_host(queue.running_owners(conn))
    return queue.expire_owners(conn, dead, now, reason="is no longer running on this host")
