"""Prometheus metric objects shared by the engine and the HTTP layer.

Kept free of FastAPI imports so the worker can feed ``RUN_DURATION`` without pulling in
the web stack. Gauges derived from the database (runs by status, queue depth) are set
at scrape time by ``backfill.api.metrics``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Observed by the worker when an attempt ends (status: completed / failed / queued for a retry).
RUN_DURATION = Histogram(
    "backfill_run_duration_seconds",
    "Duration of interval run attempts.",
    ["status"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, float("inf")),
)

# Observed by the API middleware for every request; ``route`` is the route template
# (``/v1/teams/{team_id}/backfills/{backfill_id}``), never the raw path, to bound cardinality.
HTTP_LATENCY = Histogram(
    "backfill_http_request_duration_seconds",
    "Latency of HTTP requests.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, float("inf")),
)

HTTP_RATE_LIMITED = Counter("backfill_http_rate_limited_total", "Requests refused with 429 by the rate limiter.")

RUNS_BY_STATUS = Gauge("backfill_interval_runs", "Interval runs by status (from the backfill counters).", ["status"])

BACKFILLS_BY_STATUS = Gauge("backfill_backfills", "Backfills by status.", ["status"])

QUEUE_DEPTH = Gauge(
    "backfill_queue_depth",
    "Interval runs waiting to run in scheduled or running backfills (queued or not yet materialized).",
)
