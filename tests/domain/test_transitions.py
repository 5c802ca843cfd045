"""The backfill and run state machines of docs/api.md."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from backfill.domain import transitions as t
from backfill.domain.errors import InvalidTransition
from backfill.domain.model import BackfillStatus as B
from backfill.domain.model import RunStatus as R
from backfill.domain.transitions import RunCounts


def test_start_retry_cancel_paths() -> None:
    assert t.start(B.CREATED) is B.SCHEDULED
    assert t.retry(B.FAILED) is B.SCHEDULED
    for s in (B.CREATED, B.SCHEDULED, B.RUNNING, B.FAILED):
        assert t.cancel(s) is B.CANCELLED


@pytest.mark.parametrize(
    ("status", "paused", "expected"),
    [
        (B.CREATED, False, "start rerun cancel pause edit delete"),
        (B.CREATED, True, "start rerun cancel resume edit delete"),
        (B.SCHEDULED, False, "rerun cancel pause"),
        (B.RUNNING, True, "rerun cancel resume"),
        (B.FAILED, False, "retry rerun cancel pause delete"),
        (B.COMPLETED, False, "delete"),
        (B.CANCELLED, True, "delete"),
    ],
)
def test_allowed_actions_per_status(status: B, paused: bool, expected: str) -> None:
    assert [a.value for a in t.allowed_actions(status, paused=paused)] == expected.split()


@pytest.mark.parametrize("status", list(B))
def test_allowed_actions_agree_with_the_checks(status: B) -> None:
    """Each listed action is accepted by the rule that guards it; each other one refused."""
    actions = set(t.allowed_actions(status, paused=False))
    guards: dict[t.UserAction, Callable[[], object]] = {
        t.UserAction.START: lambda: t.start(status),
        t.UserAction.RETRY: lambda: t.retry(status),
        t.UserAction.RERUN: lambda: t.rerun(status),
        t.UserAction.CANCEL: lambda: t.cancel(status),
        t.UserAction.PAUSE: lambda: t.check_pause(status),
        t.UserAction.EDIT: lambda: t.check_settings_editable(status, ("start",)),
        t.UserAction.DELETE: lambda: t.check_deletable(status),
    }
    for action, guard in guards.items():
        if action in actions:
            guard()
        else:
            with pytest.raises(InvalidTransition):
                guard()


@pytest.mark.parametrize("final", [B.COMPLETED, B.CANCELLED])
def test_final_states_refuse_everything(final: B) -> None:
    for target in B:
        with pytest.raises(InvalidTransition) as info:
            t.request(final, target)
        assert "final" in info.value.message
        assert info.value.allowed == ()
    with pytest.raises(InvalidTransition):
        t.check_pause(final)


def test_refusal_names_allowed_transitions() -> None:
    with pytest.raises(InvalidTransition) as info:
        t.request(B.RUNNING, B.COMPLETED)
    assert info.value.allowed == ("cancelled",)
    assert "allowed: cancelled" in info.value.message
    with pytest.raises(InvalidTransition) as info:
        t.request(B.CREATED, B.RUNNING)
    assert info.value.allowed == ("scheduled", "cancelled")


def test_request_maps_to_actions() -> None:
    assert t.request(B.CREATED, B.SCHEDULED) is t.Action.START
    assert t.request(B.FAILED, B.SCHEDULED) is t.Action.RETRY
    assert t.request(B.RUNNING, B.CANCELLED) is t.Action.CANCEL


def test_settings_editable_only_before_start() -> None:
    t.check_settings_editable(B.CREATED, ("start",))
    for s in (B.SCHEDULED, B.RUNNING, B.FAILED, B.COMPLETED, B.CANCELLED):
        with pytest.raises(InvalidTransition):
            t.check_settings_editable(s, ("start",))


def test_settle() -> None:
    done = RunCounts(created=3, completed=3)
    assert t.settle(B.RUNNING, done, exhausted=True) is B.COMPLETED
    assert t.settle(B.RUNNING, done, exhausted=False) is B.RUNNING
    assert t.settle(B.RUNNING, RunCounts(created=3, completed=2, failed=1), exhausted=True) is B.FAILED
    assert t.settle(B.SCHEDULED, RunCounts(created=3, running=1), exhausted=False) is B.RUNNING
    assert t.settle(B.SCHEDULED, RunCounts(), exhausted=True) is B.COMPLETED
    assert t.settle(B.RUNNING, RunCounts(created=3, completed=2, running=1), exhausted=True) is B.RUNNING
    # a cancelled backfill never changes because of its runs
    assert t.settle(B.CANCELLED, done, exhausted=True) is B.CANCELLED


def test_run_transitions() -> None:
    assert t.run_claim(R.QUEUED) is R.RUNNING
    with pytest.raises(InvalidTransition):
        t.run_claim(R.RUNNING)
    assert t.run_after_attempt(ok=True, tries=5, retries=0) is R.COMPLETED
    assert t.run_after_attempt(ok=False, tries=1, retries=2) is R.QUEUED
    assert t.run_after_attempt(ok=False, tries=3, retries=2) is R.FAILED
    assert t.run_cancel(R.QUEUED) is R.CANCELLED
    with pytest.raises(InvalidTransition):
        t.run_cancel(R.RUNNING)
    assert t.run_retry(R.FAILED) is R.QUEUED
    with pytest.raises(InvalidTransition):
        t.run_retry(R.COMPLETED)


@given(st.floats(min_value=0, max_value=600), st.integers(min_value=1, max_value=40))
def test_retry_delay_grows_and_is_capped(base: float, tries: int) -> None:
    d = t.retry_delay(base, tries)
    assert 0 <= d <= t.MAX_RETRY_DELAY_SECONDS
    assert t.retry_delay(base, tries + 1) >= d


class BackfillMachine(RuleBasedStateMachine):
    """Random sequences of user actions and run events keep the invariants of docs/api.md."""

    def __init__(self) -> None:
        super().__init__()
        self.status = B.CREATED
        self.total = 5
        self.runs: list[R] = []
        self.exhausted = False

    def counts(self) -> RunCounts:
        return RunCounts(
            created=len(self.runs),
            completed=self.runs.count(R.COMPLETED),
            failed=self.runs.count(R.FAILED),
            cancelled=self.runs.count(R.CANCELLED),
            running=self.runs.count(R.RUNNING),
        )

    def settle(self) -> None:
        self.status = t.settle(self.status, self.counts(), exhausted=self.exhausted)

    @rule(wanted=st.sampled_from(list(B)))
    def request(self, wanted: B) -> None:
        target = wanted
        before = self.status
        if target not in t.allowed_targets(self.status):
            with pytest.raises(InvalidTransition) as info:
                t.request(self.status, target)
            assert target.value not in info.value.allowed
            assert self.status is before
            return
        action = t.request(self.status, target)
        if action is t.Action.START:
            self.status = t.start(self.status)
        elif action is t.Action.RETRY:
            self.status = t.retry(self.status)
            self.runs = [t.run_retry(r) if r in t.RETRYABLE_RUN_STATUSES else r for r in self.runs]
        else:
            self.status = t.cancel(self.status)
            self.runs = [t.run_cancel(r) if r is R.QUEUED else r for r in self.runs]
            self.exhausted = True
        self.settle()

    @precondition(lambda self: t.can_claim(self.status, paused=False))
    @rule()
    def claim(self) -> None:
        if R.QUEUED not in self.runs and len(self.runs) < self.total:
            self.runs.append(R.QUEUED)
            self.exhausted = len(self.runs) == self.total
        if R.QUEUED in self.runs:
            self.runs[self.runs.index(R.QUEUED)] = t.run_claim(R.QUEUED)
        self.settle()

    @precondition(lambda self: R.RUNNING in self.runs)
    @rule(ok=st.booleans(), tries=st.integers(1, 3))
    def finish(self, ok: bool, tries: int) -> None:
        active = self.status in (B.SCHEDULED, B.RUNNING)
        self.runs[self.runs.index(R.RUNNING)] = t.run_after_attempt(ok=ok, tries=tries, retries=1 if active else 0)
        self.settle()

    @invariant()
    def consistent(self) -> None:
        c = self.counts()
        assert c.queued >= 0
        if self.status is B.COMPLETED:
            assert c.completed == self.total
        if self.status is B.FAILED:
            assert c.running == 0 and c.queued == 0 and (c.failed or c.cancelled)
        if self.status is B.CREATED:
            assert not self.runs


TestBackfillMachine = BackfillMachine.TestCase
TestBackfillMachine.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)


def test_rerun_is_allowed_until_final_and_schedules_a_failed_backfill() -> None:
    assert t.rerun(B.FAILED) is B.SCHEDULED
    for keep in (B.CREATED, B.SCHEDULED, B.RUNNING):
        assert t.rerun(keep) is keep
    for final in (B.COMPLETED, B.CANCELLED):
        with pytest.raises(InvalidTransition, match="final"):
            t.rerun(final)
    for status in (R.COMPLETED, R.FAILED, R.CANCELLED):
        assert t.run_rerun(status) is R.QUEUED
    for status in (R.QUEUED, R.RUNNING):
        with pytest.raises(InvalidTransition):
            t.run_rerun(status)
