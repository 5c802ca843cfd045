"""Domain errors. Adapters map them to HTTP status codes and CLI exit codes."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the domain and services raise on purpose."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ValidationError(DomainError):
    """Input is well-formed but its values are not acceptable (HTTP 422).

    ``field`` names the offending input field, e.g. ``"interval_units"``.
    """


class InvalidTransition(DomainError):
    """A requested state change is not allowed from the current state (HTTP 422)."""

    def __init__(self, message: str, *, allowed: tuple[str, ...] = ()) -> None:
        super().__init__(message, field="status")
        self.allowed = allowed


class NotFound(DomainError):
    """The record does not exist, or belongs to another team (HTTP 404)."""


class Conflict(DomainError):
    """The request conflicts with existing state, e.g. overlapping backfills (HTTP 409)."""


class AuthenticationFailed(DomainError):
    """Credentials (email + password) were refused (HTTP 401)."""


class PipelineFileError(DomainError):
    """A pipeline definition on disk is invalid; ``path`` names the file."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
