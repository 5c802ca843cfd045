"""Migrations produce exactly the declared tables, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from backfill.store.db import Database
from backfill.store.migrate import current_revision, upgrade
from backfill.store.tables import metadata


def test_migrations_match_declared_tables(db_url: str) -> None:
    db = Database(db_url)
    try:
        upgrade(db)
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
        assert diff == []
        assert current_revision(db) is not None
        upgrade(db)  # idempotent
    finally:
        db.dispose()


def test_sqlite_connection_settings(tmp_path: object) -> None:
    db = Database(f"sqlite:///{tmp_path}/x.db")
    with db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    db.dispose()
