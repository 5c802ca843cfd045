"""backfill row version; index of completed runs by duration (the p95 of a backfill)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("backfills", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.BigInteger(), server_default=sa.text("0"), nullable=False))
    with op.batch_alter_table("interval_runs", schema=None) as batch_op:
        batch_op.create_index("ix_interval_runs_duration", ["backfill_id", "status", "duration"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("interval_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_interval_runs_duration")
    with op.batch_alter_table("backfills", schema=None) as batch_op:
        batch_op.drop_column("version")
