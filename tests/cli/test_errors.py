"""Every command of the tree, through the failures a user meets: a wrong directory, a
server that is down, a missing, empty or unreachable database, a bad flag. Each gives
one line on stderr (JSON with ``--json``), nothing on stdout, a non-zero status, never a
traceback, and never leaves an empty database file behind."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import typer
from tests.cli.test_serve import free_port

from backfill.cli.main import app, run
from backfill.store.db import Database

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = str(REPO / "examples" / "shop")

# The smallest valid command line of each command (without connection or database flags).
# A command missing here fails test_every_command_is_covered: add it.
ARGS: dict[str, list[str]] = {
    "migrate": ["migrate"],
    "serve": ["serve"],
    "worker": ["worker"],
    "admin create-team": ["admin", "create-team", "--name", "Data"],
    "admin create-user": ["admin", "create-user", "--email", "ana@example.com", "--team", "1"],
    "admin create-token": ["admin", "create-token", "--user", "1"],
    "admin create-api-key": ["admin", "create-api-key", "--team", "1"],
    "admin revoke-token": ["admin", "revoke-token", "--id", "1"],
    "admin revoke-api-key": ["admin", "revoke-api-key", "--id", "1"],
    "pipelines sync": ["pipelines", "sync", "--project", EXAMPLE],
    "pipelines list": ["pipelines", "list"],
    "pipelines validate": ["pipelines", "validate", "--project", EXAMPLE],
    "create": ["create", "daily_sales", "--start", "2024-01-01", "--end", "2024-01-02"],
    "list": ["list"],
    "show": ["show", "1"],
    "runs": ["runs", "1"],
    "logs": ["logs", "1"],
    "cancel": ["cancel", "1"],
    "retry": ["retry", "1"],
    "pause": ["pause", "1"],
    "resume": ["resume", "1"],
    "coverage": ["coverage", "daily_sales", "--start", "2024-01-01", "--end", "2024-01-31"],
    "rerun": ["rerun", "1", "--failed"],
}
# These need neither a server nor a database.
OFFLINE_COMMANDS = {"pipelines validate"}
# These create the database they are pointed at (that is their job).
CREATES_DATABASE = {"migrate", "serve"}


def command_tree() -> dict[str, set[str]]:
    """Every leaf command of ``backfill`` → the names of its options."""
    root = typer.main.get_command(app)
    found: dict[str, set[str]] = {}

    def walk(command: object, path: list[str]) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                walk(sub, [*path, name])
            return
        params = getattr(command, "params", [])
        found[" ".join(path)] = {opt for p in params for opt in getattr(p, "opts", [])}

    walk(root, [])
    return found


TREE = command_tree()
SERVER_COMMANDS = sorted(name for name, opts in TREE.items() if "--url" in opts)
DATABASE_COMMANDS = sorted(name for name, opts in TREE.items() if "--db" in opts)


@pytest.fixture(autouse=True)
def nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty working directory and no BACKFILL_* settings (a wrong directory)."""
    for name in list(os.environ):
        if name.startswith("BACKFILL_") and not name.startswith("BACKFILL_TEST_"):
            monkeypatch.delenv(name)
    work = tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield work
    root.handlers[:], root.level = handlers, level  # serve and worker configure logging


def one_error(capsys: pytest.CaptureFixture[str], argv: list[str], *, expect_code: int | None = None) -> str:
    code = run(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, err
    assert code != 0, (argv, out, err)
    if expect_code is not None:
        assert code == expect_code, (argv, err)
    assert out == "", (argv, out)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, (argv, err)
    if "--json" in argv:
        message = json.loads(lines[0])["error"]["message"]
        assert isinstance(message, str) and message
        return str(message)
    assert lines[0].startswith("error: "), lines[0]
    return lines[0].removeprefix("error: ")


def json_flag(name: str, as_json: bool) -> list[str]:
    """``--json`` when asked for and the command has it (serve and worker print logs only)."""
    return ["--json"] if as_json and "--json" in TREE[name] else []


def test_every_command_is_covered() -> None:
    assert set(TREE) == set(ARGS), "add the new command to ARGS (and see that it fails cleanly)"
    assert set(SERVER_COMMANDS) | set(DATABASE_COMMANDS) | OFFLINE_COMMANDS == set(TREE)
    assert {name for name, opts in TREE.items() if "--json" not in opts} == {"serve", "worker"}


@pytest.mark.parametrize("name", SERVER_COMMANDS)
@pytest.mark.parametrize("as_json", [False, True])
def test_no_connection_settings_in_a_wrong_directory(
    capsys: pytest.CaptureFixture[str], name: str, as_json: bool
) -> None:
    message = one_error(capsys, [*ARGS[name], *json_flag(name, as_json)])
    assert "BACKFILL_URL" in message and "credentials.json" in message


@pytest.mark.parametrize("name", SERVER_COMMANDS)
@pytest.mark.parametrize("as_json", [False, True])
def test_a_server_that_is_down(capsys: pytest.CaptureFixture[str], name: str, as_json: bool) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    argv = [*ARGS[name], "--url", url, "--token", "t", "--team", "1", *json_flag(name, as_json)]
    assert url in one_error(capsys, argv)


@pytest.mark.parametrize("name", sorted(set(DATABASE_COMMANDS) - CREATES_DATABASE))
def test_no_database_in_a_wrong_directory(capsys: pytest.CaptureFixture[str], nowhere: Path, name: str) -> None:
    message = one_error(capsys, ARGS[name])
    assert "no database at .backfill/backfill.db" in message and "--db" in message
    assert not (nowhere / ".backfill").exists()


@pytest.mark.parametrize("name", sorted(set(DATABASE_COMMANDS) - CREATES_DATABASE))
@pytest.mark.parametrize("as_json", [False, True])
def test_a_missing_database_file_is_not_created(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, as_json: bool
) -> None:
    missing = tmp_path / "absent" / "backfill.db"
    message = one_error(capsys, [*ARGS[name], "--db", f"sqlite:///{missing}", *json_flag(name, as_json)])
    assert str(missing) in message
    assert not missing.parent.exists()


@pytest.mark.parametrize("name", sorted(set(DATABASE_COMMANDS) - CREATES_DATABASE))
def test_an_empty_database(capsys: pytest.CaptureFixture[str], db_url: str, name: str) -> None:
    Database(db_url).dispose()
    if db_url.startswith("sqlite:///"):
        Path(db_url.removeprefix("sqlite:///")).touch()
    message = one_error(capsys, [*ARGS[name], "--db", db_url])
    assert "no backfill schema yet: run `backfill migrate`" in message


@pytest.mark.parametrize("name", DATABASE_COMMANDS)
def test_an_unreachable_database(capsys: pytest.CaptureFixture[str], name: str) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    message = one_error(capsys, [*ARGS[name], "--db", url])
    assert "127.0.0.1" in message


@pytest.mark.parametrize("name", sorted(TREE))
def test_an_unknown_flag_is_a_one_line_usage_error(capsys: pytest.CaptureFixture[str], name: str) -> None:
    message = one_error(capsys, [*ARGS[name], "--no-such-flag"], expect_code=2)
    assert "--no-such-flag" in message and f"backfill {name} --help" in message


@pytest.mark.parametrize("name", sorted(n for n in SERVER_COMMANDS if ARGS[n][1:2] == ["1"]))
@pytest.mark.parametrize("as_json", [False, True])
def test_a_non_numeric_id_is_one_line(capsys: pytest.CaptureFixture[str], name: str, as_json: bool) -> None:
    message = one_error(capsys, [name, "abc", *json_flag(name, as_json)], expect_code=2)
    assert "'abc'" in message or "integer" in message


def test_a_bad_setting_names_the_flag_and_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKFILL_PORT", "eighty")
    message = one_error(capsys, ["serve"])
    assert "--port" in message and "BACKFILL_PORT" in message and "'eighty'" in message


def test_serve_refuses_a_missing_project(capsys: pytest.CaptureFixture[str], nowhere: Path) -> None:
    message = one_error(capsys, ["serve", "--project", "no-such-dir"], expect_code=2)
    assert message.startswith("Invalid value for '--project': 'no-such-dir' is not a directory")
    assert not (nowhere / ".backfill").exists()


def test_a_bad_backfill_toml_is_one_line(capsys: pytest.CaptureFixture[str], nowhere: Path) -> None:
    (nowhere / "backfill.toml").write_text("port = [\n")
    assert one_error(capsys, ["pipelines", "list"]).startswith("backfill.toml: ")


def api_error(monkeypatch: pytest.MonkeyPatch, status: int, code: str, message: str) -> None:
    """The CLI's client gets this error envelope for every request."""
    from backfill.cli import backfills_cmd
    from backfill.client import BackfillClient

    def handler(_request: httpx.Request) -> httpx.Response:
        body = {"meta": {"request_id": "r-12345678"}, "error": {"code": code, "message": message}}
        return httpx.Response(status, json=body)

    def client(_url: str | None, _token: str | None, _team: int | None) -> BackfillClient:
        return BackfillClient("http://mock.test", "t", 1, transport=httpx.MockTransport(handler))

    monkeypatch.setattr(backfills_cmd, "_client", client)


def test_api_field_names_become_flags(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    api_error(monkeypatch, 422, "UNPROCESSABLE_ENTITY", "range_start: '2024-13-01' is not a valid date or date-time")
    message = one_error(capsys, ["create", "daily_sales", "--start", "2024-13-01", "--end", "2024-01-02"])
    assert message.startswith("--start: '2024-13-01' is not a valid date")
    api_error(monkeypatch, 422, "UNPROCESSABLE_ENTITY", "max_active_runs must be at least 1")
    message = one_error(capsys, [*ARGS["create"], "--max-active-runs", "0"])
    assert message.startswith("--max-active-runs must be at least 1")


def test_query_parameters_become_flags(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    api_error(monkeypatch, 400, "BAD_REQUEST", "invalid query parameter status: BOGUS; use one or more of CREATED")
    assert one_error(capsys, ["list", "--status", "bogus"]).startswith("--status: BOGUS; use one or more")


def test_json_errors_carry_the_api_code(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    api_error(monkeypatch, 404, "NOT_FOUND", "backfill 9 not found")
    assert run(["show", "9", "--json"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert json.loads(err) == {
        "error": {"message": "backfill 9 not found (NOT_FOUND, HTTP 404)", "code": "NOT_FOUND", "status": 404}
    }
