"""extract: read the orders of the interval from the bundled CSV.

Returns ``{"orders": [...], "rows": n, "days": [...]}``. ``days`` are the UTC dates the
interval touches; the orders are those of those whole days, so ``load`` can replace
each day completely. For a daily UTC interval that is exactly
``interval_start <= ordered_at < interval_end``; for shorter or non-aligned intervals
(hourly, daily in another time zone) whole days are re-read, which keeps ``load``
correct and idempotent.
"""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any


def _get(context: Any, key: str, default: Any = None) -> Any:
    """Read a context value by attribute or by key (the context supports both)."""
    try:
        return getattr(context, key)
    except (AttributeError, KeyError):
        pass
    try:
        return context[key]
    except (KeyError, TypeError, IndexError):
        return default


def _log(context: Any, message: str) -> None:
    logger = _get(context, "logger")
    if logger is not None:
        logger.info(message)
    else:
        print(message)


def _utc(value: Any) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def orders_csv(context: Any) -> Path:
    """The dataset: ``variables.data_dir`` (relative to the project) / ``orders_file``."""
    variables = _get(context, "variables") or {}
    data_dir = Path(str(variables.get("data_dir") or "data")).expanduser()
    if not data_dir.is_absolute():
        block_path = _get(context, "block_path") or globals().get("__file__")
        if not block_path:
            raise RuntimeError("cannot locate the data directory: set variables.data_dir to an absolute path")
        # <project>/pipelines/daily_sales/extract.py -> <project>
        data_dir = Path(block_path).resolve().parent.parent.parent / data_dir
    return data_dir / str(variables.get("orders_file") or "orders.csv")


def covered_days(start: datetime, end: datetime) -> list[date]:
    """The UTC dates of [start, end)."""
    first, last = start.date(), (end - timedelta(microseconds=1)).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)] if end > start else []


def run(context: Any) -> dict[str, Any]:
    start = _utc(_get(context, "interval_start"))
    end = _utc(_get(context, "interval_end"))
    days = covered_days(start, end)
    if not days:
        raise ValueError(f"empty interval [{start.isoformat()}, {end.isoformat()})")
    window_start = datetime.combine(days[0], datetime.min.time(), tzinfo=UTC)
    window_end = datetime.combine(days[-1] + timedelta(days=1), datetime.min.time(), tzinfo=UTC)

    path = orders_csv(context)
    orders: list[dict[str, Any]] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            ordered_at = _utc(row["ordered_at"])
            if window_start <= ordered_at < window_end:
                orders.append(
                    {
                        "order_id": row["order_id"],
                        "ordered_at": row["ordered_at"],
                        "store": row["store"],
                        "amount": float(row["amount"]),
                    }
                )

    _log(
        context,
        f"extract: {len(orders)} orders from {path.name} for "
        f"{window_start:%Y-%m-%d %H:%M} -> {window_end:%Y-%m-%d %H:%M} UTC",
    )
    return {"orders": orders, "rows": len(orders), "days": [d.isoformat() for d in days]}
