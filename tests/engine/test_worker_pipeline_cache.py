"""The worker's cache of pipeline definitions and re-syncs of the project."""

from __future__ import annotations

from tests.factories import add_pipeline, python_pipeline

from backfill.engine.worker import Worker
from backfill.services.actor import Actor
from backfill.store.db import Database

OLD = "def run(context):\n    raise RuntimeError('old')\n"
NEW = "def run(context):\n    return {'rows': 1}\n"


def source(worker: Worker, pipeline_id: int) -> str:
    return worker._definition(pipeline_id).blocks[0].source


def test_a_definition_read_during_a_resync_is_not_kept(db: Database, team: Actor) -> None:
    pipeline_id = add_pipeline(db, team, python_pipeline("cached", source=OLD))
    worker = Worker(db)
    assert source(worker, pipeline_id) == OLD  # cached from now on
    add_pipeline(db, team, python_pipeline("cached", source=NEW))
    assert source(worker, pipeline_id) == OLD  # the cache holds between re-syncs

    # A re-sync: a run prepared while it is under way (before its commit) reads the old
    # definition, which must not be kept for the runs after the commit.
    worker.pipelines_syncing()
    add_pipeline(db, team, python_pipeline("cached", source=OLD))
    assert source(worker, pipeline_id) == OLD
    add_pipeline(db, team, python_pipeline("cached", source=NEW))  # the commit of the re-sync
    assert source(worker, pipeline_id) == NEW
    worker.forget_pipelines()
    assert source(worker, pipeline_id) == NEW
