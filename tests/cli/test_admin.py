"""``backfill admin`` and ``backfill migrate`` write the database directly."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from backfill.cli.main import app
from backfill.domain.model import Role
from backfill.store import auth
from backfill.store.db import Database
from backfill.store.migrate import upgrade

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_admin_commands_with_json(db_url: str) -> None:
    upgrade(Database(db_url))
    code, out = invoke("admin", "create-team", "--name", "Analytics", "--db", db_url, "--json")
    assert code == 0, out
    team = json.loads(out)["id"]
    code, out = invoke(
        "admin", "create-user", "--email", "Ana@Example.com", "--team", str(team), "--role", "editor",
        "--password", "s3cret-pass", "--db", db_url, "--json",
    )  # fmt: skip
    assert code == 0, out
    user = json.loads(out)
    assert user["email"] == "ana@example.com"
    code, out = invoke(
        "admin", "create-token", "--user", str(user["id"]), "--expires-in", "60", "--db", db_url, "--json"
    )
    assert code == 0, out
    token = json.loads(out)
    code, out = invoke("admin", "create-api-key", "--team", str(team), "--name", "ci", "--db", db_url, "--json")
    assert code == 0, out
    key = json.loads(out)
    db = Database(db_url)
    with db.read() as conn:
        info = auth.lookup_token(conn, token["token"])
        assert info is not None and info.user_id == user["id"]
        assert info.scopes == {"dwh_transfers_read", "dwh_transfers_write"}
        assert info.expires_at is not None
        assert auth.lookup_api_key(conn, key["key"]) == team
        assert auth.role_in_team(conn, user["id"], team) is not None
        assert auth.verify_password(conn, "ana@example.com", "s3cret-pass") is not None
    # an existing user gets a new membership, not a second account
    code, out = invoke("admin", "create-team", "--name", "Other", "--db", db_url, "--json")
    other = json.loads(out)["id"]
    code, out = invoke(
        "admin", "create-user", "--email", "ana@example.com", "--team", str(other), "--role", "viewer",
        "--db", db_url, "--json",
    )  # fmt: skip
    assert code == 0 and json.loads(out)["id"] == user["id"]


def test_admin_errors_are_one_line_and_non_zero(db_url: str) -> None:
    upgrade(Database(db_url))
    code, out = invoke("admin", "create-user", "--email", "x@example.com", "--team", "999", "--db", db_url)
    assert code != 0
    assert "team 999 not found" in out
    assert "Traceback" not in out
    code, out = invoke("admin", "create-token", "--user", "999", "--db", db_url)
    assert code != 0 and "user 999 not found" in out
    code, out = invoke("admin", "create-user", "--email", "bad", "--team", "1", "--role", "boss", "--db", db_url)
    assert code != 0  # unknown role rejected by the option parser


def test_migrate_command(db_url: str) -> None:
    code, out = invoke("migrate", "--db", db_url)
    assert code == 0, out
    assert "up to date" in out


def test_revoke_token_and_api_key(db_url: str) -> None:
    db = Database(db_url)
    upgrade(db)
    with db.write() as conn:
        team = auth.create_team(conn, "Analytics")
        user = auth.create_user(conn, "ana@example.com", team_id=team, role=Role.EDITOR)
        token = auth.create_token(conn, user)
        other = auth.create_token(conn, user)
        key = auth.create_api_key(conn, team)
    code, out = invoke("admin", "revoke-token", "--id", str(token.id), "--db", db_url, "--json")
    assert code == 0, out
    assert json.loads(out) == {"id": token.id, "revoked": True}
    code, out = invoke("admin", "revoke-api-key", "--id", str(key.id), "--db", db_url)
    assert code == 0, out
    assert f"API key {key.id} revoked" in out
    with db.read() as conn:
        assert auth.lookup_token(conn, token.secret) is None
        assert auth.lookup_token(conn, other.secret) is not None
        assert auth.lookup_api_key(conn, key.secret) is None
    # again: still revoked, still fine; an unknown id is a clear error, not a traceback
    assert invoke("admin", "revoke-token", "--id", str(token.id), "--db", db_url)[0] == 0
    code, out = invoke("admin", "revoke-token", "--id", "999", "--db", db_url)
    assert code == 1 and "token 999 not found" in out and "Traceback" not in out
    code, out = invoke("admin", "revoke-api-key", "--id", "999", "--db", db_url)
    assert code == 1 and "API key 999 not found" in out
