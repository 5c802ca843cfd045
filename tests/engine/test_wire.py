"""The messages between the executor's parent and its children (engine/wire.py)."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta, timezone

import pytest

from backfill.engine.wire import Finished, Job, Progress, WireBlockResult, from_micros, to_micros


@pytest.mark.parametrize(
    "instant",
    [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(1900, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
    ],
)
def test_an_instant_crosses_the_pipe_exactly(instant: datetime) -> None:
    assert from_micros(to_micros(instant)) == instant
    assert from_micros(to_micros(instant)).tzinfo is UTC


def test_an_offset_is_kept_and_a_naive_instant_is_utc() -> None:
    berlin = datetime(2024, 6, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    assert from_micros(to_micros(berlin)) == datetime(2024, 6, 1, 0, 0, tzinfo=UTC)
    assert from_micros(to_micros(datetime(2024, 6, 1))) == datetime(2024, 6, 1, tzinfo=UTC)


def test_every_message_pickles_to_its_own_type_with_its_fields() -> None:
    result = WireBlockResult("a", "completed", 1.5, 2.5, 3, None, '{"rows": 3}')
    messages = [
        Job(1, 2, 3, "p", b"blocks", 10, 20, "UTC", {"k": [1]}, {"db": "sqlite://"}, "/tmp/run.log"),
        Progress([result]),
        Finished([result], True, None, 3, 0.25, 0),
    ]
    for message in messages:
        back = pickle.loads(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
        assert type(back) is type(message)
        assert back == message
    finished = pickle.loads(pickle.dumps(messages[2]))
    assert finished.results[0].rows == 3 and type(finished.results[0]) is WireBlockResult
