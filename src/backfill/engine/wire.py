"""What the executor's parent (``executor.py``) and its children (``child.py``) send each
other over their pipe: defined once, imported by both sides.

NamedTuples: picklable by reference to their class, with named fields, and as cheap to
build and to pickle as the plain tuples they replaced (the hot path of every run).

Parent -> child: one ``Job`` per run (``None`` asks the child to exit). Child -> parent:
``Progress`` after each completed block that is not the last one (so a killed run still
reports its finished blocks) and ``Finished`` when the run ends.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class Job(NamedTuple):
    """One run, as a child executes it."""

    run_id: int
    attempt: int
    backfill_id: int
    pipeline_uuid: str
    blocks_blob: bytes  # the pickled selected blocks (the child caches them per blob)
    start_us: int  # interval start, microseconds since the epoch (see to_micros)
    end_us: int  # interval end (exclusive), the same
    timezone: str
    variables: dict[str, Any]
    connections: dict[str, str]  # name -> SQLAlchemy URL
    log_path: str  # the file fds 1 and 2 point at during the run


class WireBlockResult(NamedTuple):
    """A block's result as the child reports it (timestamps are ``time.time()`` values)."""

    uuid: str
    status: str  # "completed" | "failed" | "skipped"
    started: float | None
    ended: float | None
    rows: int | None
    error: str | None
    output: str | None


class Progress(NamedTuple):
    """Blocks finished since the last message, while the run goes on."""

    results: list[WireBlockResult]


class Finished(NamedTuple):
    """The end of a run: its last block results and the totals."""

    results: list[WireBlockResult]
    ok: bool
    error: str | None
    rows: int
    duration: float  # seconds, measured in the child
    log_size: int  # bytes of the run's log; 0: nothing worth reading (the file is gone)


Message = Progress | Finished


def to_micros(value: datetime) -> int:
    """Exact integer microseconds since the epoch (pickles far faster than an aware datetime)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    """The aware UTC instant of ``to_micros``."""
    return _EPOCH + timedelta(microseconds=micros)
