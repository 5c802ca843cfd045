"""Pipelines synced from a project directory into the database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.factories import python_pipeline
from typer.testing import CliRunner

from backfill.cli.main import app
from backfill.domain.errors import NotFound
from backfill.services import pipelines
from backfill.services.actor import Actor
from backfill.store import auth
from backfill.store import pipelines as pipeline_store
from backfill.store.db import Database

REPO = Path(__file__).resolve().parents[2]


def test_sync_creates_updates_and_keeps(db: Database, team: Actor) -> None:
    v1 = python_pipeline("alpha")
    with db.write() as conn:
        first = pipeline_store.sync(conn, [v1, python_pipeline("beta")], default_team_id=team.team_id)
    assert (first.created, first.updated) == (("alpha", "beta"), ())
    v2 = python_pipeline("alpha", source="def run(context):\n    return {'rows': 2}\n")
    with db.write() as conn:
        again = pipeline_store.sync(conn, [v2], default_team_id=team.team_id)
        same = pipeline_store.sync(conn, [v2], default_team_id=team.team_id)
        rows = pipeline_store.list_for_team(conn, team.team_id)
        stored = pipeline_store.definition(pipeline_store.get_in_team(conn, team.team_id, uuid="alpha"))
    assert (again.created, again.updated) == ((), ("alpha",))
    assert (same.created, same.updated) == ((), ())
    assert [r["uuid"] for r in rows] == ["alpha", "beta"]  # beta is kept: its backfills refer to it
    assert stored.blocks[0].source == v2.blocks[0].source
    assert stored == v2.__class__(**{**v2.__dict__, "team_id": team.team_id})


def test_pipeline_reads_see_one_team_only(db: Database, team: Actor) -> None:
    with db.write() as conn:
        other_team = auth.create_team(conn, "Other team")
        pipeline_store.sync(conn, [python_pipeline("alpha"), python_pipeline("beta")], default_team_id=team.team_id)
        pipeline_store.sync(conn, [python_pipeline("gamma")], default_team_id=other_team)
    page = pipelines.list_pipelines(db, team, limit=1)
    assert ([r["uuid"] for r in page.items], page.total) == (["alpha"], 2)
    with db.read() as conn:
        assert pipeline_store.count_for_team(conn, other_team) == 1
    assert pipelines.get_pipeline(db, team, uuid="beta")["uuid"] == "beta"
    with pytest.raises(NotFound):
        pipelines.get_pipeline(db, team, uuid="gamma")


@pytest.mark.usefixtures("team")
def test_cli_sync_reports_rejected_files(db_url: str, tmp_path: Path) -> None:
    project = tmp_path / "project"
    good = project / "pipelines" / "good"
    bad = project / "pipelines" / "bad"
    good.mkdir(parents=True)
    bad.mkdir(parents=True)
    (good / "pipeline.yaml").write_text("uuid: good\nblocks:\n  - uuid: a\n    type: shell\n    command: echo hi\n")
    (bad / "pipeline.yaml").write_text("uuid: bad\nblocks: [oops\n")
    result = CliRunner().invoke(app, ["pipelines", "sync", "--project", str(project), "--db", db_url, "--json"])
    assert result.exit_code == 1
    out = json.loads(result.output)
    assert out["created"] == ["good"]
    assert len(out["errors"]) == 1
    assert out["errors"][0]["path"].endswith("bad/pipeline.yaml")
    listed = CliRunner().invoke(app, ["pipelines", "list", "--db", db_url, "--json"])
    assert [p["uuid"] for p in json.loads(listed.output)["pipelines"]] == ["good"]


@pytest.mark.usefixtures("team")
def test_cli_sync_example_project(db_url: str) -> None:
    result = CliRunner().invoke(
        app, ["pipelines", "sync", "--project", str(REPO / "examples" / "shop"), "--db", db_url, "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["created"] == ["daily_sales"]
