"""docs/operations.md lists every setting of backfill.config.Settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from backfill.config import Settings

DOC = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_documented(name: str) -> None:
    assert f"| `{name}` |" in DOC, f"add the setting {name} to the table in docs/operations.md"
