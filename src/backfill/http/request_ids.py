"""Request ids: set by the request-context middleware, read by every route and renderer."""

from __future__ import annotations

import base64
import random
import re

from starlette.requests import Request

# A valid incoming ``X-Request-ID`` is kept as is.
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9_-]{8,64}")

_ids = random.Random()  # request ids are labels, not secrets: no system call per request


def new_request_id() -> str:
    """32 characters of ``[A-Za-z0-9_-]`` (192 random bits)."""
    return base64.urlsafe_b64encode(_ids.getrandbits(192).to_bytes(24, "big")).decode()


def request_id_of(request: Request) -> str:
    """The id of this request (``request.state.request_id``), or a new one outside the middleware."""
    rid = getattr(request.state, "request_id", None)
    return rid if isinstance(rid, str) else new_request_id()
