"""Request ids (SPEC §4): a valid incoming ``X-Request-ID`` (8–64 chars of
``[A-Za-z0-9_-]``) is kept, else one is generated; the request-context middleware puts
it in ``request.state.request_id`` and in the ``X-Request-ID`` header of every response."""

from __future__ import annotations

import base64
import random
import re

from fastapi import Request

REQUEST_ID_RE = re.compile(r"[A-Za-z0-9_-]{8,64}")

_ids = random.Random()  # request ids are labels, not secrets: no system call per request


def new_request_id() -> str:
    """32 characters of ``[A-Za-z0-9_-]`` (192 random bits)."""
    return base64.urlsafe_b64encode(_ids.getrandbits(192).to_bytes(24, "big")).decode()


def request_id_of(request: Request) -> str:
    rid = getattr(request.state, "request_id", None)
    return rid if isinstance(rid, str) else new_request_id()


def valid_or_new(incoming: bytes | None) -> str:
    """The incoming id when it is valid, else a new one."""
    rid = incoming.decode("latin-1") if incoming else ""
    return rid if REQUEST_ID_RE.fullmatch(rid) else new_request_id()
