"""The one place that decides every state change of backfills and interval runs.

Services and the engine ask this module what a transition leads to, then persist the
answer; nothing else compares or assigns statuses on its own. Every refusal is an
``InvalidTransition`` that names the transitions allowed from the current state.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from backfill.domain.errors import InvalidTransition
from backfill.domain.model import ACTIVE_BACKFILL_STATUSES, UNFINISHED_BACKFILL_STATUSES, BackfillStatus, RunStatus
from backfill.domain.model import RETRYABLE_RUN_STATUSES as RETRYABLE_RUN_STATUSES

B = BackfillStatus

# What a user may ask for, per current status (docs/api.md "Transitions").
_ALLOWED: dict[BackfillStatus, tuple[BackfillStatus, ...]] = {
    B.CREATED: (B.SCHEDULED, B.CANCELLED),
    B.SCHEDULED: (B.CANCELLED,),
    B.RUNNING: (B.CANCELLED,),
    B.FAILED: (B.SCHEDULED, B.CANCELLED),
    B.COMPLETED: (),
    B.CANCELLED: (),
}

MAX_RETRY_DELAY_SECONDS = 3600.0


class Action(StrEnum):
    START = "start"
    RETRY = "retry"
    CANCEL = "cancel"


class UserAction(StrEnum):
    """What a user may do to a backfill; each backfill object lists those allowed now."""

    START = "start"
    RETRY = "retry"
    RERUN = "rerun"  # re-run chosen intervals (runs:rerun)
    CANCEL = "cancel"
    PAUSE = "pause"
    RESUME = "resume"
    EDIT = "edit"  # range, interval, variables, block selection (before the start)
    DELETE = "delete"


@dataclass(frozen=True)
class RunCounts:
    """Interval runs of one backfill by status (materialized runs only)."""

    created: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    running: int = 0

    @property
    def queued(self) -> int:
        return self.created - self.completed - self.failed - self.cancelled - self.running


def allowed_targets(current: BackfillStatus) -> tuple[BackfillStatus, ...]:
    return _ALLOWED[current]


def _refuse(current: BackfillStatus, requested: str) -> InvalidTransition:
    allowed = tuple(s.value for s in allowed_targets(current))
    if allowed:
        template = "cannot change status from {current} to {requested}; allowed: {allowed}"
    else:
        template = "the backfill is {current}, a final status; it can no longer change"
    return InvalidTransition(template, current=current.value, requested=requested, allowed=allowed)


def request(current: BackfillStatus, requested: BackfillStatus) -> Action:
    """Map a requested status to the action that reaches it, or refuse."""
    if requested not in allowed_targets(current):
        raise _refuse(current, requested.value)
    if requested is B.CANCELLED:
        return Action.CANCEL
    return Action.START if current is B.CREATED else Action.RETRY


def start(current: BackfillStatus) -> BackfillStatus:
    if current is not B.CREATED:
        raise _refuse(current, B.SCHEDULED.value)
    return B.SCHEDULED


def retry(current: BackfillStatus) -> BackfillStatus:
    """failed → scheduled; the caller re-queues only the failed and cancelled runs."""
    if current is not B.FAILED:
        raise _refuse(current, B.SCHEDULED.value)
    return B.SCHEDULED


def cancel(current: BackfillStatus) -> BackfillStatus:
    if B.CANCELLED not in allowed_targets(current):
        raise _refuse(current, B.CANCELLED.value)
    return B.CANCELLED


def check_pause(current: BackfillStatus) -> None:
    """Pause and resume apply to backfills that can still run something."""
    if current.is_final:
        raise InvalidTransition(
            "the backfill is {current}, a final status; it cannot be paused or resumed", current=current.value
        )


def check_settings_editable(current: BackfillStatus, fields: tuple[str, ...]) -> None:
    """Range, interval, variables and block selection change only before the start."""
    if current is not B.CREATED:
        raise InvalidTransition(
            "{fields} can only be changed before the backfill starts (it is {current}); create a new backfill instead",
            current=current.value,
            fields=fields,
        )


def check_live_setting(current: BackfillStatus, fields: tuple[str, ...]) -> None:
    """Name aside, settings (max_active_runs) change until the backfill is final."""
    if current.is_final:
        raise InvalidTransition(
            "the backfill is {current}; {fields} can no longer change", current=current.value, fields=fields
        )


def check_deletable(current: BackfillStatus) -> None:
    if current in ACTIVE_BACKFILL_STATUSES:
        raise InvalidTransition(
            "the backfill is {current}; cancel it before deleting it",
            current=current.value,
            allowed=(B.CANCELLED.value,),
        )


def settle(current: BackfillStatus, counts: RunCounts, *, exhausted: bool) -> BackfillStatus:
    """The backfill status implied by its runs, after any run changed.

    ``exhausted`` means every interval has been materialized as a run.
    """
    if current not in ACTIVE_BACKFILL_STATUSES:
        return current
    if exhausted and counts.queued == 0 and counts.running == 0:
        return B.FAILED if counts.failed or counts.cancelled else B.COMPLETED
    if current is B.SCHEDULED and counts.running:
        return B.RUNNING  # a run has begun (also after a retry: scheduled until one starts)
    return current


def allowed_actions(current: BackfillStatus, *, paused: bool) -> tuple[UserAction, ...]:
    """The user actions this module accepts now, in a fixed order (derived from the rules
    above, so an adapter or a client never needs its own copy of the table)."""
    targets = allowed_targets(current)
    actions: list[UserAction] = []
    if B.SCHEDULED in targets:
        actions.append(UserAction.START if current is B.CREATED else UserAction.RETRY)
    if current in RERUNNABLE_BACKFILL_STATUSES:
        actions.append(UserAction.RERUN)
    if B.CANCELLED in targets:
        actions.append(UserAction.CANCEL)
    if not current.is_final:
        actions.append(UserAction.RESUME if paused else UserAction.PAUSE)
    if current is B.CREATED:
        actions.append(UserAction.EDIT)
    if current not in ACTIVE_BACKFILL_STATUSES:
        actions.append(UserAction.DELETE)
    return tuple(actions)


def can_claim(status: BackfillStatus, *, paused: bool) -> bool:
    """Whether a worker may start a run of a backfill in this state."""
    return status in ACTIVE_BACKFILL_STATUSES and not paused


# The statuses whose runs a worker may claim (the claim query filters on these).
CLAIMABLE_BACKFILL_STATUSES = tuple(s for s in BackfillStatus if can_claim(s, paused=False))


# ---- interval runs -------------------------------------------------------------------


def run_claim(current: RunStatus) -> RunStatus:
    if current is not RunStatus.QUEUED:
        raise InvalidTransition("run is {current}; only queued runs can start", current=current.value)
    return RunStatus.RUNNING


def run_succeed(current: RunStatus) -> RunStatus:
    """A running attempt that succeeded completes its run."""
    if current is not RunStatus.RUNNING:
        raise InvalidTransition(f"run is {current.value}; only running runs complete")
    return RunStatus.COMPLETED


def run_after_attempt(*, ok: bool, tries: int, retries: int) -> RunStatus:
    """Outcome of an attempt: completed, re-queued while retries remain, else failed."""
    if ok:
        return run_succeed(RunStatus.RUNNING)
    return RunStatus.QUEUED if tries <= retries else RunStatus.FAILED


def run_cancel(current: RunStatus) -> RunStatus:
    """Cancelling a backfill cancels its runs that have not started."""
    if current is not RunStatus.QUEUED:
        raise InvalidTransition("run is {current}; only queued runs are cancelled", current=current.value)
    return RunStatus.CANCELLED


def run_retry(current: RunStatus) -> RunStatus:
    """A manual retry re-queues failed and cancelled runs, nothing else."""
    if current not in RETRYABLE_RUN_STATUSES:
        raise InvalidTransition("run is {current}; only failed or cancelled runs are retried", current=current.value)
    return RunStatus.QUEUED


# ---- re-running chosen intervals (runs:rerun) ------------------------------------------

#: Runs a re-run puts back in the queue (as new attempts of the same run). A queued run
#: is already waiting and a running one is left to finish.
RERUNNABLE_RUN_STATUSES = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)
#: Backfills whose intervals can be re-run: every one that is not final.
RERUNNABLE_BACKFILL_STATUSES = UNFINISHED_BACKFILL_STATUSES


def rerun(current: BackfillStatus) -> BackfillStatus:
    """The backfill status after re-queueing some of its intervals: a FAILED backfill is
    SCHEDULED again, the unfinished ones keep theirs; a final one refuses."""
    if current not in RERUNNABLE_BACKFILL_STATUSES:
        raise InvalidTransition(
            "the backfill is {current}, a final status; its intervals can no longer be re-run "
            "(create a new backfill over those dates)",
            current=current.value,
        )
    return B.SCHEDULED if current is B.FAILED else current


def run_rerun(current: RunStatus) -> RunStatus:
    """A re-run re-queues a completed, failed or cancelled run as a new attempt."""
    if current not in RERUNNABLE_RUN_STATUSES:
        raise InvalidTransition(
            "run is {current}; only completed, failed or cancelled runs are re-run", current=current.value
        )
    return RunStatus.QUEUED


def retry_delay(base_seconds: float, tries: int) -> float:
    """Exponential backoff before the next attempt: base · 2^(tries-1), capped at an hour."""
    if tries < 1:
        return 0.0
    return float(min(base_seconds * (2 ** (tries - 1)), MAX_RETRY_DELAY_SECONDS))
