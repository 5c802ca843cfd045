"""Enums and value objects shared by every layer."""

from __future__ import annotations

from enum import StrEnum


class IntervalType(StrEnum):
    SECOND = "second"
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"
    CUSTOM = "custom"


CALENDAR_INTERVAL_TYPES = frozenset({IntervalType.DAY, IntervalType.WEEK, IntervalType.MONTH, IntervalType.YEAR})


def is_calendar(interval_type: str, cron: str | None = None) -> bool:
    """Day-or-longer intervals and cron series step in wall-clock time; their data dates
    are shown as dates, the others as instants (docs/api.md)."""
    return interval_type in CALENDAR_INTERVAL_TYPES or bool(cron)


class BackfillStatus(StrEnum):
    """Canonical backfill states (docs/api.md)."""

    CREATED = "created"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_BACKFILL_STATUSES


# The named groups of backfill statuses: every layer (and the Python client) uses these.
#: can no longer change (docs/api.md): completed, cancelled.
FINAL_BACKFILL_STATUSES = frozenset({BackfillStatus.COMPLETED, BackfillStatus.CANCELLED})
#: not final (the default of the team API's list): created, scheduled, running, failed.
UNFINISHED_BACKFILL_STATUSES = tuple(s for s in BackfillStatus if s not in FINAL_BACKFILL_STATUSES)
#: started and not final: an overlapping backfill is refused while one of these exists (docs/api.md "Overlap").
OVERLAP_BLOCKING_STATUSES = (BackfillStatus.SCHEDULED, BackfillStatus.RUNNING, BackfillStatus.FAILED)
#: workers may claim runs (unless paused): scheduled, running.
ACTIVE_BACKFILL_STATUSES = (BackfillStatus.SCHEDULED, BackfillStatus.RUNNING)
#: nothing runs and nothing will unless a user acts: completed, failed, cancelled (``wait`` ends here).
ENDED_BACKFILL_STATUSES = frozenset({BackfillStatus.COMPLETED, BackfillStatus.FAILED, BackfillStatus.CANCELLED})


class RunStatus(StrEnum):
    """Interval run states. A run row exists once it is materialized, as ``queued``."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_RUN_STATUSES


#: a run in one of these has ended and never changes again (unless a retry re-queues it).
FINAL_RUN_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})
#: what a retry re-queues.
RETRYABLE_RUN_STATUSES = (RunStatus.FAILED, RunStatus.CANCELLED)


class RunOrder(StrEnum):
    NEWEST_FIRST = "newest_first"
    OLDEST_FIRST = "oldest_first"


class Reprocess(StrEnum):
    ALL = "all"
    FAILED = "failed"
    MISSING = "missing"


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    EDITOR = "editor"
    VIEWER = "viewer"


class Permission(StrEnum):
    VIEW = "dwh.transfer.view"
    EDIT = "dwh.transfer.edit"
    MANAGE = "team.manage"


class Scope(StrEnum):
    READ = "dwh_transfers_read"
    WRITE = "dwh_transfers_write"
    ADMIN = "admin"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.VIEW}),
    Role.EDITOR: frozenset({Permission.VIEW, Permission.EDIT}),
    Role.ADMIN: frozenset({Permission.VIEW, Permission.EDIT, Permission.MANAGE}),
    Role.OWNER: frozenset({Permission.VIEW, Permission.EDIT, Permission.MANAGE}),
}


class BlockType(StrEnum):
    PYTHON = "python"
    SQL = "sql"
    SHELL = "shell"
