"""docs/cli.md describes every command and every option of the real command tree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from backfill.cli.main import app

DOC = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
COMMON = DOC.split("### Common options", 1)[1].split("\n## ", 1)[0]


def leaves() -> dict[str, list[str]]:
    """``"admin create-team"`` → its options (``--name``, ``--db``, …)."""
    found: dict[str, list[str]] = {}

    def walk(command: object, path: list[str]) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                walk(sub, [*path, name])
            return
        options = [
            opt
            for p in getattr(command, "params", [])
            if p.param_type_name == "option"
            for opt in p.opts
            if opt.startswith("--") and opt != "--help"
        ]
        found[" ".join(path)] = options

    walk(typer.main.get_command(app), [])
    return found


def section(name: str) -> str:
    match = re.search(rf"^### backfill {re.escape(name)}\n(?P<body>.*?)(?=^##)", DOC + "\n##", re.M | re.S)
    assert match, f"docs/cli.md has no section '### backfill {name}'"
    return match.group("body")


@pytest.mark.parametrize("name", sorted(leaves()))
def test_every_command_and_option_is_documented(name: str) -> None:
    body = section(name)
    for option in leaves()[name]:
        assert f"`{option}" in body or f"`{option}`" in COMMON, f"backfill {name}: {option} is not in docs/cli.md"
