"""The one validation of a backfill request (domain.spec), shared by every adapter."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from backfill.domain.errors import ValidationError
from backfill.domain.model import BlockType
from backfill.domain.pipeline import Block, PipelineDefinition
from backfill.domain.spec import DEFAULT_UNITS, BackfillSpec, PipelineDefaults, default_interval, validate

DAG = PipelineDefinition(
    uuid="sales",
    name="sales",
    blocks=(
        Block(uuid="load", type=BlockType.PYTHON, source="", upstream=("extract",)),
        Block(uuid="extract", type=BlockType.PYTHON, source=""),
    ),
)
PIPELINE = PipelineDefaults(
    uuid="sales", timezone="Europe/Berlin", retries=2, retry_delay_seconds=5.0, timeout_seconds=60.0, definition=DAG
)


@pytest.mark.parametrize(
    ("interval_type", "units", "cron", "expected"),
    [
        (None, DEFAULT_UNITS, None, ("day", 1)),
        (None, DEFAULT_UNITS, "0 6 * * *", ("custom", None)),
        ("hour", DEFAULT_UNITS, None, ("hour", 1)),
        ("hour", 3, None, ("hour", 3)),
        ("day", None, None, ("day", None)),  # sent as null: refused later, by the series
    ],
)
def test_default_interval(interval_type: str | None, units: int | None, cron: str | None, expected: object) -> None:
    assert default_interval(interval_type, units, cron) == expected


def test_validate_applies_the_pipelines_defaults_and_its_timezone() -> None:
    valid = validate(BackfillSpec(start="2024-01-01", end="2024-01-03"), PIPELINE)
    assert (valid.interval_type, valid.interval_units, valid.timezone) == ("day", 1, "Europe/Berlin")
    assert valid.start == datetime(2023, 12, 31, 23, tzinfo=UTC)  # midnight in Berlin
    assert (valid.retries, valid.retry_delay_seconds, valid.timeout_seconds) == (2, 5.0, 60.0)
    assert valid.series.count == 3
    assert valid.values()["runs_total"] == 3


def test_validate_with_a_cron_expression_defaults_to_custom_steps() -> None:
    valid = validate(BackfillSpec(start="2024-01-01", end="2024-01-02", cron="0 6 * * *", timezone="UTC"), PIPELINE)
    assert (valid.interval_type, valid.interval_units, valid.series.count) == ("custom", None, 1)  # 06:00 on the 1st


def test_validate_names_an_unnamed_backfill_after_the_pipeline_and_range() -> None:
    valid = validate(BackfillSpec(start="2024-01-01", end="2024-01-03", timezone="UTC"), PIPELINE)
    assert valid.name == "sales 2024-01-01 → 2024-01-03"
    assert validate(BackfillSpec(start="2024-01-01", end="2024-01-03", name="mine"), PIPELINE).name == "mine"


def test_validate_orders_the_block_selection_and_names_the_field() -> None:
    valid = validate(BackfillSpec(start="2024-01-01", end="2024-01-01", block_uuids=["load", "extract"]), PIPELINE)
    assert valid.block_uuids == ("extract", "load")
    with pytest.raises(ValidationError) as info:
        validate(BackfillSpec(start="2024-01-01", end="2024-01-01", block_uuids=["ghost"]), PIPELINE)
    assert info.value.field == "block_uuids" and "ghost" in info.value.message


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"start": "yesterday"}, "start"),
        ({"end": "2023-01-01"}, "end"),
        ({"name": "  "}, "name"),
        ({"name": "x" * 501}, "name"),
        ({"max_active_runs": 0}, "max_active_runs"),
        ({"retries": 101}, "retries"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"run_order": "sideways"}, "run_order"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"variables": {"k": "a\x00b"}}, "variables"),
    ],
)
def test_validate_refuses_each_bad_value_naming_its_field(changes: dict[str, object], field: str) -> None:
    spec = BackfillSpec(start="2024-01-01", end="2024-01-03")
    for key, value in changes.items():
        setattr(spec, key, value)
    with pytest.raises(ValidationError) as info:
        validate(spec, PIPELINE)
    assert info.value.field == field
