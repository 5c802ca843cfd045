"""``backfill pipelines validate``: checks a project without a database, one line per
problem naming the file, exit status 1 if there is any."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from backfill.domain.block_context import TEMPLATE_NAMES
from backfill.engine.blocks import BlockContext

REPO = Path(__file__).resolve().parents[2]


def app() -> typer.Typer:
    from backfill.cli.main import app as main_app

    return main_app


def pipeline(root: Path, name: str, yaml: str, **files: str) -> Path:
    directory = root / "pipelines" / name
    directory.mkdir(parents=True)
    (directory / "pipeline.yaml").write_text(yaml)
    for file, text in files.items():
        (directory / file.replace("_", ".")).write_text(text)
    return directory


def test_the_example_project_is_valid() -> None:
    result = CliRunner().invoke(app(), ["pipelines", "validate", "--project", str(REPO / "examples" / "shop")])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok daily_sales (4 blocks, version ")


def test_every_problem_is_one_line_naming_its_file(tmp_path: Path) -> None:
    one = "uuid: {u}\nblocks:\n  - {{uuid: a, type: {t}, {k}: {v}}}\n"
    good = pipeline(
        tmp_path, "good", one.format(u="good", t="python", k="file", v="a.py"), a_py="def run(context):\n    return 1\n"
    )
    ts = pipeline(tmp_path, "ts", one.format(u="ts", t="shell", k="command", v="'echo {{ ts }}'"))
    norun = pipeline(tmp_path, "norun", one.format(u="norun", t="python", k="file", v="a.py"), a_py="x = 1\n")
    syntax = pipeline(tmp_path, "syntax", one.format(u="syntax", t="python", k="file", v="a.py"), a_py="def run(:\n")
    missing = pipeline(tmp_path, "missing", one.format(u="missing", t="python", k="file", v="gone.py"))
    badyaml = pipeline(tmp_path, "badyaml", "uuid: [unclosed\n")
    cycle = pipeline(
        tmp_path,
        "cycle",
        "uuid: cycle\nblocks:\n  - {uuid: a, type: shell, command: 'true', upstream: [b]}\n"
        "  - {uuid: b, type: shell, command: 'true', upstream: [a]}\n",
    )
    result = CliRunner().invoke(app(), ["pipelines", "validate", "--project", str(tmp_path)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    problems = [line for line in lines if not line.startswith("ok ")]
    assert len(problems) == 6, result.stdout
    by_file = {line.split(": ", 1)[0]: line for line in problems}
    assert "unknown template variable 'ts'" in by_file[str(ts / "pipeline.yaml")]
    assert "valid names: " + ", ".join(TEMPLATE_NAMES) in by_file[str(ts / "pipeline.yaml")]
    assert "must define run(context)" in by_file[str(norun / "a.py")]
    assert "syntax error" in by_file[str(syntax / "a.py")]
    assert "not found" in by_file[str(missing / "gone.py")]
    assert str(badyaml / "pipeline.yaml") in by_file
    assert "cycle" in by_file[str(cycle / "pipeline.yaml")]
    assert [line for line in lines if line.startswith("ok ")] == [line for line in lines if "ok good" in line]
    assert good.exists()

    as_json = CliRunner().invoke(app(), ["pipelines", "validate", "--project", str(tmp_path), "--json"])
    assert as_json.exit_code == 1
    data = json.loads(as_json.stdout)
    assert [p["uuid"] for p in data["pipelines"]] == ["good"] and len(data["errors"]) == 6


def test_template_names_are_what_templates_get() -> None:
    from datetime import UTC, datetime

    context = BlockContext(
        interval_start=datetime(2024, 1, 1, tzinfo=UTC), interval_end=datetime(2024, 1, 2, tzinfo=UTC)
    )
    assert set(context.template_vars()) == set(TEMPLATE_NAMES)


def test_a_wrong_directory_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from backfill.cli.main import run

    assert run(["pipelines", "validate", "--project", str(tmp_path / "nowhere")]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip().splitlines() == [
        f"error: --project: {str(tmp_path / 'nowhere')!r} is not a project directory (it has no pipelines/ directory)"
    ]
