"""Block context and the python / sql / shell runners, called in-process."""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backfill.domain.model import BlockType
from backfill.domain.pipeline import Block
from backfill.engine.blocks import (
    BlockContext,
    BlockError,
    render_template,
    run_block,
    run_python_block,
    run_shell_block,
    run_sql_block,
    split_sql,
)

START = datetime(2024, 6, 30, 22, 0, tzinfo=UTC)  # 2024-07-01 00:00 in Europe/Berlin (CEST)


def ctx(**overrides: Any) -> BlockContext:
    values: dict[str, Any] = {
        "interval_start": START,
        "interval_end": START + timedelta(hours=1),
        "timezone": "Europe/Berlin",
        "variables": {"region": "eu", "n": 3},
        "backfill_id": 11,
        "run_id": 22,
        "attempt": 2,
        "upstream": {},
        "connections": {},
        "block_uuid": "b",
        "block_path": None,
        "pipeline_uuid": "p",
    }
    values.update(overrides)
    return BlockContext(**values)


def py(uuid: str, source: str, path: str | None = None) -> Block:
    return Block(uuid, BlockType.PYTHON, source, path=path)


# --------------------------------------------------------------------------- context


def test_context_values_in_the_run_timezone() -> None:
    c = ctx()
    assert c.ds == c["ds"] == "2024-07-01"
    assert c.hr == c["hr"] == "00"
    assert c.interval_seconds == c["interval_seconds"] == 3600
    assert c.interval_start == c.data_date == c.execution_date == START
    assert c.interval_start.tzinfo is not None
    assert c.interval_start.utcoffset() == timedelta(0)
    assert c["variables"] == {"region": "eu", "n": 3}
    assert (c.backfill_id, c.run_id, c.attempt) == (11, 22, 2)
    assert "ds" in c
    assert "nope" not in c
    assert c.get("nope", 5) == 5
    with pytest.raises(KeyError):
        c["nope"]
    assert isinstance(c["logger"], logging.Logger)


def test_context_utc_and_naive_datetimes() -> None:
    c = ctx(timezone="UTC", interval_start=datetime(2024, 1, 2, 5), interval_end=datetime(2024, 1, 3, 5))
    assert c.ds == "2024-01-02"
    assert c.hr == "05"
    assert c.interval_seconds == 86400
    assert c.interval_start.tzinfo is not None


def test_template_vars_include_iso_strings_variables_and_upstream() -> None:
    c = ctx(upstream={"a": {"rows": 1}})
    tv = c.template_vars()
    assert tv["ds"] == "2024-07-01"
    assert tv["interval_start_iso"] == "2024-06-30T22:00:00+00:00"
    assert tv["interval_end_iso"] == "2024-06-30T23:00:00+00:00"
    assert tv["variables"]["region"] == "eu"
    assert tv["upstream"] == {"a": {"rows": 1}}
    assert tv["ds_nodash"] == "20240701"
    assert tv["run_id"] == 22


def test_logger_writes_to_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    c = ctx(block_uuid="logging_block")
    c.logger.info("hello from the block")
    err = capfd.readouterr().err
    assert "hello from the block" in err
    assert "logging_block" in err


# --------------------------------------------------------------------------- python


def test_python_block_gets_context_and_returns_value(tmp_path: Path) -> None:
    path = tmp_path / "extract.py"
    source = "def run(context):\n    return {'rows': context['variables']['n'], 'file': __file__}\n"
    path.write_text(source)
    value = run_python_block(py("extract", source, str(path)), ctx())
    assert value == {"rows": 3, "file": str(path)}


def test_python_block_namespace_is_fresh_every_run() -> None:
    source = "counter = []\ndef run(context):\n    counter.append(1)\n    return len(counter)\n"
    block = py("fresh", source)
    assert run_python_block(block, ctx()) == 1
    assert run_python_block(block, ctx()) == 1


def test_python_block_source_change_is_recompiled() -> None:
    assert run_python_block(py("v", "def run(context):\n    return 1\n"), ctx()) == 1
    assert run_python_block(py("v", "def run(context):\n    return 2\n"), ctx()) == 2


def test_python_block_without_run_is_a_clear_error() -> None:
    with pytest.raises(BlockError, match=r"python block 'norun' defines no run\(context\) function"):
        run_python_block(py("norun", "x = 1\n"), ctx())


def test_python_block_exception_propagates() -> None:
    with pytest.raises(ValueError, match="bad row"):
        run_python_block(py("bad", "def run(context):\n    raise ValueError('bad row')\n"), ctx())


# --------------------------------------------------------------------------- templates


def test_template_renders_context_and_variables() -> None:
    block = Block("t", BlockType.SHELL, "{{ ds }} {{ hr }} {{ variables.region }} {{ run_id }}")
    assert render_template(block, ctx()) == "2024-07-01 00 eu 22"


def test_template_undefined_variable_names_it() -> None:
    block = Block("t", BlockType.SHELL, "echo {{ not_a_var }}")
    with pytest.raises(BlockError, match="'not_a_var' is undefined"):
        render_template(block, ctx())
    block = Block("t2", BlockType.SHELL, "echo {{ variables.missing_key }}")
    with pytest.raises(BlockError, match="missing_key"):
        render_template(block, ctx())


def test_template_syntax_error() -> None:
    with pytest.raises(BlockError, match="template syntax error"):
        render_template(Block("t3", BlockType.SHELL, "echo {{ ds "), ctx())


# --------------------------------------------------------------------------- sql


def test_split_sql_respects_quotes_and_comments() -> None:
    sql = """
        -- a comment; with a semicolon
        INSERT INTO t VALUES ('a;b', "c;d");
        /* block; comment */ UPDATE t SET x = 'it''s; fine';
        ;
        CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;
        SELECT $1;
        -- trailing comment only
    """
    statements = split_sql(sql)
    assert len(statements) == 4
    assert statements[0].endswith("""INSERT INTO t VALUES ('a;b', "c;d")""")
    assert statements[1].endswith("UPDATE t SET x = 'it''s; fine'")
    assert statements[2].startswith("CREATE FUNCTION")
    assert "SELECT 1; $$" in statements[2]
    assert statements[3] == "SELECT $1"
    assert split_sql("  -- nothing\n ; ") == []


def sqlite_ctx(db: Path, **overrides: Any) -> BlockContext:
    return ctx(connections={"wh": f"sqlite:///{db}"}, **overrides)


def sql(uuid: str, text: str, connection: str | None = "wh") -> Block:
    return Block(uuid, BlockType.SQL, text, connection=connection)


def test_sql_block_dml_renders_ds_and_counts_rows(tmp_path: Path) -> None:
    db = tmp_path / "wh.db"
    c = sqlite_ctx(db)
    run_sql_block(sql("ddl", "CREATE TABLE sales (ds TEXT, region TEXT, amount INT)"), c)
    load = sql(
        "load",
        """
        DELETE FROM sales WHERE ds = '{{ ds }}';
        INSERT INTO sales VALUES ('{{ ds }}', '{{ variables.region }}', 1), ('{{ ds }}', 'us', 2);
        """,
    )
    assert run_sql_block(load, c) == {"rows": 2, "columns": [], "data": [], "statements": 2}
    assert run_sql_block(load, c)["rows"] == 2  # idempotent: delete + insert
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT ds, region, amount FROM sales ORDER BY amount").fetchall() == [
            ("2024-07-01", "eu", 1),
            ("2024-07-01", "us", 2),
        ]


def test_sql_block_select_returns_count_columns_and_first_100_rows(tmp_path: Path) -> None:
    db = tmp_path / "wh.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE n (i INT, label TEXT)")
        con.executemany("INSERT INTO n VALUES (?, ?)", [(i, f"x{i}") for i in range(150)])
    value = run_sql_block(sql("q", "SELECT i, label FROM n ORDER BY i"), sqlite_ctx(db))
    assert value["rows"] == 150
    assert value["columns"] == ["i", "label"]
    assert len(value["data"]) == 100
    assert value["data"][0] == [0, "x0"]
    assert value["data"][-1] == [99, "x99"]


def test_sql_block_statements_share_one_transaction(tmp_path: Path) -> None:
    db = tmp_path / "wh.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (i INT)")
    block = sql("tx", "INSERT INTO t VALUES (1); INSERT INTO no_such_table VALUES (2)")
    with pytest.raises(Exception, match="no_such_table"):
        run_sql_block(block, sqlite_ctx(db))
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_sql_block_undefined_variable_is_an_error_naming_it(tmp_path: Path) -> None:
    block = sql("u", "SELECT '{{ undefined_thing }}'")
    with pytest.raises(BlockError, match="'undefined_thing' is undefined"):
        run_sql_block(block, sqlite_ctx(tmp_path / "wh.db"))


def test_sql_block_connection_errors(tmp_path: Path) -> None:
    with pytest.raises(BlockError, match=r"unknown connection 'other' \(known: wh\)"):
        run_sql_block(sql("c", "SELECT 1", connection="other"), sqlite_ctx(tmp_path / "wh.db"))
    with pytest.raises(BlockError, match="names no connection"):
        run_sql_block(sql("c", "SELECT 1", connection=None), sqlite_ctx(tmp_path / "wh.db"))


# --------------------------------------------------------------------------- shell


def test_shell_block_env_and_template(capfd: pytest.CaptureFixture[str]) -> None:
    block = Block(
        "sh",
        BlockType.SHELL,
        'echo "tpl={{ ds }}/{{ variables.region }} env=$BACKFILL_DS $BACKFILL_RUN_ID $BACKFILL_ATTEMPT"; '
        'echo "start=$BACKFILL_INTERVAL_START end=$BACKFILL_INTERVAL_END" >&2',
    )
    assert run_shell_block(block, ctx()) == {"exit_code": 0}
    out, err = capfd.readouterr()
    assert "tpl=2024-07-01/eu env=2024-07-01 22 2" in out
    assert "start=2024-06-30T22:00:00+00:00 end=2024-06-30T23:00:00+00:00" in err


def test_shell_block_nonzero_exit() -> None:
    with pytest.raises(BlockError, match=r"^command exited with status 3$"):
        run_shell_block(Block("sh", BlockType.SHELL, "exit 3"), ctx())


def test_run_block_dispatches_on_type(tmp_path: Path) -> None:
    assert run_block(py("p", "def run(context):\n    return context.hr\n"), ctx()) == "00"
    assert run_block(Block("s", BlockType.SHELL, "true"), ctx()) == {"exit_code": 0}
    assert run_block(sql("q", "SELECT 1 AS one"), sqlite_ctx(tmp_path / "x.db"))["data"] == [[1]]
