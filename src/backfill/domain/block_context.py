"""The names a block sees: the keys of the python ``context`` and the Jinja2 variables of
sql and shell templates (RELIABILITY.md). The one list the runtime context (``engine.blocks``)
is built from and ``backfill pipelines validate`` checks templates against."""

from __future__ import annotations

#: Keys of the context a python block's ``run(context)`` receives (``context.ds`` or
#: ``context["ds"]``).
CONTEXT_KEYS: tuple[str, ...] = (
    "interval_start",
    "interval_end",
    "data_date",
    "ds",
    "hr",
    "execution_date",
    "interval_seconds",
    "timezone",
    "variables",
    "backfill_id",
    "run_id",
    "attempt",
    "logger",
    "upstream",
    "connections",
    "block_uuid",
    "block_path",
    "pipeline_uuid",
)

#: Context datetimes also offered to templates as ISO 8601 strings, ``<name>_iso``.
ISO_TEMPLATE_KEYS: tuple[str, ...] = ("interval_start", "interval_end", "data_date", "execution_date")

#: Every variable a sql or shell template may use.
TEMPLATE_NAMES: tuple[str, ...] = (
    *(k for k in CONTEXT_KEYS if k != "logger"),
    *(f"{k}_iso" for k in ISO_TEMPLATE_KEYS),
    "ds_nodash",
)
