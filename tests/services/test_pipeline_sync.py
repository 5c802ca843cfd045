"""Sync keeps the last good version of a pipeline whose files stop loading, and says why
(``load_error``); a fix clears it. The version is a digest of the pipeline's files."""

from __future__ import annotations

from pathlib import Path

from backfill.services import pipeline_sync
from backfill.services.actor import Actor
from backfill.store import pipelines as pipeline_store
from backfill.store.db import Database

YAML = "uuid: p\nblocks:\n  - {uuid: main, type: python, file: main.py}\n"
GOOD = "def run(context):\n    return {'rows': 1}\n"


def stored(db: Database, team: Actor) -> dict[str, object]:
    with db.read() as conn:
        return dict(pipeline_store.get_in_team(conn, team.team_id, uuid="p"))


def test_a_broken_edit_keeps_the_last_good_version(db: Database, team: Actor, tmp_path: Path) -> None:
    directory = tmp_path / "pipelines" / "p"
    directory.mkdir(parents=True)
    (directory / "pipeline.yaml").write_text(YAML)
    block = directory / "main.py"
    block.write_text(GOOD)
    first = pipeline_sync.sync_project(db, tmp_path, team_id=team.team_id)
    assert first.result.created == ("p",)
    row = stored(db, team)
    v1 = row["version"]
    assert isinstance(v1, str) and len(v1) == 16 and row["load_error"] is None
    assert pipeline_sync.sync_project(db, tmp_path, team_id=team.team_id).changed is False  # same files

    block.write_text("def run(context):\n    return (\n")  # a syntax error
    broken = pipeline_sync.sync_project(db, tmp_path, team_id=team.team_id)
    assert broken.marked == ("p",)
    row = stored(db, team)
    assert row["version"] == v1 and row["definition"]["blocks"][0]["source"] == GOOD  # type: ignore[index]
    assert str(block) in str(row["load_error"]) and "syntax error" in str(row["load_error"])

    block.write_text(GOOD.replace("1", "2"))
    fixed = pipeline_sync.sync_project(db, tmp_path, team_id=team.team_id)
    assert fixed.result.updated == ("p",)
    row = stored(db, team)
    assert row["load_error"] is None and row["version"] not in (None, v1)
    assert "'rows': 2" in row["definition"]["blocks"][0]["source"]  # type: ignore[index]
