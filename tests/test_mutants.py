"""``make mutants`` keeps working: every mutant's patch still applies to the source (each
text occurs exactly once), so moving code cannot silently retire a mutant."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _mutants() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutants_script", ROOT / "scripts" / "mutants.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_every_mutant_still_applies() -> None:
    mutants = _mutants()
    assert mutants.stale(mutants.MUTANTS) == []


def test_every_database_specific_mutant_names_a_database() -> None:
    mutants = _mutants()
    assert {m.database for m in mutants.MUTANTS} <= {None, "sqlite", "postgresql"}
    assert len({m.name for m in mutants.MUTANTS}) == len(mutants.MUTANTS)
