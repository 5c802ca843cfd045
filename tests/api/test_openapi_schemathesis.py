"""Property-based conformance of both HTTP dialects with their own /openapi.json
(schemathesis 4).

Every operation gets generated requests (bounded: well under a minute in all) sent
in-process to the ASGI app with valid credentials and our own ids as path parameters.
Each response must not be a 5xx, must conform to the declared status codes, content
type, headers and schema, and — positive-data acceptance — a request the document
admits must not be refused for its shape: a 400/422 is allowed only for a rule the
document cannot state (an instant range in the wrong order, a state that forbids the
change, a block the pipeline does not have, ...), named in ``BEYOND_THE_SCHEMA``.
"""

# ruff: noqa: F811  (the papi_* fixtures are imported from pipeline_conftest_helpers and requested by name)

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from tests.api.pipeline_conftest_helpers import (  # noqa: F401  (fixtures requested by name)
    PipelineWorld,
    create_backfill,
    papi_app,
    papi_client,
    papi_world,
)

from backfill.api import pipeline_errors
from backfill.api.problems import ApiError, Problem
from backfill.domain.errors import Conflict, InvalidTransition, NotFound, ValidationError

from .conftest import World

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 15

# Fields whose 422 depends on data the document cannot know: the order and size of a
# range, the pipeline's blocks, the backfill's current state.
BEYOND_THE_SCHEMA = frozenset(
    {
        *("start", "end", "range_start", "range_end", "start_datetime", "end_datetime", "start_date", "end_date"),
        *("block_uuids", "settings.block_uuids", "block_uuid", "add_upstream_for_block_uuid"),
        *("status", "cron", "settings.cron", "run_ids", "data_dates"),
        # free-form JSON: its size, depth and NUL characters deep inside (described, not in the schema)
        "variables",
    }
)


@dataclass
class Causes:
    """The exception behind each error response, by request id (recorded in process)."""

    by_request: dict[str, BaseException | None] = field(default_factory=dict)

    def wrap(self, render: Callable[..., Any]) -> Callable[..., Any]:
        def recording(problem: Problem, request_id: str, *args: Any) -> Any:
            self.by_request[request_id] = problem.cause
            return render(problem, request_id, *args)

        return recording


def record_causes(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> Causes:
    causes = Causes()
    renderers = app.state.error_renderers
    renderers.default = causes.wrap(renderers.default)
    monkeypatch.setattr(pipeline_errors, "render_problem", causes.wrap(pipeline_errors.render_problem))
    renderers._by_prefix = [(p, causes.wrap(r)) for p, r in renderers._by_prefix]
    return causes


def _nul_inside_variables(cause: BaseException | None) -> bool:
    """The pipeline dialect's body check refused a NUL character inside ``variables``."""
    if not isinstance(cause, RequestValidationError):
        return False
    return all("variables" in e["msg"] and "NUL" in e["msg"] for e in cause.errors())


def refused_for_its_shape(cause: BaseException | None) -> bool:
    if isinstance(cause, InvalidTransition | Conflict | NotFound) or _nul_inside_variables(cause):
        return False
    return not (isinstance(cause, ValidationError | ApiError) and cause.field in BEYOND_THE_SCHEMA)


def run_checks(strategy: Any, statuses: set[int], causes: Causes) -> None:
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
        if response.status_code in (400, 422):
            cause = causes.by_request.get(response.headers["x-request-id"][0])
            if refused_for_its_shape(cause):
                # positive data refused: schemathesis' own check says what was sent
                case.validate_response(response, checks=[positive_data_acceptance])
                raise AssertionError(f"the document admits a body the server refuses: {response.text}")

    check()


def operations_of(app: FastAPI, prefix: str) -> list[Any]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return [r.ok() for r in schema.get_all_operations() if isinstance(r, Ok) and r.ok().path.startswith(prefix)]


def test_team_api_conforms_to_its_openapi_document(app: FastAPI, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    causes = record_causes(app, monkeypatch)
    team_ops = operations_of(app, "/v1/")
    assert len(team_ops) == 20
    # Revoking would sign the fuzzing token out (tests/api/test_me_tokens.py covers them).
    team_ops = [op for op in team_ops if not (op.method.upper() == "DELETE" and "token" in op.path)]
    seen_statuses: dict[str, set[int]] = {}
    started = time.monotonic()
    for op in [*team_ops, *operations_of(app, "/healthz"), *operations_of(app, "/readyz")]:
        # Our team, so generated requests get past authorization and reach the handlers.
        path_parameters = {"team_id": world.team_id} if "{team_id}" in op.path else None
        # The team's tokens need the admin scope (and team.manage).
        headers = world.auth("admin") if op.path.endswith("/tokens") else world.auth("owner")
        strategy = op.as_strategy(headers=headers, path_parameters=path_parameters)
        run_checks(strategy, seen_statuses.setdefault(f"{op.method.upper()} {op.path}", set()), causes)
    elapsed = time.monotonic() - started
    assert elapsed < 90, f"schemathesis took {elapsed:.1f}s"
    # The generated data reached the handlers (not only authorization failures).
    assert any(200 in s for s in seen_statuses.values()), seen_statuses
    assert all(403 not in s and 401 not in s for s in seen_statuses.values()), seen_statuses


def test_pipeline_api_conforms_to_its_openapi_document(
    papi_app: FastAPI, papi_client: TestClient, papi_world: PipelineWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = papi_world
    causes = record_causes(papi_app, monkeypatch)
    backfill_id = create_backfill(papi_client, w)["id"]
    api_ops = operations_of(papi_app, "/api/")
    assert len(api_ops) == 14
    seen: dict[str, set[int]] = {}
    started = time.monotonic()
    for op in api_ops:
        if op.method.upper() == "DELETE" and op.path == "/api/sessions":
            continue  # signing out would revoke the token of every later case (test_sessions.py)
        path_parameters: dict[str, Any] = {}
        if "{pipeline_uuid}" in op.path:
            path_parameters["pipeline_uuid"] = w.pipeline_uuid
        if "{backfill_id}" in op.path:
            path_parameters["backfill_id"] = backfill_id
        strategy = op.as_strategy(headers=w.headers(), path_parameters=path_parameters or None)
        run_checks(strategy, seen.setdefault(f"{op.method.upper()} {op.path}", set()), causes)
    elapsed = time.monotonic() - started
    assert elapsed < 90, f"schemathesis took {elapsed:.1f}s"
    assert any(200 in s for s in seen.values()), seen


@pytest.mark.parametrize("path", ["/openapi.json"])
def test_openapi_document_is_served_without_auth(app: FastAPI, path: str) -> None:
    with TestClient(app) as client:
        served = client.get(path)
    assert served.status_code == 200
    schema = served.json()
    assert schema["components"]["securitySchemes"]["BearerToken"]["scheme"] == "bearer"
    envelope = schema["components"]["schemas"]["ErrorEnvelope"]
    assert set(envelope["properties"]) == {"meta", "error"}


# ---- the document refuses what the server refuses ----------------------------------------------------


def body_validator(app: FastAPI, component: str) -> Any:
    document = app.openapi()
    return jsonschema_rs.validator_for({**document, "$ref": f"#/components/schemas/{component}"})


TEAM_CREATE = {"range_start": "2024-01-01", "range_end": "2024-01-31"}
PIPELINE_CREATE = {"start_datetime": "2024-01-01", "end_datetime": "2024-01-31"}


@pytest.mark.parametrize(
    ("component", "body"),
    [
        ("PipelineBackfillCreateBody", {"backfill": {**PIPELINE_CREATE, "settings": None}}),
        ("PipelineBackfillBody", {"backfill": {"settings": None}}),
        ("PipelineBackfillBody", {"backfill": {"status": None}}),
        ("PipelineBackfillCreateBody", {"backfill": {**PIPELINE_CREATE, "pipeline_uuid": "other"}}),
        ("PipelineBackfillCreateBody", {"backfill": {**PIPELINE_CREATE, "id": 5}}),
        (
            "PipelineBackfillCreateBody",
            {"backfill": {**PIPELINE_CREATE, "interval_type": "day", "settings": {"cron": "0 0 * * *"}}},
        ),
        ("PipelineBackfillBody", {"backfill": {"interval_type": "day", "settings": {"cron": "0 0 * * *"}}}),
        ("PipelineBackfillCreateBody", {"backfill": {}}),
        ("PipelineBackfillBody", {"backfill": {"settings": {"run_order": None}}}),
        ("PipelineBackfillBody", {"backfill": {"settings": {"timezone": "localtime"}}}),
        ("PipelineSessionBody", {"session": {"email": "a@b.c", "password": "p\u0000"}}),
        ("CreateBackfillAction", {**TEAM_CREATE, "cron": "0 0 * * *"}),
        ("CreateBackfillAction", {**TEAM_CREATE, "cron": "0 0 * * *", "interval_type": "day"}),
        ("CreateBackfillAction", {**TEAM_CREATE, "timezone": "Factory"}),
        ("CreateBackfillAction", {**TEAM_CREATE, "range_start": "next tuesday"}),
        ("CreateBackfillAction", {**TEAM_CREATE, "name": "n" * 201}),
        ("UpdateBackfillAction", {}),
        ("UpdateBackfillAction", {"max_active_runs": None}),
    ],
)
def test_the_document_does_not_admit_bodies_the_server_refuses(
    papi_app: FastAPI, papi_client: TestClient, papi_world: PipelineWorld, component: str, body: dict[str, Any]
) -> None:
    """Today's document admitted ``settings: null``, ``status: null``, ``pipeline_uuid``
    in a create body and ``cron`` with ``interval_type: day``, which the server refuses."""
    assert not body_validator(papi_app, component).is_valid(body)
    url = {
        "PipelineBackfillCreateBody": f"/api/pipelines/{papi_world.pipeline_uuid}/backfills",
        "CreateBackfillAction": f"/v1/teams/{papi_world.team_id}/transfers/{papi_world.pipeline_id}/backfills:dry_run",
    }.get(component)
    if url is not None:  # the server refuses it indeed
        assert papi_client.post(url, json=body, headers=papi_world.headers()).status_code == 422


@pytest.mark.parametrize(
    ("component", "body"),
    [
        ("PipelineBackfillCreateBody", {"backfill": PIPELINE_CREATE}),
        ("PipelineBackfillCreateBody", {"backfill": {**PIPELINE_CREATE, "settings": {"cron": "0 0 * * *"}}}),
        (
            "PipelineBackfillCreateBody",
            {"backfill": {**PIPELINE_CREATE, "status": "initial", "settings": {"max_active_runs": 2}}},
        ),
        ("PipelineBackfillBody", {"backfill": {"interval_type": "custom", "settings": {"cron": "0 0 * * *"}}}),
        ("PipelineBackfillBody", {"backfill": {"id": 1, "pipeline_uuid": "p", "settings": {"cron": None}}}),
        ("CreateBackfillAction", {**TEAM_CREATE, "cron": "0 0 * * *", "interval_type": "custom"}),
        ("CreateBackfillAction", {**TEAM_CREATE, "range_end": "2024-01-31T10:00:00+01:00", "timezone": "UTC"}),
        ("UpdateBackfillAction", {"max_active_runs": 3.0}),
    ],
)
def test_the_document_admits_what_the_server_accepts(papi_app: FastAPI, component: str, body: dict[str, Any]) -> None:
    validator = body_validator(papi_app, component)
    assert validator.is_valid(body), [str(e) for e in validator.iter_errors(body)]
