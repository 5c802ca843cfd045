"""Read a pipeline project directory (docs/pipelines.md).

::

    project/
      connections.yaml            # optional: connection name -> SQLAlchemy URL
      pipelines/
        <dir>/pipeline.yaml       # one pipeline per directory
        <dir>/<block files>

Every problem is a :class:`~backfill.domain.errors.PipelineFileError` whose ``path`` is
the file at fault (the ``pipeline.yaml``, ``connections.yaml`` or a block file) and
whose ``reason`` names the key / block. :func:`load_project` collects them, one per bad
file, and still returns every valid pipeline. Block files are read (and python files
compiled to find syntax errors), never imported or executed.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
import jinja2.meta

from backfill.domain.block_context import TEMPLATE_NAMES
from backfill.domain.errors import PipelineFileError, ValidationError
from backfill.domain.model import BlockType
from backfill.domain.notifications import parse_webhooks
from backfill.domain.pipeline import Block, PipelineDefinition, check_dag
from backfill.pipelines.connections import (
    MissingEnvVar,
    describe_value,
    expand_env,
    load_connections,
    read_yaml_file,
)

__all__ = [
    "CONNECTIONS_FILE",
    "PIPELINES_DIR",
    "PIPELINE_FILE",
    "MissingEnvVar",
    "ProjectLoad",
    "expand_env",
    "load_connections",
    "load_pipeline",
    "load_project",
]

#: Hex characters of a pipeline version (a SHA-256 prefix).
VERSION_CHARS = 16
CONNECTIONS_FILE = "connections.yaml"
PIPELINES_DIR = "pipelines"
PIPELINE_FILE = "pipeline.yaml"

_UUID = re.compile(r"^[A-Za-z0-9_-]+$")

_PIPELINE_KEYS = (
    "uuid",
    "name",
    "team",
    "timezone",
    "variables",
    "retries",
    "retry_delay_seconds",
    "timeout_seconds",
    "notify",
    "blocks",
)
_BLOCK_COMMON_KEYS = ("uuid", "type", "upstream")
_BLOCK_TYPE_KEYS: dict[BlockType, tuple[str, ...]] = {
    BlockType.PYTHON: ("file",),
    BlockType.SQL: ("file", "sql", "connection"),
    BlockType.SHELL: ("command",),
}
_ALL_BLOCK_KEYS = tuple(
    dict.fromkeys(_BLOCK_COMMON_KEYS + tuple(k for keys in _BLOCK_TYPE_KEYS.values() for k in keys))
)

# Only used to check template syntax early; the engine renders with its own environment.
_JINJA = jinja2.Environment(autoescape=False)


@dataclass(frozen=True)
class ProjectLoad:
    """The outcome of reading a project directory."""

    pipelines: tuple[PipelineDefinition, ...]
    """The valid pipelines, sorted by uuid."""
    errors: tuple[PipelineFileError, ...]
    """One per invalid pipeline file / connections file (path + reason)."""
    connections: Mapping[str, str] = field(default_factory=dict)
    """Connection name -> SQLAlchemy URL, environment variables expanded."""
    rejected: Mapping[str, PipelineFileError] = field(default_factory=dict)
    """The ``pipeline.yaml`` paths (absolute) that did not load, with why (also in ``errors``)."""


# --------------------------------------------------------------------------- project


def load_project(project_dir: str | Path, *, default_team_id: int | None = None) -> ProjectLoad:
    """Load ``connections.yaml`` and every ``pipelines/<dir>/pipeline.yaml``.

    Never raises for a bad file: each one is reported in ``errors`` and the others load.
    Directories are visited in name order; when two files declare the same pipeline uuid
    the first one wins and the second is reported, naming both paths.

    If ``connections.yaml`` itself is invalid, its error is reported, ``connections`` is
    empty and SQL blocks are not checked against it (so one bad URL does not also
    reject every pipeline that uses a connection).
    """
    root = _abs(Path(project_dir))
    errors: list[PipelineFileError] = []
    if not root.is_dir():
        reason = "project directory not found" if not root.exists() else "project path is not a directory"
        return ProjectLoad(pipelines=(), errors=(PipelineFileError(str(root), reason),), connections={})

    connections: dict[str, str] = {}
    known_connections: Mapping[str, str] | None = connections
    connections_file = root / CONNECTIONS_FILE
    if connections_file.exists():
        try:
            connections = load_connections(connections_file)
            known_connections = connections
        except PipelineFileError as exc:
            errors.append(exc)
            known_connections = None

    by_uuid: dict[str, PipelineDefinition] = {}
    rejected: dict[str, PipelineFileError] = {}
    pipelines_dir = root / PIPELINES_DIR
    candidates = (
        sorted(p for p in pipelines_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        if pipelines_dir.is_dir()
        else []
    )
    for directory in candidates:
        pipeline_file = directory / PIPELINE_FILE
        if not pipeline_file.is_file():
            misnamed = directory / "pipeline.yml"
            if misnamed.is_file():
                errors.append(PipelineFileError(str(misnamed), f"pipeline files must be named {PIPELINE_FILE}"))
            continue
        try:
            pipeline = load_pipeline(pipeline_file, default_team_id=default_team_id, connections=known_connections)
        except PipelineFileError as exc:
            errors.append(exc)
            rejected[str(_abs(pipeline_file))] = exc
            continue
        first = by_uuid.get(pipeline.uuid)
        if first is not None:
            errors.append(
                PipelineFileError(
                    str(pipeline.path),
                    f"duplicate pipeline uuid {pipeline.uuid!r}: already defined in {first.path} "
                    "(this file is ignored)",
                )
            )
            continue
        by_uuid[pipeline.uuid] = pipeline

    return ProjectLoad(
        pipelines=tuple(by_uuid[u] for u in sorted(by_uuid)),
        errors=tuple(errors),
        connections=connections,
        rejected=rejected,
    )


# --------------------------------------------------------------------------- one pipeline


def load_pipeline(
    pipeline_yaml: str | Path,
    *,
    default_team_id: int | None = None,
    connections: Mapping[str, str] | None = None,
) -> PipelineDefinition:
    """Read and validate one ``pipeline.yaml`` and its block files.

    ``default_team_id`` is used when the file has no ``team``. When ``connections`` is
    given, every SQL block's ``connection`` must be one of its names; ``None`` skips that
    check. Raises PipelineFileError (path + reason) for the first problem found.
    """
    path = _abs(Path(pipeline_yaml))
    where = str(path)
    data = read_yaml_file(path, what="pipeline file")
    if data is None:
        raise PipelineFileError(where, "file is empty; expected a mapping with uuid and blocks")
    if not isinstance(data, dict):
        raise PipelineFileError(where, f"expected a mapping at the top level, got {_kind(data)}")
    _reject_unknown_keys(where, data, _PIPELINE_KEYS, "")

    uuid = _uuid(where, data.get("uuid"), "uuid")
    name = data.get("name", uuid)
    if name is None:
        name = uuid
    if not isinstance(name, str) or not name.strip():
        raise PipelineFileError(where, f"'name' must be a non-empty string, got {_kind(name)}")

    team_id = _team(where, data.get("team"), default_team_id)
    timezone = _timezone(where, data.get("timezone"))
    variables = _variables(where, data.get("variables"))
    retries = _int(where, data.get("retries"), "retries", default=0, minimum=0)
    retry_delay = _number(where, data.get("retry_delay_seconds"), "retry_delay_seconds", default=30.0)
    timeout = _timeout(where, data.get("timeout_seconds"))
    try:
        notify = parse_webhooks(data.get("notify"))
    except ValidationError as exc:
        raise PipelineFileError(where, exc.message) from None

    raw_blocks = data.get("blocks")
    if raw_blocks is None:
        raise PipelineFileError(where, "missing required key 'blocks' (a non-empty list of blocks)")
    if not isinstance(raw_blocks, list) or not raw_blocks:
        raise PipelineFileError(where, f"'blocks' must be a non-empty list, got {_kind(raw_blocks)}")
    blocks = tuple(_block(path, index, raw, connections) for index, raw in enumerate(raw_blocks, start=1))
    try:
        check_dag(blocks)
    except ValidationError as exc:
        raise PipelineFileError(where, f"blocks: {exc.message}") from None

    return PipelineDefinition(
        uuid=uuid,
        name=name.strip(),
        blocks=blocks,
        team_id=team_id,
        timezone=timezone,
        variables=variables,
        retries=retries,
        retry_delay_seconds=retry_delay,
        timeout_seconds=timeout,
        path=where,
        notify=notify,
        version=pipeline_version(path, blocks),
    )


def pipeline_version(pipeline_yaml: Path, blocks: tuple[Block, ...]) -> str:
    """The content digest of ``pipeline.yaml`` and what its blocks run (their files' text):
    any edit that changes what runs changes it."""
    digest = hashlib.sha256()
    try:
        digest.update(pipeline_yaml.read_bytes())
    except OSError:
        pass
    for block in blocks:
        digest.update(b"\0" + block.uuid.encode() + b"\0" + block.source.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:VERSION_CHARS]


def _block(pipeline_yaml: Path, index: int, raw: object, connections: Mapping[str, str] | None) -> Block:
    where = str(pipeline_yaml)
    if not isinstance(raw, dict):
        raise PipelineFileError(where, f"block #{index}: expected a mapping, got {_kind(raw)}")
    if "uuid" not in raw or raw["uuid"] is None:
        raise PipelineFileError(where, f"block #{index}: missing required key 'uuid'")
    uuid = _uuid(where, raw["uuid"], f"block #{index} uuid")
    label = f"block {uuid!r}"
    _reject_unknown_keys(where, raw, _ALL_BLOCK_KEYS, f"{label}: ")

    raw_type = raw.get("type")
    if raw_type is None:
        raise PipelineFileError(where, f"{label}: missing required key 'type' (python, sql or shell)")
    try:
        block_type = BlockType(raw_type) if isinstance(raw_type, str) else None
    except ValueError:
        block_type = None
    if block_type is None:
        raise PipelineFileError(where, f"{label}: unknown type {raw_type!r} (expected one of: python, sql, shell)")
    allowed = _BLOCK_COMMON_KEYS + _BLOCK_TYPE_KEYS[block_type]
    for key in raw:
        if key not in allowed:
            raise PipelineFileError(where, f"{label}: key {key!r} is not allowed for a {block_type} block")

    upstream = _upstream(where, label, raw.get("upstream"))
    connection: str | None = None
    block_path: str | None = None

    if block_type is BlockType.PYTHON:
        if raw.get("file") is None:
            raise PipelineFileError(where, f"{label}: a python block needs 'file' (a .py file with run(context))")
        file = _block_file(pipeline_yaml, label, raw["file"])
        source = _read_block_file(pipeline_yaml, label, file)
        _check_python(label, file, source)
        block_path = str(file)
    elif block_type is BlockType.SQL:
        has_file, has_sql = raw.get("file") is not None, raw.get("sql") is not None
        if has_file == has_sql:
            raise PipelineFileError(
                where, f"{label}: a sql block needs exactly one of 'file' or 'sql' (inline statement)"
            )
        if has_file:
            file = _block_file(pipeline_yaml, label, raw["file"])
            source = _read_block_file(pipeline_yaml, label, file)
            block_path = str(file)
            _check_template(str(file), label, source)
        else:
            source = raw["sql"]
            if not isinstance(source, str):
                raise PipelineFileError(where, f"{label}: 'sql' must be a string, got {_kind(source)}")
            _check_template(where, label, source, what="'sql'")
        if not source.strip():
            raise PipelineFileError(block_path or where, f"{label}: the SQL statement is empty")
        connection = _connection(where, label, raw.get("connection"), connections)
    else:
        command = raw.get("command")
        if command is None:
            raise PipelineFileError(where, f"{label}: a shell block needs 'command'")
        if not isinstance(command, str) or not command.strip():
            raise PipelineFileError(where, f"{label}: 'command' must be a non-empty string, got {_kind(command)}")
        _check_template(where, label, command, what="'command'")
        source = command

    return Block(
        uuid=uuid,
        type=block_type,
        source=source,
        upstream=upstream,
        connection=connection,
        path=block_path,
    )


# --------------------------------------------------------------------------- field checks


def _reject_unknown_keys(where: str, data: dict[Any, Any], known: tuple[str, ...], prefix: str) -> None:
    for key in data:
        if key in known:
            continue
        hint = ""
        if isinstance(key, str):
            close = difflib.get_close_matches(key, known, n=1)
            if close:
                hint = f" (did you mean {close[0]!r}?)"
        raise PipelineFileError(where, f"{prefix}unknown key {key!r}{hint}; allowed keys: {', '.join(known)}")


def _uuid(where: str, value: object, what: str) -> str:
    if value is None:
        raise PipelineFileError(where, f"missing required key '{what}'")
    if not isinstance(value, str) or not _UUID.match(value):
        shown = f"{type(value).__name__} {value!r}" if not isinstance(value, str) else repr(value)
        raise PipelineFileError(
            where, f"{what} must be a string of letters, digits, '_' or '-' (got {shown}; quote numbers)"
        )
    return value


def _team(where: str, value: object, default: int | None) -> int | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PipelineFileError(where, f"'team' must be a positive integer team id, got {_kind(value)}")
    return value


def _timezone(where: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise PipelineFileError(where, f"'timezone' must be an IANA time zone name, got {_kind(value)}")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise PipelineFileError(
            where, f"'timezone': unknown time zone {value!r} (expected an IANA name such as 'Europe/Berlin')"
        ) from None
    return value


def _variables(where: str, value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PipelineFileError(where, f"'variables' must be a mapping, got {_kind(value)}")
    for key in value:
        if not isinstance(key, str) or not key:
            raise PipelineFileError(where, f"'variables': names must be strings, got {_kind(key)}")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PipelineFileError(where, f"'variables' must be JSON-compatible values ({exc})") from None
    return dict(value)


def _int(where: str, value: object, key: str, *, default: int, minimum: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PipelineFileError(where, f"{key!r} must be an integer >= {minimum}, got {_kind(value)}")
    return value


def _number(where: str, value: object, key: str, *, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise PipelineFileError(where, f"{key!r} must be a number >= 0, got {_kind(value)}")
    return float(value)


def _timeout(where: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise PipelineFileError(
            where, f"'timeout_seconds' must be a number > 0 (or null for no timeout), got {_kind(value)}"
        )
    return float(value)


def _upstream(where: str, label: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise PipelineFileError(where, f"{label}: 'upstream' must be a list of block uuids, got {_kind(value)}")
    for item in value:
        if not isinstance(item, str) or not item:
            raise PipelineFileError(where, f"{label}: 'upstream' entries must be block uuids, got {_kind(item)}")
    return tuple(dict.fromkeys(value))


def _connection(where: str, label: str, value: object, connections: Mapping[str, str] | None) -> str:
    if value is None:
        raise PipelineFileError(where, f"{label}: a sql block needs 'connection' (a name from {CONNECTIONS_FILE})")
    if not isinstance(value, str) or not value:
        raise PipelineFileError(where, f"{label}: 'connection' must be a connection name, got {_kind(value)}")
    if connections is not None and value not in connections:
        known = ", ".join(sorted(connections)) or "none defined"
        raise PipelineFileError(
            where, f"{label}: unknown connection {value!r}: not in {CONNECTIONS_FILE} (known: {known})"
        )
    return value


# --------------------------------------------------------------------------- block files


def _block_file(pipeline_yaml: Path, label: str, value: object) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise PipelineFileError(
            str(pipeline_yaml),
            f"{label}: 'file' must be a path relative to the pipeline directory, got {_kind(value)}",
        )
    return Path(os.path.normpath(pipeline_yaml.parent / value))


def _read_block_file(pipeline_yaml: Path, label: str, file: Path) -> str:
    referenced = f"(referenced by {label} in {pipeline_yaml})"
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PipelineFileError(str(file), f"block file not found {referenced}") from None
    except IsADirectoryError:
        raise PipelineFileError(str(file), f"block file is a directory {referenced}") from None
    except UnicodeDecodeError as exc:
        raise PipelineFileError(str(file), f"block file is not valid UTF-8 ({exc.reason}) {referenced}") from None
    except OSError as exc:
        raise PipelineFileError(str(file), f"cannot read block file: {exc.strerror or exc} {referenced}") from None


def _check_python(label: str, file: Path, source: str) -> None:
    """Compile (never run) the block's source and require a top-level ``run``."""
    try:
        compile(source, str(file), "exec", dont_inherit=True)
        tree = ast.parse(source, filename=str(file))
    except SyntaxError as exc:
        line = f" at line {exc.lineno}" if exc.lineno else ""
        raise PipelineFileError(str(file), f"{label}: python syntax error{line}: {exc.msg}") from None
    except ValueError as exc:  # e.g. null bytes in the source
        raise PipelineFileError(str(file), f"{label}: cannot compile python source: {exc}") from None
    if not _binds_run(tree):
        raise PipelineFileError(str(file), f"{label}: the python file must define run(context) at top level")


def _binds_run(tree: ast.Module) -> bool:
    return _binds_run_in(tree.body)


def _binds_run_in(statements: list[ast.stmt]) -> bool:
    for node in statements:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name == "run":
            return True
        if isinstance(node, ast.Import | ast.ImportFrom) and any(
            (alias.asname or alias.name) == "run" for alias in node.names
        ):
            return True
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == "run" for t in targets):
            return True
        nested: list[ast.stmt] = []
        if isinstance(node, ast.If):  # run defined under a guard counts
            nested = node.body + node.orelse
        elif isinstance(node, ast.Try):
            nested = node.body + node.orelse + node.finalbody
            for handler in node.handlers:
                nested += handler.body
        if nested and _binds_run_in(nested):
            return True
    return False


def _check_template(where: str, label: str, source: str, what: str = "the template") -> None:
    """The template parses and uses only the names a block's template gets."""
    try:
        tree = _JINJA.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise PipelineFileError(
            where, f"{label}: Jinja template syntax error in {what} at line {exc.lineno}: {exc.message}"
        ) from None
    unknown = sorted(jinja2.meta.find_undeclared_variables(tree) - set(TEMPLATE_NAMES) - set(_JINJA.globals))
    if unknown:
        names = ", ".join(repr(n) for n in unknown)
        raise PipelineFileError(
            where,
            f"{label}: unknown template variable{'s' if len(unknown) > 1 else ''} {names} in {what}; "
            f"valid names: {', '.join(TEMPLATE_NAMES)}",
        )


# --------------------------------------------------------------------------- helpers


def _abs(path: Path) -> Path:
    """Absolute, normalized, symlinks kept (paths in errors match what the user typed)."""
    return Path(os.path.normpath(path.expanduser().absolute()))


_kind = describe_value
