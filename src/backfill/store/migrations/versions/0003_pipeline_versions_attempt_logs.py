"""pipeline version and load error; the version and error of every attempt; index of
finish times (the recent completion rate of a backfill)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pipelines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("load_error", sa.Text(), nullable=True))
    with op.batch_alter_table("interval_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pipeline_version", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_interval_runs_ended", ["backfill_id", "ended_at"], unique=False)
    with op.batch_alter_table("run_logs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pipeline_version", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_logs", schema=None) as batch_op:
        batch_op.drop_column("error")
        batch_op.drop_column("pipeline_version")
    with op.batch_alter_table("interval_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_interval_runs_ended")
        batch_op.drop_column("pipeline_version")
    with op.batch_alter_table("pipelines", schema=None) as batch_op:
        batch_op.drop_column("load_error")
        batch_op.drop_column("version")
