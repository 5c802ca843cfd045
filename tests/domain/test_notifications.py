"""Webhooks (domain.notifications): validation naming the field, signatures, the body,
the retry schedule."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backfill.domain import notifications as n
from backfill.domain.errors import ValidationError
from backfill.domain.model import BackfillStatus


def test_a_webhook_defaults_to_every_event() -> None:
    (hook,) = n.parse_webhooks([{"url": " https://hooks.example.com/a "}])
    assert hook == n.Webhook(url="https://hooks.example.com/a", events=n.EVENTS, secret=None)
    assert n.parse_webhooks(None) == ()
    assert n.parse_webhooks([hook.to_json()]) == (hook,)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("https://x", "must be a list"),
        ([{"url": "ftp://files.example.com/x"}], "notify[0].url must be an http or https URL"),
        ([{"url": "file:///etc/passwd"}], "notify[0].url"),
        ([{"url": "https://"}], "notify[0].url"),
        ([{"events": ["failed"]}], "notify[0].url is required"),
        ([{"url": "https://a.example", "events": ["done"]}], "unknown event 'done'"),
        ([{"url": "https://a.example", "events": []}], "notify[0].events must be a non-empty list"),
        ([{"url": "https://a.example", "secret": 7}], "notify[0].secret"),
        (
            [{"url": "https://a.example"}, {"url": "https://b.example", "header": "x"}],
            "notify[1]: unknown key 'header'",
        ),
        (["https://a.example"], "notify[0] must be an object"),
    ],
)
def test_bad_webhooks_name_the_field(value: Any, words: str) -> None:
    with pytest.raises(ValidationError) as caught:
        n.parse_webhooks(value)
    assert words in caught.value.message
    assert caught.value.field == "notify"


def test_signature_is_hmac_sha256_of_the_exact_body() -> None:
    body = b'{"a":1}'
    signature = n.sign("s3cret", body)
    # echo -n '{"a":1}' | openssl dgst -sha256 -hmac s3cret
    assert signature == "sha256=5910e62016ef5034272c926c27071992a465c2335cecf41851bda071577f4f6d"
    assert n.verify("s3cret", body, signature)
    assert not n.verify("s3cret", body + b" ", signature)
    assert not n.verify("other", body, signature)
    assert not n.verify("s3cret", body, None)


def test_body_summary_link_and_slack_text() -> None:
    backfill = {
        "id": 7,
        "name": "daily 2024",
        "pipeline_id": 3,
        "runs_total": 10,
        "runs_completed": 8,
        "runs_failed": 2,
        "runs_cancelled": 0,
        "runs_running": 0,
    }
    at = datetime(2024, 2, 1, 9, tzinfo=UTC)
    errors = [("2024-01-03", "ValueError: bad row\nTraceback ..."), ("2024-01-04", "x" * 500)]
    summary = n.summary(event="failed", backfill=backfill, pipeline_uuid="daily", error_report=errors, at=at)
    raw = n.body(summary, "http://h:1/#/backfills/7")
    assert raw == n.body(summary, "http://h:1/#/backfills/7")  # the same bytes on every attempt
    doc = json.loads(raw)
    assert doc["backfill"]["status"] == "FAILED" and doc["backfill"]["runs_failed"] == 2
    assert doc["url"] == "http://h:1/#/backfills/7" and doc["occurred_at"] == "2024-02-01T09:00:00Z"
    assert doc["error_report"][1]["error"] == "x" * n.ERROR_TEXT_HEAD
    assert doc["text"] == (
        "Backfill #7 'daily 2024' of daily failed: 8 completed, 2 failed, 0 cancelled of 10 intervals. "
        "First error (2024-01-03): ValueError: bad row <http://h:1/#/backfills/7|open>"
    )


def test_events_of_statuses() -> None:
    assert [n.event_of(s) for s in BackfillStatus] == [None, None, None, "completed", "failed", "cancelled"]


def test_retries_start_within_5_seconds_double_and_stop_after_24_hours() -> None:
    assert [n.retry_delay(a) for a in range(1, 6)] == [5, 10, 20, 40, 80]
    assert n.retry_delay(30) == n.MAX_RETRY_SECONDS
    created = datetime(2024, 1, 1, tzinfo=UTC)
    assert n.next_attempt(created, 1, created) == created + timedelta(seconds=5)
    late = created + timedelta(hours=23, minutes=59, seconds=58)
    assert n.next_attempt(created, 1, late) is None
    assert n.next_attempt(created, 20, created + timedelta(hours=22)) == created + timedelta(hours=23)
