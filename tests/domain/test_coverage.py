"""Span compression of a coverage (domain.coverage): properties over random statuses."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backfill.domain.coverage import CoverageStatus, Piece, check_split, compress, expand
from backfill.domain.errors import ValidationError

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


# ---- breaks (split=day): no span crosses one -------------------------------------------------


@given(cells, st.sets(st.integers(1, 59)))
def test_breaks_start_spans_and_change_nothing_else(
    statuses: list[tuple[CoverageStatus, int] | None], wanted: set[int]
) -> None:
    breaks = sorted(b for b in wanted if b < len(statuses))
    spans = compress(len(statuses), pieces_of(statuses), breaks)
    assert expand(spans) == expand(compress(len(statuses), pieces_of(statuses)))
    starts = [span.first for span in spans]
    assert set(breaks) <= set(starts)
    assert all(span.first + span.count - 1 < b or span.first >= b for span in spans for b in breaks)
    # equal neighbours only across a break; the backfill of each piece is counted within it
    assert all(a.status is not b.status or b.first in breaks for a, b in pairwise(spans))
    for span in spans:
        inside = [c for c in statuses[span.first : span.first + span.count] if c is not None]
        if span.status is not CoverageStatus.MISSING:
            tally = {b: sum(1 for c in inside if c[1] == b) for b in {c[1] for c in inside}}
            best = max(tally.values())
            assert span.backfill_id == max(b for b, n in tally.items() if n == best)


def test_a_break_inside_a_piece_splits_it_with_its_backfill() -> None:
    spans = compress(6, [Piece(1, 4, CoverageStatus.FAILED, 7)], [3, 5])
    assert [(s.first, s.count, s.status, s.backfill_id) for s in spans] == [
        (0, 1, CoverageStatus.MISSING, None),
        (1, 2, CoverageStatus.FAILED, 7),
        (3, 2, CoverageStatus.FAILED, 7),
        (5, 1, CoverageStatus.MISSING, None),
    ]


@pytest.mark.parametrize("breaks", [[0], [3, 3], [4, 2], [6], [-1]])
def test_breaks_out_of_order_or_range_are_refused(breaks: list[int]) -> None:
    with pytest.raises(ValueError, match="break"):
        compress(6, [Piece(1, 4, CoverageStatus.FAILED, 7)], breaks)


def test_split_names_its_field() -> None:
    assert check_split(None) is None and check_split("day") == "day"
    with pytest.raises(ValidationError) as caught:
        check_split("week")
    assert caught.value.field == "split" and "'day'" in caught.value.message
