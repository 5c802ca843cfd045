"""``notify:`` in pipeline.yaml (docs/api.md): loaded, stored with the pipeline, validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from backfill.domain.errors import PipelineFileError
from backfill.domain.notifications import Webhook
from backfill.pipelines.loader import load_pipeline
from backfill.store.pipelines import definition_from_json, definition_to_json

BASE = """\
uuid: hooked
blocks:
  - uuid: a
    type: shell
    command: echo a
"""


def write(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "pipelines" / "hooked" / "pipeline.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(BASE + extra, encoding="utf-8")
    return path


def test_notify_is_loaded_and_survives_the_database(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "notify:\n  - url: https://hooks.slack.com/services/T/B/X\n    events: [failed]\n"
        "  - {url: 'http://127.0.0.1:9/x', secret: s}\n",
    )
    pipeline = load_pipeline(path)
    assert pipeline.notify == (
        Webhook("https://hooks.slack.com/services/T/B/X", ("failed",)),
        Webhook("http://127.0.0.1:9/x", ("completed", "failed", "cancelled"), "s"),
    )
    assert definition_from_json(definition_to_json(pipeline)).notify == pipeline.notify


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ("notify: https://x.example\n", "notify must be a list"),
        ("notify:\n  - url: mailto:me@example.com\n", "notify[0].url must be an http or https URL"),
        ("notify:\n  - url: https://x.example\n    events: [started]\n", "unknown event 'started'"),
    ],
)
def test_a_bad_notify_names_the_file_and_the_entry(tmp_path: Path, extra: str, words: str) -> None:
    path = write(tmp_path, extra)
    with pytest.raises(PipelineFileError) as caught:
        load_pipeline(path)
    assert str(path) in str(caught.value) and words in str(caught.value)
