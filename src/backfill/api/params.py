"""Path and query parameter types both HTTP dialects declare alike (same name, same bounds,
same OpenAPI). A dialect-specific name (``_limit``, ``transfer_id``) stays in its module."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

MAX_ID = 2**63 - 1  # the largest id a column holds (BIGINT)
MAX_OFFSET = 1_000_000_000  # the largest paging offset either dialect takes

BACKFILL_ID = "ID of the backfill."
BackfillId = Annotated[int, Path(ge=1, le=MAX_ID, description=BACKFILL_ID)]
BackfillIdQuery = Annotated[int, Query(ge=1, le=MAX_ID, description=BACKFILL_ID)]  # ?backfill_id=
