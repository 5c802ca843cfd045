"""``backfill admin``: teams, users, tokens and API keys, written to the database directly."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from backfill.cli.common import DbOption, JsonOption, domain_errors, emit, fail, open_existing_db
from backfill.domain.model import Role, Scope
from backfill.services import admin, tokens

app = typer.Typer(help="Manage teams, users, tokens and API keys (writes the database directly).", no_args_is_help=True)


@app.command("create-team")
def create_team(
    name: Annotated[str, typer.Option("--name", help="team name")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a team."""
    with domain_errors():
        team_id = admin.create_team(open_existing_db(db), name)
    emit({"id": team_id}, as_json, f"team {team_id} created")


@app.command("create-user")
def create_user(
    email: Annotated[str, typer.Option("--email")],
    team: Annotated[int, typer.Option("--team", help="team id")],
    role: Annotated[Role, typer.Option("--role")] = Role.VIEWER,
    password: Annotated[str | None, typer.Option("--password", help="for web and /api/sessions sign-in")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add a user to a team (an existing user gets a new membership)."""
    with domain_errors():
        user_id = admin.create_user(open_existing_db(db), email, team_id=team, role=role, password=password)
    emit(
        {"id": user_id, "email": email.strip().lower()},
        as_json,
        f"user {user_id} ({email}) is {role.value} of team {team}",
    )


@app.command("create-token")
def create_token(
    user: Annotated[int, typer.Option("--user", help="user id")],
    scope: Annotated[list[Scope] | None, typer.Option("--scope", help="repeatable; default read + write")] = None,
    expires_in: Annotated[int | None, typer.Option("--expires-in", help="seconds until it expires")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a bearer token; the secret is printed once."""
    if expires_in is not None and expires_in <= 0:
        fail("--expires-in must be a positive number of seconds")
    with domain_errors():
        issued = admin.create_token(
            open_existing_db(db),
            user,
            scopes=scope,
            expires_in=timedelta(seconds=expires_in) if expires_in else None,
        )
    emit({"id": issued.id, "token": issued.secret}, as_json, issued.secret)


@app.command("create-api-key")
def create_api_key(
    team: Annotated[int, typer.Option("--team", help="team id")],
    name: Annotated[str | None, typer.Option("--name")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a pipeline-API client key (X-API-KEY); printed once."""
    with domain_errors():
        issued = admin.create_api_key(open_existing_db(db), team, name=name)
    emit({"id": issued.id, "key": issued.secret}, as_json, issued.secret)


@app.command("revoke-token")
def revoke_token(
    token_id: Annotated[int, typer.Option("--id", help="token id (GET /v1/teams/{team_id}/tokens lists them)")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a bearer token: requests with it are refused from now on."""
    with domain_errors():
        tokens.revoke_token(open_existing_db(db), token_id)
    emit({"id": token_id, "revoked": True}, as_json, f"token {token_id} revoked")


@app.command("revoke-api-key")
def revoke_api_key(
    key_id: Annotated[int, typer.Option("--id", help="API key id (printed by create-api-key --json)")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a pipeline-API client key (X-API-KEY)."""
    with domain_errors():
        tokens.revoke_api_key(open_existing_db(db), key_id)
    emit({"id": key_id, "revoked": True}, as_json, f"API key {key_id} revoked")
