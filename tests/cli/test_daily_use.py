"""Daily use against a real ``backfill serve`` on a copy of the example project: re-run
chosen intervals through the CLI (``runs:rerun``), and edits of a block file picked up
by the running server (reload, pipeline versions)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.cli.test_backfills_cmd import Cli, one_error_line
from tests.cli.test_serve import free_port, healthy
from tests.engine.procs import wait_for

from backfill.client import BackfillClient

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(the server's working directory, its project directory: a copy to edit)."""
    cwd = tmp_path_factory.mktemp("serve")
    project = cwd / "project"
    shutil.copytree(REPO / "examples" / "shop", project, ignore=shutil.ignore_patterns(".backfill"))
    port = free_port()
    cmd = [
        sys.executable, "-m", "backfill", "serve", "--project", str(project),
        "--port", str(port), "--workers", "2",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKFILL_")}
    with open(cwd / "serve.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_for(lambda: healthy(port), timeout=60, interval=0.2)
        wait_for(lambda: (cwd / ".backfill" / "credentials.json").exists(), timeout=10, interval=0.1)
        yield cwd, project
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def client_of(cwd: Path) -> BackfillClient:
    creds = json.loads((cwd / ".backfill" / "credentials.json").read_text())
    return BackfillClient(creds["url"], creds["token"], creds["team_id"])


def test_rerun_through_the_cli(served: tuple[Path, Path]) -> None:
    cwd, _ = served
    cli = Cli(cwd)
    failing = cli(
        "create", "daily_sales", "--start", "2023-03-01", "--end", "2023-03-03",
        "--var", "orders_file=missing.csv", "--retries", "0", "--wait", "--json",
    )  # fmt: skip
    assert failing.returncode == 1, failing.stderr
    backfill_id = str(json.loads(failing.stdout)["transfer_backfill_id"])
    runs = {r["data_date"]: r for r in cli.json("runs", backfill_id)}
    assert {r["status"] for r in runs.values()} == {"FAILED"}

    # one run by id: a new attempt of that run only; the backfill is scheduled again
    rerun = cli.json("rerun", backfill_id, "--run", str(runs["2023-03-02"]["id"]))
    assert rerun["requeued"] == 1 and rerun["backfill"]["status"] == "SCHEDULED"
    with client_of(cwd) as client:
        assert client.wait(int(backfill_id), poll=0.2, timeout=60)["status"] == "FAILED"
    attempts = {r["data_date"]: r["attempt"] for r in cli.json("runs", backfill_id)}
    assert attempts == {"2023-03-01": 1, "2023-03-02": 2, "2023-03-03": 1}

    # by date, and every failed one; the text output says what happened
    by_date, bad_date, neither, both = cli.many(
        ["rerun", backfill_id, "--date", "2023-03-03"],
        ["rerun", backfill_id, "--date", "2023-04-01"],
        ["rerun", backfill_id],
        ["rerun", backfill_id, "--failed", "--run", "1"],
    )
    assert by_date.returncode == 0 and "re-queued 1 interval" in by_date.stdout, by_date.stderr
    assert bad_date.returncode == 1 and "2023-04-01" in one_error_line(bad_date.stderr)
    assert neither.returncode != 0 and "exactly one of --failed" in one_error_line(neither.stderr)
    assert both.returncode != 0 and "--failed, --run" in one_error_line(both.stderr)
    with client_of(cwd) as client:
        client.wait(int(backfill_id), poll=0.2, timeout=60)
    failed = cli.json("rerun", backfill_id, "--failed")
    assert failed["requeued"] == 3
    with client_of(cwd) as client:
        client.wait(int(backfill_id), poll=0.2, timeout=60)
    attempts = {r["data_date"]: r["attempt"] for r in cli.json("runs", backfill_id)}
    assert attempts == {"2023-03-01": 2, "2023-03-02": 3, "2023-03-03": 3}

    # a final backfill refuses, in one line naming why
    cancelled = cli.json("cancel", backfill_id)
    assert cancelled["status"] == "CANCELLED"
    refused = cli("rerun", backfill_id, "--failed")
    assert refused.returncode == 1 and "final" in one_error_line(refused.stderr)


def test_a_block_edited_under_serve_runs_on_retry_without_a_sync(served: tuple[Path, Path]) -> None:
    cwd, project = served
    cli = Cli(cwd)
    extract = project / "pipelines" / "daily_sales" / "extract.py"
    original = extract.read_text()
    with client_of(cwd) as client:
        good = client.pipeline("daily_sales")["version"]
        assert good

        def version() -> str:
            return str(client.pipeline("daily_sales")["version"])

        # a failing edit, picked up by the running server
        extract.write_text(
            original.replace(
                "def run(context",
                "def run(context):\n    raise RuntimeError('broken on purpose')\n\n\ndef _run(context",
                1,
            )
        )
        wait_for(lambda: version() != good, timeout=15, interval=0.1)
        broken = version()
        failing = cli(
            "create",
            "daily_sales",
            "--start",
            "2022-05-01",
            "--end",
            "2022-05-02",
            "--retries",
            "0",
            "--wait",
            "--json",
        )
        assert failing.returncode == 1, failing.stderr
        backfill_id = str(json.loads(failing.stdout)["transfer_backfill_id"])
        runs = cli.json("runs", backfill_id)
        assert {(r["status"], r["attempt"], r["pipeline_version"]) for r in runs} == {("FAILED", 1, broken)}
        logs = cli("logs", str(runs[0]["id"]))
        assert logs.returncode == 0
        assert f"attempt 1 of 1 · FAILED · pipeline version {broken}" in logs.stdout
        assert "--- block extract (python) ---" in logs.stdout
        assert "RuntimeError: broken on purpose" in logs.stdout and "Traceback" in logs.stdout

        # the fix: no sync command, a retry runs the fixed code (the same digest as before)
        extract.write_text(original)
        wait_for(lambda: version() == good, timeout=15, interval=0.1)
        assert cli("retry", backfill_id).returncode == 0
        assert client.wait(int(backfill_id), poll=0.2, timeout=60)["status"] == "COMPLETED"
        runs = cli.json("runs", backfill_id)
        assert {(r["status"], r["attempt"], r["pipeline_version"]) for r in runs} == {("COMPLETED", 2, good)}
        text = cli("runs", backfill_id)
        assert good in text.stdout

        # an edit that does not load: the last good version stays, with the reason
        pipeline_yaml = project / "pipelines" / "daily_sales" / "pipeline.yaml"
        yaml_text = pipeline_yaml.read_text()
        pipeline_yaml.write_text(yaml_text.replace("type: python", "type: pyhton", 1))
        wait_for(lambda: client.pipeline("daily_sales")["load_error"], timeout=15, interval=0.1)
        transfer = client.pipeline("daily_sales")
        assert "pyhton" in transfer["load_error"] and str(pipeline_yaml) in transfer["load_error"]
        assert transfer["version"] == good
        pipeline_yaml.write_text(yaml_text)
        wait_for(lambda: client.pipeline("daily_sales")["load_error"] is None, timeout=15, interval=0.1)
    assert "the last good version keeps running" in (cwd / "serve.log").read_text()
