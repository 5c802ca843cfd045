"""``backfill create / list / show / runs / logs / cancel / retry / pause / resume``.

Fast tests drive the commands in-process against a mocked API; the end-to-end test
starts a real ``backfill serve`` with the example project and runs the CLI as a
subprocess in the server's directory (it finds ``./.backfill/credentials.json``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from tests.cli.test_serve import free_port, healthy
from tests.engine.procs import wait_for
from typer.testing import CliRunner

from backfill.cli import backfills_cmd
from backfill.cli.backfills_cmd import parse_vars, register
from backfill.client import BackfillClient

REPO = Path(__file__).resolve().parents[2]
COMMANDS = ("create", "list", "show", "runs", "logs", "cancel", "retry", "pause", "resume")


@pytest.fixture
def app() -> typer.Typer:
    from backfill.cli.main import app as main_app

    register(main_app)
    return main_app


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


# ---- in-process, mocked API ------------------------------------------------------------------


def test_register_is_idempotent(app: typer.Typer) -> None:
    register(app)
    names = [c.name for c in app.registered_commands]
    for name in COMMANDS:
        assert names.count(name) == 1


def test_every_command_has_help(app: typer.Typer) -> None:
    runner = CliRunner()
    for name in COMMANDS:
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, result.output
        assert "--json" in result.output and "--url" in result.output


def test_parse_vars() -> None:
    assert parse_vars(None) is None
    assert parse_vars(["n=5", "flag=true", "region=eu", "list=[1, 2]", "eq=a=b", "empty=", 'q="7"']) == {
        "n": 5,
        "flag": True,
        "region": "eu",
        "list": [1, 2],
        "eq": "a=b",
        "empty": "",
        "q": "7",
    }


@pytest.mark.parametrize("bad", ["novalue", "=5"])
def test_malformed_var_names_itself(app: typer.Typer, bad: str) -> None:
    result = CliRunner().invoke(
        app, ["create", "daily_sales", "--start", "2024-01-01", "--end", "2024-01-02", "--var", bad]
    )
    assert result.exit_code == 1
    assert f"--var '{bad}'" in one_error_line(result.stderr)


def test_missing_connection_settings_are_one_line(
    app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("BACKFILL_URL", "BACKFILL_TOKEN", "BACKFILL_TEAM_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    assert "BACKFILL_URL" in line and "credentials.json" in line


def test_unreachable_server_names_the_url(app: typer.Typer) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(app, ["show", "1", "--url", url, "--token", "t", "--team", "1"])
    assert result.exit_code == 1
    assert url in one_error_line(result.stderr)


def _backfill(status: str, completed: int, failed: int, running: int) -> dict[str, Any]:
    return {
        "transfer_backfill_id": 7,
        "transfer_id": 1,
        "transfer_uuid": "daily_sales",
        "name": "daily_sales 2024-01-01 → 2024-01-03",
        "range_start_date": "2024-01-01",
        "range_end_date": "2024-01-03",
        "status": status,
        "paused": False,
        "transfer_runs_total": 3,
        "transfer_runs_created": 3,
        "transfer_runs_completed": completed,
        "transfer_runs_failed": failed,
        "transfer_runs_running": running,
        "transfer_runs_cancelled": 0,
        "error_report": [{"transfer_run_date": "2024-01-02", "error": "boom\nTraceback ..."}] if failed else [],
        "metrics": {
            "progress": (completed + failed) / 3,
            "finished_runs": completed + failed,
            "runs_to_run": 3,
            "estimated_seconds_remaining": 1.5 if running else None,
        },
    }


def test_show_progress_never_counts_cancelled_intervals_as_done(app: typer.Typer, mocked: list[dict[str, Any]]) -> None:
    cancelled = {
        **_backfill("CANCELLED", 12, 0, 0),
        "transfer_runs_total": 31,
        "transfer_runs_created": 12,
        "transfer_runs_cancelled": 19,
        "metrics": {"progress": 1.0, "finished_runs": 12, "runs_to_run": 12},
        "interval_type": "day",
        "interval_units": 1,
        "timezone": "UTC",
        "max_active_runs": 4,
        "run_order": "newest_first",
        "reprocess": "all",
        "created_time": "2024-01-01T00:00:00Z",
    }
    mocked.append(cancelled)
    result = CliRunner().invoke(app, ["show", "7"])
    assert result.exit_code == 0, result.output
    assert "12/12 (100%), 19 cancelled" in result.stdout
    assert "31/31" not in result.stdout


@pytest.fixture
def mocked(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The CLI's client answers from a list of backfill states (create, then each poll)."""
    states: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/teams/1/transfers":
            data: Any = [{"id": 1, "uuid": "daily_sales"}]
        else:
            data = states.pop(0) if len(states) > 1 else states[0]
        return httpx.Response(200, json={"meta": {"request_id": "r-12345678", "total": 1}, "data": data})

    def client(_url: str | None, _token: str | None, _team: int | None) -> BackfillClient:
        c = BackfillClient("http://mock.test", "t", 1, transport=httpx.MockTransport(handler))
        c._sleep = lambda _seconds: None
        return c

    monkeypatch.setattr(backfills_cmd, "_client", client)
    return states


def test_wait_for_a_failing_backfill_exits_non_zero_with_the_report(
    app: typer.Typer, mocked: list[dict[str, Any]]
) -> None:
    mocked += [_backfill("SCHEDULED", 0, 0, 0), _backfill("RUNNING", 1, 0, 2), _backfill("FAILED", 2, 1, 0)]
    args = ["create", "daily_sales", "--start", "2024-01-01", "--end", "2024-01-03", "--wait", "--poll", "0.05"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "backfill 7 FAILED" in result.stdout
    assert "2024-01-02" in result.stdout and "boom" in result.stdout
    assert (
        result.stderr.strip().splitlines()[-1] == "error: backfill 7 FAILED: 1 failed, 0 cancelled of 3 interval runs"
    )
    assert "Traceback" not in result.stderr


def test_wait_with_json_prints_only_the_final_object(app: typer.Typer, mocked: list[dict[str, Any]]) -> None:
    mocked += [_backfill("RUNNING", 0, 0, 3), _backfill("COMPLETED", 3, 0, 0)]
    args = ["create", "daily_sales", "--start", "2024-01-01", "--end", "2024-01-03", "--wait", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "COMPLETED"


# ---- end to end: a real server, the CLI as a subprocess ------------------------------------------


class Cli:
    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BACKFILL_")}
        self.env["COLUMNS"] = "200"
        probe = subprocess.run(
            [sys.executable, "-m", "backfill", "create", "--help"], cwd=cwd, env=self.env, capture_output=True
        )
        if probe.returncode == 0:
            self.prefix = [sys.executable, "-m", "backfill"]
        else:  # cli/main.py does not call register() yet: wire it in a wrapper
            wrapper = cwd / "backfill_cli.py"
            wrapper.write_text(
                "from backfill.cli.backfills_cmd import register\n"
                "from backfill.cli.main import app, main\n"
                "register(app)\n"
                "main()\n"
            )
            self.prefix = [sys.executable, str(wrapper)]

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.many(list(args))[0]

    def many(self, *commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
        """Run independent commands at once (each start pays the CLI's import time)."""
        procs = [
            (cmd, subprocess.Popen([*self.prefix, *cmd], cwd=self.cwd, env=self.env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE))
            for cmd in commands
        ]  # fmt: skip
        results = []
        for cmd, proc in procs:
            out, err = proc.communicate(timeout=60)
            assert "Traceback" not in err, err
            results.append(subprocess.CompletedProcess(cmd, proc.returncode, out, err))
        return results

    def json(self, *args: str) -> Any:
        return self.jsons(list(args))[0]

    def jsons(self, *commands: list[str]) -> list[Any]:
        results = self.many(*[[*cmd, "--json"] for cmd in commands])
        for result in results:
            assert result.returncode == 0, result.stderr
        return [json.loads(r.stdout) for r in results]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Path]:
    port = free_port()
    cmd = [
        sys.executable, "-m", "backfill", "serve", "--project", str(REPO / "examples" / "shop"),
        "--port", str(port), "--workers", "2",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKFILL_")}
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_for(lambda: healthy(port), timeout=60, interval=0.2)
        wait_for(lambda: (tmp_path / ".backfill" / "credentials.json").exists(), timeout=10, interval=0.1)
        yield tmp_path
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


@pytest.mark.slow
def test_cli_against_a_real_server(server: Path) -> None:
    cli = Cli(server)

    # create --wait: a live progress bar, then the completed backfill
    result = cli("create", "daily_sales", "--start", "2024-01-01", "--end", "2024-01-05", "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "COMPLETED" in result.stdout and "5/5" in result.stdout

    everything, unfinished = cli.jsons(["list", "--all"], ["list"])
    assert len(everything) == 1
    done_id = str(everything[0]["transfer_backfill_id"])
    assert unfinished == []  # unfinished ones by default

    dry, preview, bad, missing = cli.many(
        ["create", "daily_sales", "--start", "2024-02-01", "--end", "2024-02-04", "--dry-run"],
        ["create", "daily_sales", "--start", "2024-02-01", "--end", "2024-02-04", "--dry-run", "--json"],
        ["create", "daily_sales", "--start", "2024-13-01", "--end", "2024-01-05"],
        ["show", "999999"],
    )
    # dry run: the intervals, nothing saved
    assert dry.returncode == 0, dry.stderr
    assert "4 would run" in dry.stdout
    assert all(f"2024-02-0{d}" in dry.stdout for d in range(1, 5))
    assert preview.returncode == 0, preview.stderr
    assert json.loads(preview.stdout)["transfer_runs_total"] == 4 and len(json.loads(preview.stdout)["intervals"]) == 4
    # errors: one line with the server's message and code, in the words of the CLI's flags
    assert bad.returncode != 0
    assert one_error_line(bad.stderr).startswith("error: --start: '2024-13-01' is not a valid date")
    assert missing.returncode != 0 and "NOT_FOUND" in one_error_line(missing.stderr)

    shown, text, runs_json, two_runs, cancel_done, after_dry_run = cli.many(
        ["show", done_id, "--json"],
        ["show", done_id],
        ["runs", done_id, "--json"],
        ["runs", done_id, "--limit", "2"],
        ["cancel", done_id],
        ["list", "--all", "--json"],
    )
    shown_data = json.loads(shown.stdout)
    assert shown_data["status"] == "COMPLETED"
    assert shown_data["transfer_runs_total"] == 5 and shown_data["transfer_runs_completed"] == 5
    assert text.returncode == 0 and "COMPLETED" in text.stdout and "daily_sales" in text.stdout
    runs = json.loads(runs_json.stdout)
    assert sorted(r["data_date"] for r in runs) == [f"2024-01-0{d}" for d in range(1, 6)]
    assert {r["status"] for r in runs} == {"COMPLETED"}
    assert two_runs.returncode == 0 and two_runs.stdout.count("COMPLETED") == 2
    assert cancel_done.returncode != 0
    line = one_error_line(cancel_done.stderr)
    assert "final status" in line and "UNPROCESSABLE_ENTITY" in line
    assert len(json.loads(after_dry_run.stdout)) == 1

    run_id = str(next(r["id"] for r in runs if r["data_date"] == "2024-01-03"))
    logs, follow, logs_json = cli.many(["logs", run_id], ["logs", run_id, "--follow"], ["logs", run_id, "--json"])
    assert logs.returncode == 0 and "daily_sales 2024-01-03 done" in logs.stdout
    assert follow.returncode == 0 and "daily_sales 2024-01-03 done" in follow.stdout  # ended: returns at once
    assert json.loads(logs_json.stdout)["complete"] is True

    # a failing backfill (missing input, no retries): --wait exits non-zero with the report
    failing = cli(
        "create", "daily_sales", "--start", "2024-01-10", "--end", "2024-01-12",
        "--var", "orders_file=missing.csv", "--retries", "0", "--name", "broken input", "--wait",
    )  # fmt: skip
    assert failing.returncode == 1
    assert "FAILED" in failing.stdout and "missing.csv" in failing.stdout
    assert failing.stderr.strip().splitlines()[-1].startswith("error: backfill ")
    [listed] = cli.json("list")
    assert listed["name"] == "broken input" and listed["status"] == "FAILED"
    failed_id = listed["transfer_backfill_id"]
    assert listed["variables"] == {"orders_file": "missing.csv"}

    # pause, retry while paused (nothing starts), resume: the intervals run again
    paused, issues_before = cli.jsons(["pause", str(failed_id)], ["runs", str(failed_id), "--issues-only"])
    assert {r["status"] for r in issues_before} == {"FAILED"} and len(issues_before) == 3
    assert paused["paused"] is True and paused["status"] == "FAILED"
    retried = cli.json("retry", str(failed_id))
    assert retried["status"] == "SCHEDULED" and retried["paused"] is True
    issues, queued = cli.jsons(
        ["runs", str(failed_id), "--issues-only"], ["runs", str(failed_id), "--status", "QUEUED"]
    )
    assert issues == [] and len(queued) == 3
    resumed = cli("resume", str(failed_id))
    assert resumed.returncode == 0 and "resumed" in resumed.stdout
    creds = json.loads((server / ".backfill" / "credentials.json").read_text())
    with BackfillClient(creds["url"], creds["token"], creds["team_id"]) as client:
        final = client.wait(failed_id, poll=0.2, timeout=30)
    assert final["status"] == "FAILED" and final["paused"] is False
    retried_runs, cancelled = cli.jsons(["runs", str(failed_id)], ["cancel", str(failed_id)])
    assert {(r["status"], r["attempt"]) for r in retried_runs} == {("FAILED", 2)}
    # cancel a FAILED backfill: allowed, and it stays readable
    assert cancelled["status"] == "CANCELLED" and cancelled["removed_time"]
    assert cli.json("list") == []


def test_logs_of_a_failed_attempt_print_a_header_and_the_error(app: typer.Typer, mocked: list[dict[str, Any]]) -> None:
    mocked.append(
        {
            "transfer_run_id": 215,
            "content": "--- block extract (python) ---\nreading orders\n",
            "offset": 0,
            "next_offset": 46,
            "complete": True,
            "attempt": 2,
            "attempts": 2,
            "status": "FAILED",
            "pipeline_version": "0123456789abcdef",
            "error": "block 'extract' failed: FileNotFoundError: missing.csv\nTraceback (most recent call last):",
            "run_final": True,
        }
    )
    result = CliRunner().invoke(app, ["logs", "215"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "=== run 215 · attempt 2 of 2 · FAILED · pipeline version 0123456789abcdef ==="
    assert lines[1:3] == ["--- block extract (python) ---", "reading orders"]
    assert lines[3] == "--- error ---"
    assert "FileNotFoundError: missing.csv" in lines[4] and lines[5] == "Traceback (most recent call last):"
