"""The README's two commands: ``make run`` installs the runtime dependencies only and
takes PORT=; ``make test`` installs the development tools and Chromium itself."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def dry_run(*args: str, venv: Path) -> str:
    """What make would run on a fresh clone (``-B``: as if nothing were installed)."""
    result = subprocess.run(
        ["make", "-n", "-B", *args, f"VENV={venv}"], cwd=REPO, capture_output=True, text=True, check=True
    )
    return result.stdout


def test_make_run_installs_the_runtime_only_and_takes_a_port(tmp_path: Path) -> None:
    out = dry_run("run", "PORT=8123", venv=tmp_path / "venv")
    assert "pip install --quiet -e .\n" in out
    assert "[dev]" not in out
    assert "serve --project examples/shop --host 127.0.0.1 --port 8123 " in out


def test_make_test_installs_the_dev_tools_and_chromium(tmp_path: Path) -> None:
    out = dry_run("test", "CHROMIUM=/nonexistent/chromium", venv=tmp_path / "venv")
    assert "pip install --quiet -e '.[dev]'" in out
    assert "apt-get install -y -qq chromium" in out
    assert "the browser tests need Chromium at /nonexistent/chromium" in out
