"""What a block sees (its context) and the python / sql / shell block runners (RELIABILITY.md).

Everything here runs inside an executor child process (see ``executor.py``), which
keeps its state between runs: compiled python code, compiled Jinja2 templates and
SQLAlchemy engines are cached per process so that a reused child pays for them once.
The functions are also usable in-process (the tests call them directly).
"""

from __future__ import annotations

import builtins
import hashlib
import linecache
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import CodeType
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import sqlalchemy as sa

from backfill.domain.block_context import CONTEXT_KEYS, ISO_TEMPLATE_KEYS, TEMPLATE_NAMES
from backfill.domain.model import BlockType
from backfill.domain.pipeline import Block

__all__ = [
    "BlockContext",
    "BlockError",
    "render_template",
    "run_block",
    "run_python_block",
    "run_shell_block",
    "run_sql_block",
    "split_sql",
]

#: Rows of the last SELECT a SQL block returns in ``data``.
SQL_DATA_ROWS = 100
#: Rows of the last SELECT shown in a SQL block's summary (log and run detail).
SQL_SUMMARY_ROWS = 5
#: Characters of one value in that summary.
SQL_SUMMARY_VALUE_CHARS = 60
#: Entries kept in each per-process cache before it is cleared.
_CACHE_LIMIT = 512


class BlockError(Exception):
    """An expected block failure whose message says everything (no traceback is shown)."""


# --------------------------------------------------------------------------- context
# The names (CONTEXT_KEYS, TEMPLATE_NAMES) are listed once, in domain.block_context.


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class BlockContext:
    """The values a block runs with. ``context.ds == context["ds"]``.

    ``interval_start`` / ``interval_end`` (exclusive) are aware UTC datetimes;
    ``ds`` (``YYYY-MM-DD``) and ``hr`` (``HH``) are the local date and hour of
    ``interval_start`` in the run's ``timezone``.
    """

    interval_start: datetime
    interval_end: datetime
    data_date: datetime
    execution_date: datetime
    ds: str
    hr: str
    interval_seconds: int
    timezone: str
    variables: dict[str, Any]
    backfill_id: int
    run_id: int
    attempt: int
    _logger: logging.Logger | None
    upstream: dict[str, Any]
    connections: Mapping[str, str]
    block_uuid: str
    block_path: str | None
    pipeline_uuid: str

    def __init__(
        self,
        *,
        interval_start: datetime,
        interval_end: datetime,
        timezone: str = "UTC",
        variables: Mapping[str, Any] | None = None,
        backfill_id: int = 0,
        run_id: int = 0,
        attempt: int = 1,
        upstream: Mapping[str, Any] | None = None,
        connections: Mapping[str, str] | None = None,
        block_uuid: str = "",
        block_path: str | None = None,
        pipeline_uuid: str = "",
        logger: logging.Logger | None = None,
    ) -> None:
        start = _as_utc(interval_start)
        local = start.astimezone(ZoneInfo(timezone or "UTC"))
        self.interval_start = start
        self.interval_end = _as_utc(interval_end)
        self.data_date = start
        self.execution_date = start
        self.ds = f"{local.year:04d}-{local.month:02d}-{local.day:02d}"
        self.hr = f"{local.hour:02d}"
        self.interval_seconds = int((self.interval_end - start).total_seconds())
        self.timezone = timezone or "UTC"
        self.variables = dict(variables or {})
        self.backfill_id = backfill_id
        self.run_id = run_id
        self.attempt = attempt
        self.upstream = dict(upstream or {})
        self.connections = connections if connections is not None else {}
        self.block_uuid = block_uuid
        self.block_path = block_path
        self.pipeline_uuid = pipeline_uuid
        self._logger = logger

    @property
    def logger(self) -> logging.Logger:
        """A logger writing to stderr (the run's log), created on first use."""
        if self._logger is None:
            self._logger = block_logger(self.pipeline_uuid, self.block_uuid)
        return self._logger

    # Mapping-style access -------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key in CONTEXT_KEYS:
            return getattr(self, key)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key in CONTEXT_KEYS

    def __iter__(self) -> Iterator[str]:
        return iter(CONTEXT_KEYS)

    def keys(self) -> tuple[str, ...]:
        return CONTEXT_KEYS

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in CONTEXT_KEYS else default

    def __repr__(self) -> str:
        return (
            f"BlockContext(pipeline={self.pipeline_uuid!r}, block={self.block_uuid!r}, "
            f"ds={self.ds!r}, hr={self.hr!r}, run_id={self.run_id}, attempt={self.attempt})"
        )

    def template_vars(self) -> dict[str, Any]:
        """Jinja2 variables: every context value (datetimes also as ISO strings)."""
        values: dict[str, Any] = {key: getattr(self, key) for key in CONTEXT_KEYS if key != "logger"}
        for key in ISO_TEMPLATE_KEYS:
            values[f"{key}_iso"] = getattr(self, key).isoformat()
        values["ds_nodash"] = self.ds.replace("-", "")
        return values


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at emit time (fd 2 is the run's log)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr
            if stream is not None:
                stream.write(self.format(record) + "\n")
                stream.flush()
        except Exception:
            self.handleError(record)


_ROOT_LOGGER = "backfill.block"


def block_logger(pipeline_uuid: str, block_uuid: str) -> logging.Logger:
    """The logger a block gets; it writes to stderr, so its lines land in the run's log."""
    root = logging.getLogger(_ROOT_LOGGER)
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(name)s] %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False
    name = ".".join(part for part in (pipeline_uuid, block_uuid) if part)
    return root.getChild(name) if name else root


# --------------------------------------------------------------------------- python

_code_cache: dict[tuple[str, str, str], CodeType] = {}


def _source_digest(source: str) -> str:
    return hashlib.blake2b(source.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _block_filename(block: Block) -> str:
    return block.path or f"<block {block.uuid}>"


def _compiled(pipeline_uuid: str, block: Block) -> CodeType:
    key = (pipeline_uuid, block.uuid, _source_digest(block.source))
    code = _code_cache.get(key)
    if code is None:
        filename = _block_filename(block)
        code = compile(block.source, filename, "exec")
        # Tracebacks show the source that ran, even if the file changed or is inline.
        lines = block.source.splitlines(keepends=True)
        linecache.cache[filename] = (len(block.source), None, lines, filename)
        if len(_code_cache) >= _CACHE_LIMIT:
            _code_cache.clear()
        _code_cache[key] = code
    return code


def run_python_block(block: Block, context: BlockContext) -> Any:
    """Execute the block's module code in a fresh namespace and return ``run(context)``."""
    code = _compiled(context.pipeline_uuid, block)
    namespace: dict[str, Any] = {
        "__name__": f"backfill_block_{block.uuid}",
        "__builtins__": builtins,
    }
    if block.path is not None:
        namespace["__file__"] = block.path
    exec(code, namespace)
    fn = namespace.get("run")
    if not callable(fn):
        raise BlockError(f"python block {block.uuid!r} defines no run(context) function")
    return fn(context)


# --------------------------------------------------------------------------- templates

_jinja_env: jinja2.Environment | None = None
_template_cache: dict[tuple[str, str, str], jinja2.Template] = {}


def _env() -> jinja2.Environment:
    global _jinja_env
    if _jinja_env is None:
        _jinja_env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
    return _jinja_env


def render_template(block: Block, context: BlockContext) -> str:
    """Render the block's source with Jinja2; an undefined variable is an error naming it."""
    key = (context.pipeline_uuid, block.uuid, _source_digest(block.source))
    template = _template_cache.get(key)
    if template is None:
        try:
            template = _env().from_string(block.source)
        except jinja2.TemplateSyntaxError as exc:
            raise BlockError(f"template syntax error (line {exc.lineno}): {exc.message}") from None
        if len(_template_cache) >= _CACHE_LIMIT:
            _template_cache.clear()
        _template_cache[key] = template
    try:
        return template.render(context.template_vars())
    except jinja2.UndefinedError as exc:
        raise BlockError(f"template error: {exc.message} (valid names: {', '.join(TEMPLATE_NAMES)})") from None


# --------------------------------------------------------------------------- sql

_engines: dict[str, sa.Engine] = {}


def _engine(url: str) -> sa.Engine:
    engine = _engines.get(url)
    if engine is None:
        engine = sa.create_engine(url, pool_pre_ping=True)
        _engines[url] = engine
    return engine


def split_sql(sql: str) -> list[str]:
    """Split on ``;`` outside quotes, comments and ``$tag$`` blocks; drop empty statements."""
    statements: list[str] = []
    start = 0
    i = 0
    n = len(sql)
    meaningful = False  # the current statement has something besides blanks and comments
    while i < n:
        c = sql[i]
        if c in ("'", '"', "`"):
            j = i + 1
            while j < n:
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:  # doubled quote escapes itself
                        j += 2
                        continue
                    break
                j += 1
            i = j + 1
            meaningful = True
        elif c == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif c == "/" and sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == "$":
            j = sql.find("$", i + 1)
            tag = sql[i : j + 1] if j > 0 else ""
            if tag and (tag == "$$" or tag[1:-1].replace("_", "a").isalnum()) and not tag[1].isdigit():
                end = sql.find(tag, j + 1)
                i = n if end < 0 else end + len(tag)
            else:
                i += 1
            meaningful = True
        elif c == ";":
            if meaningful:
                statements.append(sql[start:i].strip())
            start = i + 1
            meaningful = False
            i += 1
        else:
            if not c.isspace():
                meaningful = True
            i += 1
    if meaningful:
        statements.append(sql[start:].strip())
    return statements


def run_sql_block(block: Block, context: BlockContext) -> dict[str, Any]:
    """Render the SQL and run its statements in order, in one transaction.

    Returns ``{"rows", "columns", "data"}`` for the last statement: the number of rows of
    a SELECT (``data`` holds its first 100 rows as lists) or the rowcount of DML.
    """
    if not block.connection:
        raise BlockError(f"sql block {block.uuid!r} names no connection")
    url = context.connections.get(block.connection)
    if url is None:
        known = ", ".join(sorted(context.connections)) or "none"
        raise BlockError(f"unknown connection {block.connection!r} (known: {known})")
    statements = split_sql(render_template(block, context))
    rows = 0
    columns: list[str] = []
    data: list[list[Any]] = []
    if not statements:
        empty: dict[str, Any] = {"rows": 0, "columns": columns, "data": data, "statements": 0}
        _print_summary(empty)
        return empty
    with _engine(url).begin() as conn:
        for statement in statements:
            # no_parameters: the DBAPI gets the text alone, so "%" and ":x" mean nothing special
            result = conn.exec_driver_sql(statement, execution_options={"no_parameters": True})
            if result.returns_rows:
                columns = list(result.keys())
                data = []
                rows = 0
                for rows, row in enumerate(result, 1):
                    if rows <= SQL_DATA_ROWS:
                        data.append(list(row))
            else:
                rows = max(result.rowcount, 0)
                columns = []
                data = []
                result.close()
    value = {"rows": rows, "columns": columns, "data": data, "statements": len(statements)}
    _print_summary(value)
    return value


def _cell(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= SQL_SUMMARY_VALUE_CHARS else text[: SQL_SUMMARY_VALUE_CHARS - 1] + "…"


def sql_summary(value: Mapping[str, Any]) -> str:
    """What a sql block did, in a few lines: statements, the rows of the last one (a
    SELECT's count, or DML's rowcount) and, for a SELECT, its first rows."""
    statements = int(value.get("statements") or 0)
    rows = int(value.get("rows") or 0)
    columns = list(value.get("columns") or [])
    data = list(value.get("data") or [])
    plural = "s" if statements != 1 else ""
    if not columns:
        return f"sql: {statements} statement{plural}; the last affected {rows} row{'s' if rows != 1 else ''}"
    lines = [
        f"sql: {statements} statement{plural}; the last returned {rows} row{'s' if rows != 1 else ''}"
        f" ({', '.join(map(str, columns))})"
    ]
    lines += ["  " + " | ".join(_cell(v) for v in row) for row in data[:SQL_SUMMARY_ROWS]]
    if rows > SQL_SUMMARY_ROWS:
        lines.append(f"  … {rows - SQL_SUMMARY_ROWS} more")
    return "\n".join(lines)


def _print_summary(value: Mapping[str, Any]) -> None:
    """Into the run's log (stdout), after what the statements printed."""
    stream = sys.stdout
    if stream is not None:
        stream.write(sql_summary(value) + "\n")
        stream.flush()


# --------------------------------------------------------------------------- shell


def run_shell_block(block: Block, context: BlockContext) -> dict[str, Any]:
    """Render the command and run it with ``/bin/sh -c`` in this process's process group.

    Its stdout/stderr are this process's fds 1 and 2 (the run's log).
    """
    command = render_template(block, context)
    env = dict(os.environ)
    env.update(
        {
            "BACKFILL_DS": context.ds,
            "BACKFILL_HR": context.hr,
            "BACKFILL_INTERVAL_START": context.interval_start.isoformat(),
            "BACKFILL_INTERVAL_END": context.interval_end.isoformat(),
            "BACKFILL_RUN_ID": str(context.run_id),
            "BACKFILL_ATTEMPT": str(context.attempt),
            "BACKFILL_BACKFILL_ID": str(context.backfill_id),
            "BACKFILL_PIPELINE_UUID": context.pipeline_uuid,
            "BACKFILL_BLOCK_UUID": context.block_uuid,
        }
    )
    for stream in (sys.stdout, sys.stderr):  # keep the order of python and shell output
        if stream is not None:
            stream.flush()
    proc = subprocess.run(["/bin/sh", "-c", command], env=env, stdin=subprocess.DEVNULL, check=False)
    if proc.returncode < 0:
        raise BlockError(f"command killed by signal {-proc.returncode}")
    if proc.returncode != 0:
        raise BlockError(f"command exited with status {proc.returncode}")
    return {"exit_code": 0}


# --------------------------------------------------------------------------- dispatch


def run_block(block: Block, context: BlockContext) -> Any:
    """Run one block of any type and return its value."""
    if block.type == BlockType.PYTHON:
        return run_python_block(block, context)
    if block.type == BlockType.SQL:
        return run_sql_block(block, context)
    if block.type == BlockType.SHELL:
        return run_shell_block(block, context)
    raise BlockError(f"unknown block type {block.type!r}")
