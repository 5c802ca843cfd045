"""Isolated test databases: a SQLite file, or a fresh PostgreSQL schema when
``BACKFILL_TEST_DATABASE_URL`` is set (dropped afterwards)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from backfill.store.db import normalize_url

PG_URL = os.environ.get("BACKFILL_TEST_DATABASE_URL")


@contextmanager
def isolated_db_url(directory: Path, prefix: str = "t") -> Iterator[str]:
    """The URL of an empty database nobody else uses (tables not created)."""
    if not PG_URL:
        yield f"sqlite:///{directory / 'test.db'}"
        return
    schema = f"{prefix}_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(normalize_url(PG_URL))
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()
