"""Structured domain errors: each adapter renders the same facts in its own words."""

from __future__ import annotations

import pytest

from backfill.domain import transitions
from backfill.domain.errors import (
    CANONICAL,
    InvalidTransition,
    OverlappingBackfill,
    ValidationError,
    Wording,
    names_word,
    rename_words,
)
from backfill.domain.model import BackfillStatus as B

UPPER = Wording(status=str.upper, fields={"start": "range_start", "end": "range_end"}, pipeline="transfer")
PIPELINE = Wording(
    status=lambda s: {"created": "null (not started)", "scheduled": "initial"}.get(s, s),
    fields={"start": "start_datetime", "end": "end_datetime", "cron": "settings.cron"},
)


def test_a_refused_transition_carries_its_facts_and_renders_them_per_wording() -> None:
    with pytest.raises(InvalidTransition) as info:
        transitions.request(B.RUNNING, B.SCHEDULED)
    error = info.value
    assert (error.current, error.requested, error.allowed, error.field) == (
        "running",
        "scheduled",
        ("cancelled",),
        "status",
    )
    assert error.message == "cannot change status from running to scheduled; allowed: cancelled"
    assert error.render(UPPER) == "cannot change status from RUNNING to SCHEDULED; allowed: CANCELLED"
    assert error.render(PIPELINE) == "cannot change status from running to initial; allowed: cancelled"


def test_fields_editable_only_before_the_start_are_named_in_each_wording() -> None:
    with pytest.raises(InvalidTransition) as info:
        transitions.check_settings_editable(B.SCHEDULED, ("start", "cron"))
    assert info.value.fields == ("start", "cron")
    assert info.value.render(UPPER).startswith(
        "range_start, cron can only be changed before the backfill starts (it is SCHEDULED)"
    )
    assert info.value.render(PIPELINE).startswith("start_datetime, settings.cron can only be changed")
    assert "(it is initial)" in info.value.render(PIPELINE)


def test_an_overlap_names_the_other_backfill_and_the_pipeline_in_each_wording() -> None:
    error = OverlappingBackfill(7, "january", "scheduled")
    assert (error.other_id, error.other_name, error.other_status) == (7, "january", "scheduled")
    assert "backfill 7 ('january', scheduled)" in error.message and "same pipeline" in error.message
    assert "backfill 7 ('january', SCHEDULED)" in error.render(UPPER) and "same transfer" in error.render(UPPER)


def test_an_overlapping_failed_backfill_is_to_be_retried_or_cancelled_not_waited_for() -> None:
    assert OverlappingBackfill(7, "january", "failed").message.endswith("; retry or cancel it")
    assert OverlappingBackfill(7, "january", "running").message.endswith("; cancel it or wait for it to finish")


def test_user_text_in_a_transition_error_is_not_a_template() -> None:
    error = InvalidTransition("cannot change to {requested}", requested="'{oops}'")
    assert error.render(UPPER) == "cannot change to '{OOPS}'"
    assert error.render(CANONICAL) == "cannot change to '{oops}'"


@pytest.mark.parametrize(
    ("message", "field", "expected"),
    [
        (
            "end must not be before start (a is before b)",
            "end",
            "range_end must not be before range_start (a is before b)",
        ),
        ("start: 'x' is not a valid date", "start", "range_start: 'x' is not a valid date"),
        ("must be an integer", "end", "range_end: must be an integer"),
        ("start_date must not be after end_date", "end_date", "start_date must not be after end_date"),
        ("the range ends at the end.", "end", "the range ends at the range_end."),
        ("set at least one of: status, name", None, "set at least one of: status, name"),
    ],
)
def test_a_validation_error_names_fields_in_the_adapters_words(message: str, field: str | None, expected: str) -> None:
    assert ValidationError(message, field=field).render(UPPER) == expected


def test_whole_words_only() -> None:
    names = {"cron": "settings.cron"}
    assert (
        rename_words("settings.cron, cron, crontab, my_cron", names) == "settings.cron, settings.cron, crontab, my_cron"
    )
    assert names_word("settings.cron: bad", "settings.cron")
    assert not names_word("settings.cron: bad", "cron")
