"""The dependency rule of ARCHITECTURE.md, checked over the source tree.

Each top-level part of ``backfill`` (``domain``, ``store``, ``services``…) may import only
the parts listed in ``ALLOWED``; an import anywhere in a module counts (also one inside a
function). Relative imports are resolved. The scan runs on the real tree (no violation)
and on small synthetic trees that break the rule (each violation is reported).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "backfill"

# Names of the ``backfill`` package itself (``from backfill import __version__``).
ROOT_NAMES = frozenset({"__version__"})

# What each part may import, besides itself. ``app`` (the composition root) and ``cli``
# are the top; nothing but ``__main__`` imports ``cli``.
LOWER = frozenset({"domain", "config", "metrics", "logging_setup"})
ALLOWED: dict[str, frozenset[str]] = {
    "domain": frozenset(),
    "config": frozenset(),
    "metrics": frozenset(),
    "logging_setup": frozenset(),
    "store": frozenset({"domain"}),
    "pipelines": frozenset({"domain"}),
    "client": frozenset({"domain", "http"}),
    "http": frozenset({"domain"}),
    "services": LOWER | {"store", "pipelines"},
    "engine": LOWER | {"services", "store", "pipelines"},
    "api": LOWER | {"http", "services", "store", "pipelines"},
    "web": LOWER | {"http", "services", "store"},
    "app": LOWER | {"http", "services", "store", "pipelines", "api", "web"},
    "cli": LOWER | {"services", "store", "pipelines", "engine", "client", "app"},
    "__main__": frozenset({"cli"}),
    "__init__": frozenset(),
}


def _part(relative: Path) -> str:
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _package_of(relative: Path) -> list[str]:
    """``backfill.api.schemas`` for ``api/schemas/team.py`` (and for its ``__init__.py``)."""
    return ["backfill", *relative.parts[:-1]]


def _imported(tree: ast.AST, relative: Path) -> set[str]:
    """The parts of ``backfill`` a module imports."""
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = _package_of(relative)
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names = [module]
            if module == "backfill":
                names = [f"backfill.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "backfill" and len(parts) > 1 and parts[1] not in ROOT_NAMES:
                found.add(parts[1])
    return found


def violations(src: Path) -> list[str]:
    """Every import that breaks ``ALLOWED``, as ``file: part -> part``."""
    bad: list[str] = []
    for path in sorted(src.rglob("*.py")):
        relative = path.relative_to(src)
        part = _part(relative)
        if relative.parts[0] == "store" and "migrations" in relative.parts:
            part = "store"
        allowed = ALLOWED.get(part)
        imported = _imported(ast.parse(path.read_text(encoding="utf-8")), relative) - {part}
        if allowed is None:
            bad.append(f"{relative}: part {part!r} has no place in the dependency rule")
            continue
        bad.extend(f"{relative}: {part} -> {target}" for target in sorted(imported - allowed))
    return bad


def test_the_source_tree_keeps_the_dependency_rule() -> None:
    assert SRC.is_dir()
    assert violations(SRC) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "backfill"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("web/routes.py", "from backfill.api import security\n", "web/routes.py: web -> api"),
        ("web/routes.py", "from backfill.api.middleware import request_id_of\n", "web/routes.py: web -> api"),
        ("domain/model.py", "import backfill.store.db\n", "domain/model.py: domain -> store"),
        ("store/queue.py", "from backfill.services import backfills\n", "store/queue.py: store -> services"),
        ("services/runs.py", "from backfill import engine\n", "services/runs.py: services -> engine"),
        ("engine/worker.py", "def f():\n    from backfill.api import app\n", "engine/worker.py: engine -> api"),
        ("api/team_api.py", "from ..cli import main\n", "api/team_api.py: api -> cli"),
        ("api/schemas/team.py", "from ...web import routes\n", "api/schemas/team.py: api -> web"),
        ("app.py", "from backfill.cli.main import app\n", "app.py: app -> cli"),
        ("extras/thing.py", "x = 1\n", "extras/thing.py: part 'extras' has no place in the dependency rule"),
    ],
)
def test_a_lower_layer_importing_a_higher_one_is_reported(tmp_path: Path, name: str, text: str, expected: str) -> None:
    root = _tree(tmp_path, {"__init__.py": "", name: text})
    assert violations(root) == [expected]


def test_allowed_imports_are_not_reported(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "__init__.py": "__version__ = '0'\n",
            "web/routes.py": "from backfill import __version__\nfrom backfill.http.request_ids import request_id_of\n",
            "api/team_api.py": "from backfill.services import backfills\nfrom .middleware import Problem\n",
            "app.py": "from backfill import web\nfrom backfill.api import team_api\n",
            "store/queue.py": "from backfill.domain import transitions\n",
        },
    )
    assert violations(root) == []
