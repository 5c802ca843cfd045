"""Reading a project directory (docs/pipelines.md) and the bundled example project."""

from __future__ import annotations

import csv
import logging
import sqlite3
import textwrap
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
import pytest

from backfill.domain.errors import PipelineFileError
from backfill.domain.model import BlockType
from backfill.pipelines.loader import (
    MissingEnvVar,
    ProjectLoad,
    expand_env,
    load_connections,
    load_pipeline,
    load_project,
)

REPO = Path(__file__).resolve().parents[2]
SHOP = REPO / "examples" / "shop"

GOOD = """\
uuid: good
blocks:
  - uuid: a
    type: shell
    command: echo a
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def pipeline_dir(root: Path, name: str, yaml_text: str, files: Mapping[str, str] | None = None) -> Path:
    """Write project/pipelines/<name>/pipeline.yaml (+ block files); return the yaml path."""
    directory = root / "pipelines" / name
    for file_name, text in (files or {}).items():
        write(directory / file_name, text)
    return write(directory / "pipeline.yaml", yaml_text)


def load_error(path: Path, **kwargs: Any) -> PipelineFileError:
    with pytest.raises(PipelineFileError) as info:
        load_pipeline(path, **kwargs)
    return info.value


# --------------------------------------------------------------------------- valid files


def test_full_pipeline_is_loaded_with_every_field(tmp_path: Path) -> None:
    yaml_path = pipeline_dir(
        tmp_path,
        "sales",
        """\
        uuid: sales-2
        name: Sales two
        team: 7
        timezone: Europe/Berlin
        variables: {region: eu, start: 2024-01-01, nested: {k: [1, 2]}}
        retries: 3
        retry_delay_seconds: 1.5
        timeout_seconds: 60
        blocks:
          - uuid: extract
            type: python
            file: extract.py
          - uuid: load
            type: sql
            file: sql/load.sql
            connection: dwh
            upstream: [extract]
          - uuid: inline
            type: sql
            sql: "SELECT '{{ ds }}'"
            connection: dwh
            upstream: [extract, extract]
          - uuid: notify
            type: shell
            command: echo {{ ds }}
            upstream: [load, inline]
        """,
        {"extract.py": "def run(context):\n    return {'rows': 1}\n", "sql/load.sql": "SELECT 1"},
    )
    p = load_pipeline(yaml_path, connections={"dwh": "sqlite://"})
    directory = tmp_path / "pipelines" / "sales"
    assert (p.uuid, p.name, p.team_id, p.timezone) == ("sales-2", "Sales two", 7, "Europe/Berlin")
    assert p.variables == {"region": "eu", "start": "2024-01-01", "nested": {"k": [1, 2]}}
    assert (p.retries, p.retry_delay_seconds, p.timeout_seconds) == (3, 1.5, 60.0)
    assert isinstance(p.retry_delay_seconds, float)
    assert isinstance(p.timeout_seconds, float)
    assert p.path == str(yaml_path)
    assert p.block_uuids == ("extract", "load", "inline", "notify")

    extract, load, inline, notify = p.blocks
    assert extract.type is BlockType.PYTHON
    assert extract.source == "def run(context):\n    return {'rows': 1}\n"
    assert extract.path == str(directory / "extract.py")
    assert Path(extract.path).is_absolute()
    assert (load.type, load.source, load.connection, load.upstream) == (
        BlockType.SQL,
        "SELECT 1",
        "dwh",
        ("extract",),
    )
    assert load.path == str(directory / "sql" / "load.sql")
    assert (inline.source, inline.path, inline.upstream) == ("SELECT '{{ ds }}'", None, ("extract",))
    assert (notify.type, notify.source, notify.path, notify.connection) == (
        BlockType.SHELL,
        "echo {{ ds }}",
        None,
        None,
    )


def test_defaults(tmp_path: Path) -> None:
    p = load_pipeline(pipeline_dir(tmp_path, "g", GOOD))
    assert p.name == "good"
    assert p.team_id is None
    assert p.timezone is None
    assert p.variables == {}
    assert (p.retries, p.retry_delay_seconds, p.timeout_seconds) == (0, 30.0, None)
    assert p.blocks[0].upstream == ()
    assert load_pipeline(pipeline_dir(tmp_path, "g", GOOD), default_team_id=4).team_id == 4
    explicit = pipeline_dir(tmp_path, "t", GOOD.replace("uuid: good", "uuid: good\nteam: 9"))
    assert load_pipeline(explicit, default_team_id=4).team_id == 9


def test_python_block_file_is_read_but_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    source = f"open({str(marker)!r}, 'w').close()\nraise SystemExit(3)\n\ndef run(context):\n    return None\n"
    yaml_path = pipeline_dir(
        tmp_path,
        "p",
        """\
        uuid: p
        blocks:
          - {uuid: a, type: python, file: a.py}
        """,
        {"a.py": source},
    )
    p = load_pipeline(yaml_path)
    assert p.blocks[0].source == source
    assert not marker.exists()


def test_sql_connection_is_not_checked_without_connections(tmp_path: Path) -> None:
    yaml_path = pipeline_dir(
        tmp_path,
        "p",
        """\
        uuid: p
        blocks:
          - {uuid: q, type: sql, sql: SELECT 1, connection: anything}
        """,
    )
    assert load_pipeline(yaml_path).blocks[0].connection == "anything"


# --------------------------------------------------------------------------- invalid files


@pytest.mark.parametrize(
    ("yaml_text", "words"),
    [
        pytest.param("uuid: x\nblocks: [\n  - a\n", ["invalid YAML", "line"], id="bad-yaml"),
        pytest.param("- uuid: x\n", ["expected a mapping", "list"], id="not-a-mapping"),
        pytest.param("", ["empty"], id="empty-file"),
        pytest.param("name: x\nblocks: [{uuid: a, type: shell, command: ls}]\n", ["uuid"], id="missing-uuid"),
        pytest.param("uuid: a b\nblocks: [{uuid: a, type: shell, command: ls}]\n", ["uuid", "'a b'"], id="bad-uuid"),
        pytest.param("uuid: 123\nblocks: [{uuid: a, type: shell, command: ls}]\n", ["uuid", "int"], id="int-uuid"),
        pytest.param("uuid: x\n", ["blocks"], id="missing-blocks"),
        pytest.param("uuid: x\nblocks: []\n", ["blocks", "non-empty"], id="empty-blocks"),
        pytest.param("uuid: x\nblocks: [{type: shell, command: ls}]\n", ["block #1", "uuid"], id="block-no-uuid"),
        pytest.param(
            "uuid: x\nblocks: [{uuid: a, type: java}]\n",
            ["block 'a'", "unknown type", "'java'"],
            id="unknown-type",
        ),
        pytest.param("uuid: x\nblocks: [{uuid: a, command: ls}]\n", ["block 'a'", "type"], id="missing-type"),
        pytest.param(
            "uuid: x\nblocks:\n  - {uuid: a, type: shell, command: ls, upstream: [b]}\n"
            "  - {uuid: b, type: shell, command: ls, upstream: [a]}\n",
            ["cycle", "a", "b"],
            id="cycle",
        ),
        pytest.param(
            "uuid: x\nblocks: [{uuid: a, type: shell, command: ls, upstream: [ghost]}]\n",
            ["unknown upstream", "'ghost'", "'a'"],
            id="unknown-upstream",
        ),
        pytest.param(
            "uuid: x\nblocks: [{uuid: a, type: shell, command: ls}, {uuid: a, type: shell, command: pwd}]\n",
            ["duplicate block uuid", "'a'"],
            id="duplicate-block",
        ),
        pytest.param(
            "uuid: x\ntimezone: Mars/Olympus\nblocks: [{uuid: a, type: shell, command: ls}]\n",
            ["timezone", "Mars/Olympus"],
            id="bad-timezone",
        ),
        pytest.param(
            "uuid: x\nretries: abc\nblocks: [{uuid: a, type: shell, command: ls}]\n",
            ["retries", "'abc'"],
            id="retries-abc",
        ),
        pytest.param(
            "uuid: x\nretries: -1\nblocks: [{uuid: a, type: shell, command: ls}]\n",
            ["retries", ">= 0"],
            id="retries-negative",
        ),
        pytest.param(
            "uuid: x\nretries: true\nblocks: [{uuid: a, type: shell, command: ls}]\n",
            ["retries"],
            id="retries-bool",
        ),
        pytest.param(
            "uuid: x\nretry_delay_seconds: soon\nblocks: [{uuid: a, type: shell, command: ls}]\n",
            ["retry_delay_seconds", "'soon'"],
            id="retry-delay-str",
        ),
        pytest.param(
            "uuid: x\ntimeout_seconds: 0\nblocks: [{uuid: a, type: shell, command: ls}]\n",
            ["timeout_seconds", "> 0"],
            id="timeout-zero",
        ),
        pytest.param(
            "uuid: x\nteam: sales\nblocks: [{uuid: a, type: shell, command: ls}]\n",
            ["team", "'sales'"],
            id="team-str",
        ),
        pytest.param(
            "uuid: x\nvariables: [a, b]\nblocks: [{uuid: a, type: shell, command: ls}]\n",
            ["variables", "mapping"],
            id="variables-list",
        ),
        pytest.param(
            "uuid: x\nretires: 3\nblocks: [{uuid: a, type: shell, command: ls}]\n",
            ["unknown key 'retires'", "did you mean 'retries'"],
            id="unknown-top-level-key",
        ),
        pytest.param(
            "uuid: x\nblocks: [{uuid: a, type: shell, command: ls, upstrem: []}]\n",
            ["block 'a'", "unknown key 'upstrem'", "did you mean 'upstream'"],
            id="unknown-block-key",
        ),
        pytest.param(
            "uuid: x\nblocks: [{uuid: a, type: shell, command: ls, connection: dwh}]\n",
            ["block 'a'", "'connection'", "not allowed", "shell"],
            id="key-of-other-type",
        ),
        pytest.param(
            "uuid: x\nblocks: [{uuid: a, type: shell, command: ls}]\nuuid: y\n",
            ["invalid YAML", "line 3", "duplicate key 'uuid'"],
            id="duplicate-yaml-key",
        ),
        pytest.param(
            "uuid: x\nblocks: [{uuid: a, type: sql, sql: SELECT 1}]\n",
            ["block 'a'", "connection"],
            id="sql-without-connection",
        ),
        pytest.param(
            "uuid: x\nblocks: [{uuid: a, type: sql, sql: SELECT 1, connection: nope}]\n",
            ["block 'a'", "unknown connection 'nope'", "connections.yaml"],
            id="unknown-connection",
        ),
        pytest.param(
            "uuid: x\nblocks: [{uuid: a, type: sql, connection: dwh}]\n",
            ["block 'a'", "'file' or 'sql'"],
            id="sql-without-statement",
        ),
        pytest.param(
            "uuid: x\nblocks: [{uuid: a, type: sql, sql: 'SELECT {{ ds', connection: dwh}]\n",
            ["block 'a'", "Jinja", "line 1"],
            id="jinja-syntax",
        ),
        pytest.param("uuid: x\nblocks: [{uuid: a, type: shell}]\n", ["block 'a'", "command"], id="shell-no-command"),
        pytest.param("uuid: x\nblocks: [{uuid: a, type: python}]\n", ["block 'a'", "file"], id="python-no-file"),
        pytest.param("uuid: x\nblocks: [a, b]\n", ["block #1", "mapping"], id="block-not-mapping"),
        pytest.param(
            "uuid: x\nblocks: [{uuid: a, type: shell, command: ls, upstream: b}]\n",
            ["block 'a'", "upstream", "list"],
            id="upstream-not-list",
        ),
    ],
)
def test_invalid_pipeline_file_names_path_and_reason(tmp_path: Path, yaml_text: str, words: list[str]) -> None:
    yaml_path = pipeline_dir(tmp_path, "p", yaml_text)
    error = load_error(yaml_path, connections={"dwh": "sqlite://"})
    assert error.path == str(yaml_path)
    for word in words:
        assert word in error.reason
    assert str(yaml_path) in str(error)


def test_bad_yaml_reports_the_line(tmp_path: Path) -> None:
    yaml_path = pipeline_dir(tmp_path, "p", "uuid: x\nname: ok\nblocks:\n  - uuid: a\n   type: shell\n")
    error = load_error(yaml_path)
    assert "line 5" in error.reason


def test_missing_block_file_reports_the_block_file(tmp_path: Path) -> None:
    yaml_path = pipeline_dir(tmp_path, "p", "uuid: x\nblocks: [{uuid: a, type: python, file: gone.py}]\n")
    error = load_error(yaml_path)
    assert error.path == str(tmp_path / "pipelines" / "p" / "gone.py")
    assert "not found" in error.reason
    assert "'a'" in error.reason
    assert str(yaml_path) in error.reason


def test_python_syntax_error_reports_file_and_line(tmp_path: Path) -> None:
    yaml_path = pipeline_dir(
        tmp_path,
        "p",
        "uuid: x\nblocks: [{uuid: a, type: python, file: a.py}]\n",
        {"a.py": "def run(context):\n    return 1\n\nx = (\n"},
    )
    error = load_error(yaml_path)
    assert error.path == str(tmp_path / "pipelines" / "p" / "a.py")
    assert "syntax error" in error.reason
    assert "line 4" in error.reason
    assert "'a'" in error.reason


def test_python_compile_only_error_is_reported(tmp_path: Path) -> None:
    yaml_path = pipeline_dir(
        tmp_path,
        "p",
        "uuid: x\nblocks: [{uuid: a, type: python, file: a.py}]\n",
        {"a.py": "def run(context):\n    return 1\n\nreturn 2\n"},
    )
    error = load_error(yaml_path)
    assert "syntax error at line 4" in error.reason


def test_python_file_without_run_is_rejected(tmp_path: Path) -> None:
    yaml_path = pipeline_dir(
        tmp_path,
        "p",
        "uuid: x\nblocks: [{uuid: a, type: python, file: a.py}]\n",
        {"a.py": "def main(context):\n    return 1\n"},
    )
    error = load_error(yaml_path)
    assert "run(context)" in error.reason


def test_missing_pipeline_file(tmp_path: Path) -> None:
    error = load_error(tmp_path / "nope" / "pipeline.yaml")
    assert error.path == str(tmp_path / "nope" / "pipeline.yaml")
    assert "not found" in error.reason


# --------------------------------------------------------------------------- projects


def test_broken_pipeline_does_not_stop_good_ones(tmp_path: Path) -> None:
    pipeline_dir(tmp_path, "a_broken", "uuid: broken\nblocks: [{uuid: a, type: nope}]\n")
    pipeline_dir(tmp_path, "b_good", GOOD)
    pipeline_dir(tmp_path, "c_yaml", "uuid: [\n")
    pipeline_dir(tmp_path, "d_other", GOOD.replace("uuid: good", "uuid: another"))
    (tmp_path / "pipelines" / "no_pipeline_here").mkdir()
    (tmp_path / "pipelines" / ".hidden").mkdir()

    load = load_project(tmp_path, default_team_id=1)
    assert isinstance(load, ProjectLoad)
    assert [p.uuid for p in load.pipelines] == ["another", "good"]  # sorted by uuid
    assert all(p.team_id == 1 for p in load.pipelines)
    assert [Path(e.path).parent.name for e in load.errors] == ["a_broken", "c_yaml"]
    assert "unknown type" in load.errors[0].reason
    assert "invalid YAML" in load.errors[1].reason
    assert load.connections == {}


def test_duplicate_pipeline_uuid_keeps_the_first_directory(tmp_path: Path) -> None:
    second = pipeline_dir(tmp_path, "b_copy", GOOD.replace("command: echo a", "command: echo b"))
    first = pipeline_dir(tmp_path, "a_orig", GOOD)
    load = load_project(tmp_path)
    assert [p.path for p in load.pipelines] == [str(first)]
    assert load.pipelines[0].blocks[0].source == "echo a"
    (error,) = load.errors
    assert error.path == str(second)
    assert "duplicate pipeline uuid 'good'" in error.reason
    assert str(first) in error.reason


def test_project_checks_sql_connections(tmp_path: Path) -> None:
    write(tmp_path / "connections.yaml", "dwh: sqlite:///dwh.db\n")
    pipeline_dir(tmp_path, "ok", "uuid: ok\nblocks: [{uuid: q, type: sql, sql: SELECT 1, connection: dwh}]\n")
    bad = pipeline_dir(tmp_path, "bad", "uuid: bad\nblocks: [{uuid: q, type: sql, sql: SELECT 1, connection: lake}]\n")
    load = load_project(tmp_path)
    assert [p.uuid for p in load.pipelines] == ["ok"]
    (error,) = load.errors
    assert error.path == str(bad)
    assert "unknown connection 'lake'" in error.reason
    assert "dwh" in error.reason  # the known ones are listed
    assert load.connections == {"dwh": "sqlite:///dwh.db"}


def test_broken_connections_file_is_reported_and_pipelines_still_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BACKFILL_TEST_UNSET_VAR", raising=False)
    connections = write(tmp_path / "connections.yaml", "dwh: postgresql://${BACKFILL_TEST_UNSET_VAR}/db\n")
    pipeline_dir(tmp_path, "ok", "uuid: ok\nblocks: [{uuid: q, type: sql, sql: SELECT 1, connection: dwh}]\n")
    load = load_project(tmp_path)
    assert [p.uuid for p in load.pipelines] == ["ok"]
    (error,) = load.errors
    assert error.path == str(connections)
    assert "BACKFILL_TEST_UNSET_VAR" in error.reason
    assert "'dwh'" in error.reason
    assert load.connections == {}


def test_missing_project_directory(tmp_path: Path) -> None:
    load = load_project(tmp_path / "nowhere")
    assert load.pipelines == ()
    (error,) = load.errors
    assert error.path == str(tmp_path / "nowhere")
    assert "not found" in error.reason


def test_project_without_pipelines_directory_is_empty(tmp_path: Path) -> None:
    assert load_project(tmp_path) == ProjectLoad(pipelines=(), errors=(), connections={})


def test_misnamed_pipeline_yml_is_reported(tmp_path: Path) -> None:
    misnamed = write(tmp_path / "pipelines" / "p" / "pipeline.yml", GOOD)
    (error,) = load_project(tmp_path).errors
    assert error.path == str(misnamed)
    assert "pipeline.yaml" in error.reason


# --------------------------------------------------------------------------- connections / env


def test_expand_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BF_HOST", "db.local")
    monkeypatch.setenv("BF_EMPTY", "")
    monkeypatch.delenv("BF_UNSET", raising=False)
    assert expand_env("pg://${BF_HOST}/x") == "pg://db.local/x"
    assert expand_env("pg://$BF_HOST:5432/x") == "pg://db.local:5432/x"
    assert expand_env("${BF_UNSET:-fallback/path.db}") == "fallback/path.db"
    assert expand_env("${BF_HOST:-fallback}") == "db.local"
    assert expand_env("${BF_EMPTY:-fallback}") == "fallback"
    assert expand_env("${BF_UNSET:-}") == ""
    assert expand_env("${BF_EMPTY}") == ""
    assert expand_env("pa$$word $ 5") == "pa$word $ 5"
    assert expand_env("no variables") == "no variables"
    with pytest.raises(MissingEnvVar) as info:
        expand_env("x${BF_UNSET}y")
    assert info.value.name == "BF_UNSET"
    with pytest.raises(MissingEnvVar):
        expand_env("$BF_UNSET")
    assert expand_env("${A}", {"A": "from-mapping"}) == "from-mapping"


def test_load_connections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BF_PASSWORD", "s3cret")
    monkeypatch.delenv("BF_UNSET", raising=False)
    path = write(
        tmp_path / "connections.yaml",
        """\
        warehouse: sqlite:///${BF_UNSET:-.backfill/warehouse.db}
        pg: postgresql+psycopg://app:${BF_PASSWORD}@localhost:5432/dwh
        """,
    )
    assert load_connections(path) == {
        "warehouse": "sqlite:///.backfill/warehouse.db",
        "pg": "postgresql+psycopg://app:s3cret@localhost:5432/dwh",
    }
    assert load_connections(write(tmp_path / "empty.yaml", "# nothing yet\n")) == {}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        pytest.param("dwh: sqlite:///${BF_UNSET}\n", ["'dwh'", "BF_UNSET", "not set"], id="unset-var"),
        pytest.param("- sqlite://\n", ["mapping"], id="not-a-mapping"),
        pytest.param("dwh: {url: sqlite://}\n", ["'dwh'", "string"], id="url-not-string"),
        pytest.param("dwh: not a url\n", ["'dwh'", "SQLAlchemy URL"], id="bad-url"),
        pytest.param("dwh: [\n", ["invalid YAML", "line"], id="bad-yaml"),
        pytest.param("dwh: sqlite://\ndwh: sqlite:///x.db\n", ["duplicate key 'dwh'", "line 2"], id="dup-key"),
    ],
)
def test_invalid_connections_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, words: list[str]) -> None:
    monkeypatch.delenv("BF_UNSET", raising=False)
    path = write(tmp_path / "connections.yaml", text)
    with pytest.raises(PipelineFileError) as info:
        load_connections(path)
    assert info.value.path == str(path)
    for word in words:
        assert word in info.value.reason


# --------------------------------------------------------------------------- example project


def test_example_project_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BACKFILL_WAREHOUSE", raising=False)
    load = load_project(SHOP)
    assert load.errors == ()
    assert load.connections == {"warehouse": "sqlite:///.backfill/warehouse.db"}
    (pipeline,) = load.pipelines
    assert pipeline.uuid == "daily_sales"
    assert pipeline.timezone == "UTC"
    assert pipeline.variables["currency"] == "EUR"
    assert pipeline.block_uuids == ("extract", "load", "check", "announce")
    types = {b.uuid: (b.type, b.upstream) for b in pipeline.blocks}
    assert types == {
        "extract": (BlockType.PYTHON, ()),
        "load": (BlockType.PYTHON, ("extract",)),
        "check": (BlockType.SQL, ("load",)),
        "announce": (BlockType.SHELL, ("check",)),
    }
    assert pipeline.block("check").connection == "warehouse"
    assert "{{ ds }}" in pipeline.block("check").source
    assert pipeline.block("announce").source == 'echo "daily_sales {{ ds }} done"'
    for uuid in ("extract", "load", "check"):
        block_path = pipeline.block(uuid).path
        assert block_path is not None
        assert Path(block_path).is_file()

    monkeypatch.setenv("BACKFILL_WAREHOUSE", "/tmp/elsewhere.db")
    assert load_project(SHOP).connections == {"warehouse": "sqlite:////tmp/elsewhere.db"}


def test_example_dataset_is_small_and_in_range() -> None:
    csv_path = SHOP / "data" / "orders.csv"
    assert csv_path.stat().st_size < 300_000
    with csv_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert 300 <= len(rows) <= 5000
    assert len({r["order_id"] for r in rows}) == len(rows)
    days = {r["ordered_at"][:10] for r in rows}
    assert min(days) == "2024-01-01"
    assert max(days) == "2024-03-31"


class StandInContext:
    """What the executor gives a python block: attributes and ``context["key"]``."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    def __getitem__(self, key: str) -> Any:
        try:
            return self.__dict__[key]
        except KeyError:
            raise KeyError(key) from None


def run_block(pipeline_block_path: str, context: StandInContext) -> Any:
    source = Path(pipeline_block_path).read_text(encoding="utf-8")
    namespace: dict[str, Any] = {"__name__": "block"}
    exec(compile(source, pipeline_block_path, "exec"), namespace)
    return namespace["run"](context)


def expected_day(day: str) -> dict[str, tuple[int, float]]:
    counts: dict[str, int] = defaultdict(int)
    sums: dict[str, float] = defaultdict(float)
    with (SHOP / "data" / "orders.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["ordered_at"].startswith(day):
                counts[row["store"]] += 1
                sums[row["store"]] += float(row["amount"])
    return {store: (counts[store], round(sums[store], 2)) for store in counts}


def run_example_interval(
    pipeline_blocks: dict[str, str], warehouse_url: str, start: datetime, end: datetime
) -> tuple[Any, Any]:
    base: dict[str, Any] = {
        "interval_start": start,
        "interval_end": end,
        "ds": start.strftime("%Y-%m-%d"),
        "variables": {"currency": "EUR", "data_dir": "data", "orders_file": "orders.csv"},
        "connections": {"warehouse": warehouse_url},
        "logger": logging.getLogger("test.example"),
    }
    extract = run_block(
        pipeline_blocks["extract"],
        StandInContext(**base, upstream={}, block_path=pipeline_blocks["extract"]),
    )
    load = run_block(
        pipeline_blocks["load"],
        StandInContext(**base, upstream={"extract": extract}, block_path=pipeline_blocks["load"]),
    )
    return extract, load


def test_example_blocks_load_one_day_idempotently(tmp_path: Path) -> None:
    pipeline = load_pipeline(SHOP / "pipelines" / "daily_sales" / "pipeline.yaml")
    paths = {b.uuid: b.path for b in pipeline.blocks if b.path is not None}
    warehouse = tmp_path / "nested" / "warehouse.db"  # the parent directory does not exist yet
    url = f"sqlite:///{warehouse}"
    start = datetime(2024, 2, 10, tzinfo=UTC)
    expected = expected_day("2024-02-10")
    assert expected  # the dataset has orders that day

    for _ in range(2):
        extract, load = run_example_interval(paths, url, start, start + timedelta(days=1))
        assert extract["rows"] == sum(n for n, _ in expected.values())
        assert all(o["ordered_at"].startswith("2024-02-10") for o in extract["orders"])
        assert load["rows"] == len(expected)

    # a neighbouring day loaded afterwards is not touched by re-running 2024-02-10
    run_example_interval(paths, url, start + timedelta(days=1), start + timedelta(days=2))
    run_example_interval(paths, url, start, start + timedelta(days=1))

    with sqlite3.connect(warehouse) as db:
        rows = db.execute(
            "SELECT store, orders, revenue FROM daily_sales WHERE day = '2024-02-10' ORDER BY store"
        ).fetchall()
        total = db.execute("SELECT COUNT(*) FROM daily_sales").fetchone()[0]
        check_sql = jinja2.Template(pipeline.block("check").source).render(ds="2024-02-10")
        stores = db.execute(check_sql).fetchone()[0]
    assert {store: (n, pytest.approx(revenue)) for store, n, revenue in rows} == expected
    assert total == len(expected) + len(expected_day("2024-02-11"))
    assert stores == len(expected)


def test_example_blocks_replace_whole_days_for_hourly_intervals(tmp_path: Path) -> None:
    pipeline = load_pipeline(SHOP / "pipelines" / "daily_sales" / "pipeline.yaml")
    paths = {b.uuid: b.path for b in pipeline.blocks if b.path is not None}
    warehouse = tmp_path / "warehouse.db"
    start = datetime(2024, 3, 5, 13, tzinfo=UTC)
    extract, _ = run_example_interval(paths, f"sqlite:///{warehouse}", start, start + timedelta(hours=1))
    assert extract["days"] == ["2024-03-05"]
    with sqlite3.connect(warehouse) as db:
        rows = db.execute("SELECT store, orders, revenue FROM daily_sales WHERE day = '2024-03-05'").fetchall()
    assert {store: (n, pytest.approx(revenue)) for store, n, revenue in rows} == expected_day("2024-03-05")
