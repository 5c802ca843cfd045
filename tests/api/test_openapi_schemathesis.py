"""Property-based conformance of the team API with its own /openapi.json (schemathesis 4).

Every operation gets generated requests (bounded: a few seconds in all) sent in-process to
the ASGI app with a valid bearer token of an owner; each response must not be a 5xx and
must conform to the declared status codes, content type, headers and schema.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import World

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 15


def run_checks(strategy: Any, statuses: set[int]) -> None:
    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case[Any]) -> None:
        response = case.call()
        statuses.add(response.status_code)
        assert response.status_code < 500, response.text
        assert response.headers.get("x-request-id")
        assert response.headers.get("x-ratelimit-limit")
        case.validate_response(response, checks=CHECKS)

    check()


def test_team_api_conforms_to_its_openapi_document(app: FastAPI, world: World) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [r.ok() for r in schema.get_all_operations() if isinstance(r, Ok)]
    team_ops = [op for op in operations if op.path.startswith("/v1/")]
    assert len(team_ops) == 16
    headers = world.auth("owner")
    seen_statuses: dict[str, set[int]] = {}
    started = time.monotonic()
    for op in [*team_ops, *(op for op in operations if op.path in ("/healthz", "/readyz"))]:
        # Our team, so generated requests get past authorization and reach the handlers.
        path_parameters = {"team_id": world.team_id} if "{team_id}" in op.path else None
        strategy = op.as_strategy(headers=headers, path_parameters=path_parameters)
        statuses = seen_statuses.setdefault(f"{op.method.upper()} {op.path}", set())

        run_checks(strategy, statuses)
    elapsed = time.monotonic() - started
    assert elapsed < 60, f"schemathesis took {elapsed:.1f}s"
    # The generated data reached the handlers (not only authorization failures).
    assert any(200 in s for s in seen_statuses.values()), seen_statuses
    assert all(403 not in s and 401 not in s for s in seen_statuses.values()), seen_statuses


@pytest.mark.parametrize("path", ["/openapi.json"])
def test_openapi_document_is_served_without_auth(app: FastAPI, path: str) -> None:
    with TestClient(app) as client:
        served = client.get(path)
    assert served.status_code == 200
    schema = served.json()
    assert schema["components"]["securitySchemes"]["BearerToken"]["scheme"] == "bearer"
    envelope = schema["components"]["schemas"]["ErrorEnvelope"]
    assert set(envelope["properties"]) == {"meta", "error"}
