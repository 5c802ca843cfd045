"""Sync a project directory into the database, keeping the last good version of a
pipeline whose files stop loading (docs/pipelines.md: changes take effect without a restart).

Every valid pipeline is inserted or updated (its ``version`` with it) and its
``load_error`` cleared; a pipeline whose ``pipeline.yaml`` or block files no longer
load keeps its stored definition — workers go on running it — and gets the reason in
``load_error``, which both HTTP dialects and the web page show. One transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from backfill.pipelines.loader import ProjectLoad, load_project
from backfill.store import pipelines as pipeline_store
from backfill.store.db import Database
from backfill.store.pipelines import SyncResult

log = logging.getLogger("backfill.pipelines")


@dataclass(frozen=True)
class SyncReport:
    loaded: ProjectLoad
    result: SyncResult
    marked: tuple[str, ...]
    """Stored pipelines newly marked with a load error (their last good version runs)."""

    @property
    def changed(self) -> bool:
        return bool(self.result.created or self.result.updated or self.marked)


def sync_project(db: Database, project_dir: Path, *, team_id: int) -> SyncReport:
    """Load the project and store what loads; report (and log) what does not."""
    loaded = load_project(project_dir)
    with db.write() as conn:
        result = pipeline_store.sync(conn, loaded.pipelines, default_team_id=team_id)
        marked = pipeline_store.record_load_errors(conn, {path: e.message for path, e in loaded.rejected.items()})
    report = SyncReport(loaded, result, marked)
    for error in loaded.errors:
        log.error("pipeline file rejected: %s", error.message)
    for uuid in marked:
        log.error("pipeline %s: its files do not load; the last good version keeps running", uuid)
    versions = {p.uuid: p.version for p in loaded.pipelines}
    for uuid in (*result.created, *result.updated):
        log.info("pipeline %s synced: version %s", uuid, versions.get(uuid))
    return report
