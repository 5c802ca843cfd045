"""Span compression of a coverage (domain.coverage): properties over random statuses."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backfill.domain.coverage import CoverageStatus, Piece, compress, expand

RUN_STATUSES = [s for s in CoverageStatus if s is not CoverageStatus.MISSING]

# One entry per interval: None (never run) or (status, backfill id).
cells = st.lists(st.none() | st.tuples(st.sampled_from(RUN_STATUSES), st.integers(1, 4)), max_size=60)


def pieces_of(statuses: list[tuple[CoverageStatus, int] | None]) -> list[Piece]:
    """Consecutive cells of equal (status, backfill) as pieces, as the store would give them."""
    pieces: list[Piece] = []
    for i, cell in enumerate(statuses):
        if cell is None:
            continue
        last = pieces[-1] if pieces else None
        if last is not None and last.first + last.count == i and (last.status, last.backfill_id) == cell:
            pieces[-1] = Piece(last.first, last.count + 1, last.status, last.backfill_id)
        else:
            pieces.append(Piece(i, 1, cell[0], cell[1]))
    return pieces


@given(cells)
def test_spans_cover_every_interval_with_its_status(statuses: list[tuple[CoverageStatus, int] | None]) -> None:
    spans = compress(len(statuses), pieces_of(statuses))
    assert expand(spans) == [c[0] if c else CoverageStatus.MISSING for c in statuses]
    position = 0
    for span in spans:
        assert span.first == position and span.count >= 1
        position += span.count
    assert position == len(statuses)


@given(cells)
def test_neighbouring_spans_differ_in_status(statuses: list[tuple[CoverageStatus, int] | None]) -> None:
    spans = compress(len(statuses), pieces_of(statuses))
    assert all(a.status is not b.status for a, b in pairwise(spans))


@given(cells)
def test_backfill_of_a_span_gave_most_of_its_intervals(statuses: list[tuple[CoverageStatus, int] | None]) -> None:
    for span in compress(len(statuses), pieces_of(statuses)):
        inside = statuses[span.first : span.first + span.count]
        if span.status is CoverageStatus.MISSING:
            assert span.backfill_id is None
            continue
        tally: dict[int, int] = {}
        for cell in inside:
            assert cell is not None
            tally[cell[1]] = tally.get(cell[1], 0) + 1
        best = max(tally.values())
        assert span.backfill_id == max(b for b, n in tally.items() if n == best)


def test_pieces_split_the_same_way_give_the_same_spans() -> None:
    whole = compress(10, [Piece(2, 6, CoverageStatus.COMPLETED, 1)])
    split = compress(10, [Piece(2, 3, CoverageStatus.COMPLETED, 1), Piece(5, 3, CoverageStatus.COMPLETED, 1)])
    assert whole == split
    assert [(s.first, s.count, s.status) for s in whole] == [
        (0, 2, CoverageStatus.MISSING),
        (2, 6, CoverageStatus.COMPLETED),
        (8, 2, CoverageStatus.MISSING),
    ]


def test_empty_series_and_no_runs() -> None:
    assert compress(0, []) == []
    assert expand(compress(3, [])) == [CoverageStatus.MISSING] * 3


@pytest.mark.parametrize(
    "pieces",
    [
        [Piece(0, 2, CoverageStatus.FAILED, 1), Piece(1, 1, CoverageStatus.FAILED, 1)],  # overlap
        [Piece(2, 1, CoverageStatus.FAILED, 1), Piece(0, 1, CoverageStatus.FAILED, 1)],  # out of order
        [Piece(4, 2, CoverageStatus.FAILED, 1)],  # beyond the end
    ],
)
def test_inconsistent_pieces_are_refused(pieces: list[Piece]) -> None:
    with pytest.raises(ValueError, match="overlaps another or lies outside"):
        compress(5, pieces)
