"""Coverage of a pipeline over an interval series: spans of equal status (docs/api.md).

Pure arithmetic on interval *indices* of one series: the store says which intervals
have a latest run and with which status (as :class:`Piece` runs of consecutive
indices), this module fills the rest with ``missing`` and merges neighbours of equal
status into :class:`Span` objects. Mapping indices to datetimes is the caller's job.

``split="day"`` (:data:`SPLITS`) cuts spans where the local date of the interval starts
changes (the series' timezone), so each span's intervals start on one local day and its
count is exact per day whatever the spacing of the series (cron, DST days).

``backfill_id`` of a span: the backfill whose runs gave the status to the most
intervals of the span (on a tie, the newest backfill: the highest id); ``None`` for a
``missing`` span.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from backfill.domain.errors import ValidationError

SPLITS = ("day",)


class CoverageStatus(StrEnum):
    """The status of an interval: that of its latest run, or ``missing`` if never run."""

    COMPLETED = "completed"
    FAILED = "failed"
    RUNNING = "running"
    QUEUED = "queued"
    CANCELLED = "cancelled"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class Piece:
    """``count`` consecutive intervals from index ``first`` whose latest runs share a status
    and a backfill."""

    first: int
    count: int
    status: CoverageStatus
    backfill_id: int


@dataclass(frozen=True, slots=True)
class Span:
    """``count`` consecutive intervals from index ``first`` of equal status."""

    first: int
    count: int
    status: CoverageStatus
    backfill_id: int | None

    @property
    def last(self) -> int:
        return self.first + self.count - 1


class _Open:
    """A span being built: its extent and how many intervals each backfill gave it."""

    __slots__ = ("by_backfill", "count", "first", "status")

    def __init__(self, first: int, status: CoverageStatus) -> None:
        self.first = first
        self.count = 0
        self.status = status
        self.by_backfill: dict[int, int] = {}

    def add(self, count: int, backfill_id: int | None) -> None:
        self.count += count
        if backfill_id is not None:
            self.by_backfill[backfill_id] = self.by_backfill.get(backfill_id, 0) + count

    def close(self) -> Span:
        chosen = max(self.by_backfill.items(), key=lambda kv: (kv[1], kv[0]))[0] if self.by_backfill else None
        return Span(self.first, self.count, self.status, chosen)


def check_split(value: object) -> str | None:
    """``value`` if it is one of :data:`SPLITS` or None; ValidationError naming ``split``."""
    if value is None or value in SPLITS:
        return None if value is None else str(value)
    raise ValidationError(
        f"split must be {' or '.join(repr(v) for v in SPLITS)} (spans cut at local midnight) or absent, got {value!r}",
        field="split",
    )


def compress(total: int, pieces: Iterable[Piece], breaks: Iterable[int] = ()) -> list[Span]:
    """The spans of a series of ``total`` intervals.

    ``pieces`` must be in ascending index order, within ``[0, total)`` and must not
    overlap (ValueError otherwise). Every index not in a piece is ``missing``. The spans
    returned cover ``[0, total)`` exactly, in order, and no two neighbours share a status
    unless a *break* lies between them: every index of ``breaks`` (strictly ascending,
    within ``(0, total)``; ValueError otherwise) starts a new span, so that no span
    crosses it (``split=day``: the first interval of each local day).
    """
    if total < 0:
        raise ValueError("total must be >= 0")
    spans: list[Span] = []
    current: _Open | None = None
    position = 0
    cuts = iter(breaks)
    cut = next(cuts, None)

    def open_span(first: int, count: int, status: CoverageStatus, backfill_id: int | None) -> None:
        nonlocal current
        if current is not None and current.status is status:
            current.add(count, backfill_id)
            return
        if current is not None:
            spans.append(current.close())
        current = _Open(first, status)
        current.add(count, backfill_id)

    def feed(first: int, count: int, status: CoverageStatus, backfill_id: int | None) -> None:
        nonlocal current, cut
        end = first + count
        while cut is not None and cut < end:
            if cut < first or cut == 0:
                raise ValueError(f"break {cut} is not strictly ascending within (0, {total})")
            if cut > first:
                open_span(first, cut - first, status, backfill_id)
                first = cut
            if current is not None:
                spans.append(current.close())
                current = None
            following = next(cuts, None)
            if following is not None and following <= cut:
                raise ValueError(f"break {following} is not strictly ascending within (0, {total})")
            cut = following
        open_span(first, end - first, status, backfill_id)

    for piece in pieces:
        if piece.count < 1 or piece.first < position or piece.first + piece.count > total:
            raise ValueError(f"piece {piece} overlaps another or lies outside [0, {total})")
        if piece.first > position:
            feed(position, piece.first - position, CoverageStatus.MISSING, None)
        feed(piece.first, piece.count, piece.status, piece.backfill_id)
        position = piece.first + piece.count
    if position < total:
        feed(position, total - position, CoverageStatus.MISSING, None)
    if current is not None:
        spans.append(current.close())
    if cut is not None:
        raise ValueError(f"break {cut} lies outside (0, {total})")
    return spans


def expand(spans: Iterable[Span]) -> list[CoverageStatus]:
    """The status of every interval, index by index (for tests and small series)."""
    return [span.status for span in spans for _ in range(span.count)]
