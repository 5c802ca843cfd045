"""``connections.yaml``, environment-variable expansion and the strict YAML reader (docs/pipelines.md).

The YAML reader is shared with :mod:`backfill.pipelines.loader`. It is ``yaml.SafeLoader``
with two changes that keep typos and surprises out of project files:

* a key repeated in one mapping is an error (PyYAML silently keeps the last one);
* dates and timestamps stay strings (``start: 2024-01-01`` is ``"2024-01-01"``), so
  variables are always JSON-compatible.
"""

from __future__ import annotations

import os
import re
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from backfill.domain.errors import PipelineFileError

__all__ = [
    "MissingEnvVar",
    "describe_value",
    "expand_env",
    "load_connections",
    "read_yaml_file",
]


# --------------------------------------------------------------------------- YAML


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and does not turn dates into objects."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Any] = set()
        for key_node, _value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # "<<: *anchor" merges; explicit keys may override merged ones
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable key: SafeConstructor reports it below
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# Copy the class-level resolver table before editing it, so yaml.SafeLoader is untouched.
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def read_yaml_file(path: Path, *, what: str = "file") -> Any:
    """Parse one YAML file; every problem becomes a PipelineFileError naming ``path``.

    Syntax errors carry the 1-based line and column of the YAML error.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PipelineFileError(str(path), f"{what} not found") from None
    except IsADirectoryError:
        raise PipelineFileError(str(path), f"{what} is a directory, expected a YAML file") from None
    except UnicodeDecodeError as exc:
        raise PipelineFileError(str(path), f"{what} is not valid UTF-8 ({exc.reason})") from None
    except OSError as exc:
        raise PipelineFileError(str(path), f"cannot read {what}: {exc.strerror or exc}") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise PipelineFileError(str(path), f"invalid YAML{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise PipelineFileError(str(path), f"invalid YAML: {exc}") from None


# --------------------------------------------------------------------------- environment


class MissingEnvVar(LookupError):
    """``expand_env`` met ``${NAME}`` / ``$NAME`` without a default and NAME is not set."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


_ENV_PATTERN = re.compile(
    r"""
    \$(?:
        (?P<escaped>\$)                                   # $$ -> a literal $
      | \{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)
           (?::-(?P<default>[^}]*))?\}                    # ${NAME} or ${NAME:-default}
      | (?P<named>[A-Za-z_][A-Za-z0-9_]*)                 # $NAME
    )
    """,
    re.VERBOSE,
)


def expand_env(value: str, environ: Mapping[str, str] | None = None) -> str:
    """Expand ``${VAR}``, ``${VAR:-default}`` and ``$VAR`` from the environment.

    As in the shell, ``${VAR:-default}`` uses the default when VAR is unset or empty.
    ``$$`` is a literal ``$``; a ``$`` not followed by a name is left alone.
    Raises :class:`MissingEnvVar` for an unset variable without a default; callers turn
    it into a PipelineFileError naming their file.
    """
    env = os.environ if environ is None else environ

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped") is not None:
            return "$"
        name = match.group("braced") or match.group("named")
        default = match.group("default")
        current = env.get(name)
        if default is not None:
            return current if current else default
        if current is None:
            raise MissingEnvVar(name)
        return current

    return _ENV_PATTERN.sub(replace, value)


# --------------------------------------------------------------------------- connections

_CONNECTION_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def load_connections(path: str | Path, *, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Read ``connections.yaml``: a mapping of connection name -> SQLAlchemy URL string.

    Environment variables in the URLs are expanded (see :func:`expand_env`) and each URL
    must parse as a SQLAlchemy URL. An empty file means no connections. Raises
    PipelineFileError naming the file and the offending connection / variable.
    """
    file = Path(os.path.normpath(Path(path).absolute()))
    data = read_yaml_file(file, what="connections file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PipelineFileError(
            str(file),
            f"expected a mapping of connection name -> URL, got {describe_value(data)}",
        )
    connections: dict[str, str] = {}
    for name, raw in data.items():
        if not isinstance(name, str) or not _CONNECTION_NAME.match(name):
            raise PipelineFileError(str(file), f"connection name {name!r} must be a string matching [A-Za-z0-9_-]+")
        if not isinstance(raw, str) or not raw.strip():
            raise PipelineFileError(
                str(file),
                f"connection {name!r}: the URL must be a non-empty string, got {describe_value(raw)}",
            )
        try:
            url = expand_env(raw, environ).strip()
        except MissingEnvVar as exc:
            raise PipelineFileError(
                str(file),
                f"connection {name!r}: environment variable {exc.name!r} is not set "
                f"(set it, or give a default: ${{{exc.name}:-default}})",
            ) from None
        try:
            make_url(url)
        except (ArgumentError, ValueError) as exc:
            raise PipelineFileError(str(file), f"connection {name!r}: not a valid SQLAlchemy URL ({exc})") from None
        connections[name] = url
    return connections


def describe_value(value: object) -> str:
    """A short description of a YAML value for error messages."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"
