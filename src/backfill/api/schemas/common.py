"""Parts both HTTP dialects share: the base of request bodies, and response parts (they
render the same service results)."""

from __future__ import annotations

import types
from typing import Annotated, Any, ClassVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from backfill.api.rendering import ERROR_TEXT_LIMIT
from backfill.domain.limits import non_finite_path
from backfill.domain.timeparse import iana_zone_names

# PostgreSQL cannot store text with NUL characters: every dialect refuses them.
NO_NUL_PATTERN = "^[^\\u0000]*$"

# The shape of a date or datetime input (the document's pattern; the parser says more).
INSTANT_PATTERN = r"^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}([.,]\d{1,9})?)? ?([Zz]|[+-]\d{2}(:?\d{2})?)?)?$"

ZoneName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        description="An IANA time zone name.",
        json_schema_extra={"enum": sorted(iana_zone_names())},
        examples=["Europe/Berlin"],
    ),
]


def _bare(annotation: Any) -> Any:
    """``Annotated[X, ...]`` → ``X``."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _without_none(annotation: Any) -> Any:
    """``X | None`` → ``X`` (any other union stays as it is)."""
    annotation = _bare(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        members = [m for m in map(_bare, get_args(annotation)) if m is not type(None)]
        return members[0] if len(members) == 1 else annotation
    return annotation


def _is_int(annotation: Any) -> bool:
    """``int`` or ``int | None`` (never ``bool``, never a union with ``float``)."""
    return _without_none(annotation) is int


def _is_int_list(annotation: Any) -> bool:
    """``list[int]`` (or ``| None``)."""
    annotation = _without_none(annotation)
    return get_origin(annotation) is list and _is_int(get_args(annotation)[0])


def _integral(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _document(schema: dict[str, Any], cls: type[Any]) -> None:
    """Say in the document what every body refuses — strings with NUL characters — and
    the rules of the body that span fields (``JsonAction.schema_rules``)."""
    for prop in schema.get("properties", {}).values():
        for branch in [prop, *prop.get("anyOf", [])]:
            for node in (branch, branch.get("items", {})):
                if node.get("type") == "string" and "pattern" not in node and "enum" not in node:
                    node["pattern"] = NO_NUL_PATTERN
    schema.update(getattr(cls, "schema_rules", {}))


def cron_needs_custom(container: str | None = None, *, implied: bool = False) -> dict[str, Any]:
    """JSON Schema: a (non-null) ``cron`` only with ``interval_type: custom`` (``implied``:
    or with no ``interval_type`` at all, which then means custom); ``cron`` is a property of
    the body, or of its ``container`` object (the pipeline dialect's settings)."""
    no_cron: dict[str, Any] = {"properties": {"cron": {"type": "null"}}}
    if container is not None:
        no_cron = {"properties": {container: no_cron}}
    custom = {"required": ["interval_type"], "properties": {"interval_type": {"const": "custom"}}}
    branches = [no_cron, custom, *([{"not": {"required": ["interval_type"]}}] if implied else [])]
    return {"anyOf": branches}


class JsonAction(BaseModel):
    """Base of every request body: unknown fields refused, strict types, and no ``NaN`` /
    ``Infinity`` anywhere (Python's JSON parser accepts them; JSON has no such numbers):
    typed numbers must be finite, and free-form values (``variables``) are searched.

    An integer field takes ``3.0`` as 3: JSON Schema's ``integer`` admits it, so the
    document does; anything with a fraction stays refused."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, json_schema_extra=_document)
    # JSON Schema keywords added to this body's schema (rules that span fields).
    schema_rules: ClassVar[dict[str, Any]] = {}

    @model_validator(mode="before")
    @classmethod
    def _integral_floats(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        converted: dict[str, Any] = {}
        for key, value in data.items():
            field = cls.model_fields.get(key)
            if field is None:
                continue
            if isinstance(value, float) and _is_int(field.annotation):
                converted[key] = _integral(value)
            elif isinstance(value, list) and _is_int_list(field.annotation):
                converted[key] = [_integral(v) for v in value]
        return {**data, **converted} if converted else data

    @field_validator("*", mode="after")
    @classmethod
    def _finite_json(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, dict | list):
            where = non_finite_path(value, info.field_name or "body")
            if where is not None:
                raise ValueError(f"NaN and Infinity are not valid JSON numbers (at {where})")
        return value


# The error of a failed interval in an error report (``rendering.error_text``).
ErrorText = Annotated[str, Field(description=f"Error of its latest attempt (at most {ERROR_TEXT_LIMIT} characters).")]


class PipelineAttributes(BaseModel):
    """What both dialects show of a pipeline (a transfer in the team API) under one name."""

    id: int
    uuid: str
    name: str
    timezone: str | None
    variables: dict[str, Any]
    retries: int
    retry_delay_seconds: float
    timeout_seconds: float | None
    version: str | None = Field(description="Digest of pipeline.yaml and its block files, as synced.")
    load_error: str | None = Field(
        description="Why the files on disk do not load now; the last good version (this one) keeps running."
    )


class BackfillMetrics(BaseModel):
    progress: float = Field(
        description="Finished (completed + failed) intervals / intervals that will run (the total minus the "
        "cancelled ones), 0..1."
    )
    finished_runs: int = Field(description="Completed + failed intervals.")
    runs_to_run: int = Field(description="Intervals that will run: the total minus the cancelled ones.")
    duration_mean_seconds: float | None
    duration_p95_seconds: float | None
    duration_total_seconds: float
    rows: int
    remaining_runs: int = Field(description="Intervals still to finish; 0 once the backfill is final or failed.")
    runs_per_second: float | None = Field(description="Recent completion rate (the latest 50 finishes up to now).")
    estimated_seconds_remaining: float | None = Field(
        description="remaining_runs / runs_per_second; null while paused, not running, or before 3 runs finished."
    )
