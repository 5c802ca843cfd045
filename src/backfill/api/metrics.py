"""``GET /metrics``: Prometheus text exposition.

Gauges derived from the database (runs by status, backfills by status, queue depth) are
refreshed from the backfill counters at scrape time — one cheap aggregate over the
backfills table, never a scan of the runs. Histograms (run duration, HTTP latency) are
fed where the events happen (worker, middleware); see ``backfill.metrics``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from backfill.domain.model import BackfillStatus
from backfill.metrics import BACKFILLS_BY_STATUS, QUEUE_DEPTH, RUNS_BY_STATUS
from backfill.services import runs
from backfill.store.db import Database

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    db: Database = request.app.state.db
    totals = runs.status_totals(db)
    for status, count in totals.runs.items():
        RUNS_BY_STATUS.labels(status).set(count)
    for status in BackfillStatus:
        BACKFILLS_BY_STATUS.labels(status.value).set(totals.backfills.get(status.value, 0))
    QUEUE_DEPTH.set(totals.queue_depth)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
