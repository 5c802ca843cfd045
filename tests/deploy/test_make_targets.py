"""`make test` installs what tests/deploy and tests/multihost need (PgBouncer, socat)
the way it installs Chromium, and runs tests/deploy in its PostgreSQL pass only."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def test_make_test_installs_pgbouncer_and_socat_and_runs_tests_deploy_on_postgresql(tmp_path: Path) -> None:
    result = subprocess.run(
        ["make", "-n", "-B", "test", f"VENV={tmp_path / 'venv'}", "PGBOUNCER=/nonexistent/pgbouncer"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    out = result.stdout
    assert "apt-get install -y -qq pgbouncer" in out
    assert "the PgBouncer tests need PgBouncer at /nonexistent/pgbouncer" in out
    assert "apt-get install -y -qq socat" in out
    runs = [line for line in out.splitlines() if "/bin/pytest " in line]
    sqlite_pass = next(line for line in runs if not line.startswith("BACKFILL_TEST_DATABASE_URL="))
    postgres_pass = next(line for line in runs if line.startswith("BACKFILL_TEST_DATABASE_URL="))
    assert "--ignore=tests/deploy" in sqlite_pass
    assert "--ignore" not in postgres_pass
    # the PgBouncer and socat checks come before the PostgreSQL pass
    assert out.index("apt-get install -y -qq pgbouncer") < out.index(postgres_pass)
