"""Log lines: human-readable on a terminal, JSON when collected or asked for."""

from __future__ import annotations

import io
import json
import logging

import pytest

from backfill.logging_setup import JsonFormatter, TextFormatter, formatter_for


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def record(**extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("backfill.cli", logging.INFO, __file__, 1, "serving on %s", ("http://x",), None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_auto_is_text_on_a_terminal_and_json_otherwise() -> None:
    assert isinstance(formatter_for("auto", Terminal()), TextFormatter)
    assert isinstance(formatter_for("auto", io.StringIO()), JsonFormatter)
    assert isinstance(formatter_for("json", Terminal()), JsonFormatter)
    assert isinstance(formatter_for("text", io.StringIO()), TextFormatter)
    with pytest.raises(ValueError, match="log format"):
        formatter_for("xml", io.StringIO())


def test_text_line_shows_level_logger_message_and_ids() -> None:
    line = TextFormatter().format(record(run_id=3))
    assert " INFO  backfill.cli  serving on http://x  [run_id=3]" in line
    assert json.loads(JsonFormatter().format(record(run_id=3)))["run_id"] == 3


def test_the_setting_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from backfill.config import SettingsError, load_settings

    monkeypatch.setenv("BACKFILL_LOG_FORMAT", "json")
    assert load_settings().log_format == "json"
    monkeypatch.setenv("BACKFILL_LOG_FORMAT", "fancy")
    with pytest.raises(SettingsError, match="BACKFILL_LOG_FORMAT"):
        load_settings()
