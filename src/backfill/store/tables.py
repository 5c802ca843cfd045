"""Table definitions (SQLAlchemy Core). Migrations in ``migrations/`` must match these."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    literal_column,
    text,
)

from backfill.store.types import UTCDateTime, json_type

# Stable constraint names, identical on both databases, so migrations can refer to them.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# BigInteger primary keys autoincrement on PostgreSQL; SQLite only autoincrements INTEGER.
Id = BigInteger().with_variant(Integer(), "sqlite")

teams = Table(
    "teams",
    metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", String(200)),
    Column("default_team_id", Id, ForeignKey("teams.id")),
    Column("created_at", UTCDateTime(), nullable=False),
)

memberships = Table(
    "memberships",
    metadata,
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("team_id", Id, ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
    Column("role", String(20), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", Id, primary_key=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("scopes", json_type(), nullable=False),
    Column("expires_at", UTCDateTime()),
    Column("revoked_at", UTCDateTime()),
    Column("created_at", UTCDateTime(), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Id, primary_key=True),
    Column("team_id", Id, ForeignKey("teams.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200)),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("revoked_at", UTCDateTime()),
    Column("created_at", UTCDateTime(), nullable=False),
)

pipelines = Table(
    "pipelines",
    metadata,
    Column("id", Id, primary_key=True),
    Column("team_id", Id, ForeignKey("teams.id"), nullable=False),
    Column("uuid", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("timezone", String(64)),
    Column("variables", json_type(), nullable=False),
    Column("retries", Integer, nullable=False),
    Column("retry_delay_seconds", Float, nullable=False),
    Column("timeout_seconds", Float),
    # The whole definition (blocks with their source) as loaded from disk, so workers on
    # other machines can run it without the project directory.
    Column("definition", json_type(), nullable=False),
    Column("path", Text),
    # Content digest of pipeline.yaml and its block files (the definition above).
    Column("version", String(64)),
    # Why the files on disk do not load now (the definition above is the last good one).
    Column("load_error", Text),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("team_id", "uuid"),
)

backfills = Table(
    "backfills",
    metadata,
    Column("id", Id, primary_key=True),
    Column("team_id", Id, ForeignKey("teams.id"), nullable=False),
    Column("pipeline_id", Id, ForeignKey("pipelines.id"), nullable=False),
    Column("name", String(500), nullable=False),
    Column("start", UTCDateTime(), nullable=False),
    Column("end", UTCDateTime(), nullable=False),
    Column("interval_type", String(16), nullable=False),
    Column("interval_units", Integer),
    Column("cron", String(200)),
    Column("timezone", String(64), nullable=False),
    Column("block_uuids", json_type()),
    Column("variables", json_type()),
    Column("max_active_runs", Integer, nullable=False),
    Column("run_order", String(16), nullable=False),
    Column("reprocess", String(16), nullable=False),
    Column("retries", Integer, nullable=False),
    Column("retry_delay_seconds", Float, nullable=False),
    Column("timeout_seconds", Float),
    Column("status", String(16), nullable=False),
    Column("paused", Boolean, nullable=False),
    # Interval arithmetic results, fixed when the backfill starts.
    Column("range_end_exclusive", UTCDateTime(), nullable=False),
    Column("runs_total", Integer, nullable=False),
    # Counters of the interval runs by status; updated in the same transaction as the runs.
    Column("runs_created", Integer, nullable=False),
    Column("runs_completed", Integer, nullable=False),
    Column("runs_failed", Integer, nullable=False),
    Column("runs_cancelled", Integer, nullable=False),
    Column("runs_running", Integer, nullable=False),
    Column("rows_total", BigInteger, nullable=False),
    Column("duration_total", Float, nullable=False),
    # Lazy materialization: the interval_start of the last materialized interval (in run
    # order), and whether every interval has been materialized.
    Column("cursor", UTCDateTime()),
    Column("exhausted", Boolean, nullable=False),
    # Fair share: the backfill served least recently gets the next free slot.
    Column("last_claimed_at", UTCDateTime()),
    Column("idempotency_key", String(200)),
    # Webhooks of this backfill ([{url, events, secret?}], docs/api.md), besides the pipeline's.
    Column("notify", json_type()),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_user_id", Id, ForeignKey("users.id")),
    Column("started_at", UTCDateTime()),
    Column("completed_at", UTCDateTime()),
    Column("failed_at", UTCDateTime()),
    Column("removed_at", UTCDateTime()),
    Column("removed_user_id", Id, ForeignKey("users.id")),
    Column("updated_at", UTCDateTime(), nullable=False),
    # Bumped by every UPDATE of the row (whatever sets it, whatever the clock says): what
    # readers key their caches of derived values on (error report, p95, rendered JSON).
    Column(
        "version",
        BigInteger,
        nullable=False,
        default=0,
        server_default=text("0"),
        onupdate=literal_column("version + 1"),
    ),
    UniqueConstraint("team_id", "created_user_id", "idempotency_key"),
    Index("ix_backfills_status_claim", "status", "paused", "last_claimed_at"),
    Index("ix_backfills_team_created", "team_id", "id"),
    Index("ix_backfills_pipeline_status", "pipeline_id", "status"),
)

interval_runs = Table(
    "interval_runs",
    metadata,
    Column("id", Id, primary_key=True),
    Column("backfill_id", Id, ForeignKey("backfills.id", ondelete="CASCADE"), nullable=False),
    Column("pipeline_id", Id, ForeignKey("pipelines.id"), nullable=False),
    Column("interval_start", UTCDateTime(), nullable=False),
    Column("interval_end", UTCDateTime(), nullable=False),
    Column("status", String(16), nullable=False),
    # attempt: total attempts ever made (monotonic, fences worker writes);
    # tries: attempts in the current round (reset by a manual retry), compared with retries.
    Column("attempt", Integer, nullable=False),
    Column("tries", Integer, nullable=False),
    Column("not_before", UTCDateTime()),
    Column("lease_owner", String(200)),
    Column("lease_expires_at", UTCDateTime()),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("queued_at", UTCDateTime(), nullable=False),
    Column("started_at", UTCDateTime()),
    Column("ended_at", UTCDateTime()),
    Column("duration", Float),
    Column("rows", BigInteger),
    Column("error", Text),
    Column("block_results", json_type()),
    # The pipeline version the latest attempt ran (each attempt's is in run_logs).
    Column("pipeline_version", String(64)),
    UniqueConstraint("backfill_id", "interval_start"),
    Index("ix_interval_runs_claim", "backfill_id", "status", "interval_start"),
    Index("ix_interval_runs_lease", "status", "lease_expires_at"),
    Index("ix_interval_runs_pipeline_interval", "pipeline_id", "interval_start", "status"),
    # The p95 duration of a backfill reads its completed runs in duration order.
    Index("ix_interval_runs_duration", "backfill_id", "status", "duration"),
    # Coverage of a pipeline (latest run of each interval over every backfill) reads this
    # index only, in interval order.
    Index(
        "ix_interval_runs_coverage",
        "pipeline_id",
        "interval_start",
        "queued_at",
        "id",
        "status",
        "backfill_id",
    ),
    # The recent completion rate of a backfill (its ETA) reads its latest finishes.
    Index("ix_interval_runs_ended", "backfill_id", "ended_at"),
)

run_logs = Table(
    "run_logs",
    metadata,
    Column("id", Id, primary_key=True),
    Column("run_id", Id, ForeignKey("interval_runs.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("content", Text, nullable=False),
    # What the attempt ran and, if it failed, its error (with the traceback).
    Column("pipeline_version", String(64)),
    Column("error", Text),
    Column("created_at", UTCDateTime(), nullable=False),
    # One row per attempt: rewritten while the attempt runs (for tailing), final at its end.
    UniqueConstraint("run_id", "attempt"),
    Index("ix_run_logs_run", "run_id", "id"),
)

# The notification outbox (docs/api.md): one row per (webhook, event of a backfill), written in
# the same transaction as the status change, delivered by the notifier loop.
notifications = Table(
    "notifications",
    metadata,
    Column("id", Id, primary_key=True),
    Column("team_id", Id, ForeignKey("teams.id"), nullable=False),
    Column("backfill_id", Id, ForeignKey("backfills.id", ondelete="CASCADE"), nullable=False),
    Column("event", String(16), nullable=False),
    Column("url", Text, nullable=False),
    Column("secret", Text),
    # The exact body POSTed, fixed when the event happens (the signature covers it).
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime()),
    Column("lease_expires_at", UTCDateTime()),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("delivered_at", UTCDateTime()),
    Index("ix_notifications_due", "status", "next_attempt_at"),
    Index("ix_notifications_backfill", "backfill_id", "id"),
)

notification_attempts = Table(
    "notification_attempts",
    metadata,
    Column("id", Id, primary_key=True),
    Column("notification_id", Id, ForeignKey("notifications.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("duration", Float, nullable=False),
    Column("status_code", Integer),
    Column("error", Text),
    UniqueConstraint("notification_id", "attempt"),
)
