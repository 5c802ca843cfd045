"""Size limits of backfill input (docs/api.md "Limits"), the same for every adapter.

- ``variables``: at most ``MAX_VARIABLES_BYTES`` of JSON (compact, UTF-8) and
  ``MAX_JSON_DEPTH`` levels of nested objects/arrays;
- no ``NaN`` / ``Infinity`` anywhere in a JSON value (JSON has no such numbers: PostgreSQL
  refuses them and SQLite would store ``null``);
- names at most ``MAX_NAME_LENGTH`` characters.

Each check raises :class:`ValidationError` naming the field (and the path inside it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from backfill.domain.errors import ValidationError

MAX_NAME_LENGTH = 200
MAX_VARIABLES_BYTES = 64 * 1024
MAX_JSON_DEPTH = 32


def check_name(name: object, field: str = "name") -> str:
    """A non-empty name of at most ``MAX_NAME_LENGTH`` characters."""
    if not isinstance(name, str) or not name.strip():
        raise ValidationError(f"{field} must be a non-empty string", field=field)
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationError(f"{field} must be at most {MAX_NAME_LENGTH} characters (got {len(name)})", field=field)
    return name


def non_finite_path(value: Any, path: str) -> str | None:
    """The path (``variables.a[2]``) of the first ``NaN``/``Infinity`` inside ``value``,
    else None. Iterative: a deeply nested value cannot exhaust the stack."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return where
        elif isinstance(item, Mapping):
            stack.extend((v, f"{where}.{k}") for k, v in item.items())
        elif isinstance(item, list | tuple):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
    return None


def json_depth(value: Any) -> int:
    """Levels of nested objects/arrays (a scalar is 0, ``{}`` is 1)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            deepest = max(deepest, depth + 1)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list | tuple):
            deepest = max(deepest, depth + 1)
            stack.extend((v, depth + 1) for v in item)
    return deepest


def check_finite(value: Any, field: str) -> None:
    """Refuse ``NaN``/``Infinity`` anywhere inside ``value``, naming where."""
    where = non_finite_path(value, field)
    if where is not None:
        raise ValidationError(f"{where}: NaN and Infinity are not valid JSON numbers", field=field)


def check_variables(variables: Mapping[str, Any] | None, field: str = "variables") -> None:
    """At most ``MAX_JSON_DEPTH`` levels, finite numbers only, at most ``MAX_VARIABLES_BYTES``."""
    if variables is None:
        return
    depth = json_depth(variables)
    if depth > MAX_JSON_DEPTH:
        raise ValidationError(f"{field} must be at most {MAX_JSON_DEPTH} levels deep (got {depth})", field=field)
    check_finite(variables, field)
    size = len(json.dumps(variables, ensure_ascii=False, separators=(",", ":"), default=str).encode())
    if size > MAX_VARIABLES_BYTES:
        raise ValidationError(f"{field} must be at most {MAX_VARIABLES_BYTES} bytes of JSON (got {size})", field=field)
