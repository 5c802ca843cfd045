"""Domain errors. Adapters map them to HTTP status codes and CLI exit codes.

Errors carry their facts as data — the field, the current status, the allowed
transitions, the other backfill — and a message template over those facts, so every
adapter says the same thing in its own words (a :class:`Wording`: its status names, its
field names, its word for a pipeline) without rewording a finished message.
``error.message`` is the canonical wording (services, CLI, logs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


def _same(name: str) -> str:
    return name


@dataclass(frozen=True)
class Wording:
    """How an adapter names statuses, fields and the pipeline."""

    status: Callable[[str], str] = _same
    fields: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    pipeline: str = "pipeline"

    def field_name(self, name: str) -> str:
        return self.fields.get(name, name)


CANONICAL = Wording()


def _is_name_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_."


def rename_words(text: str, names: Mapping[str, str]) -> str:
    """``text`` with every whole-word occurrence of a key of ``names`` replaced by its value
    (a word: not preceded or followed by a letter, digit, ``_`` or ``.``)."""
    if not names:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        if _is_name_char(text[i]):
            j = i
            while j < len(text) and _is_name_char(text[j]):
                j += 1
            word = text[i:j]
            stripped = word.rstrip(".")  # a sentence may end right after a name
            out.append(names.get(stripped, stripped) + word[len(stripped) :])
            i = j
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def names_word(text: str, name: str) -> bool:
    """Whether ``text`` contains ``name`` as a whole word."""
    return rename_words(text, {name: "\x00"}) != text


class DomainError(Exception):
    """Base of every error the domain and services raise on purpose."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def render(self, words: Wording) -> str:  # noqa: ARG002 (a plain message has nothing to reword)
        """The message in an adapter's words."""
        return self.message


class ValidationError(DomainError):
    """Input is well-formed but its values are not acceptable (HTTP 422).

    ``field`` names the offending input field, e.g. ``"interval_units"``; the message names
    fields by their canonical names, which :meth:`render` replaces by the adapter's. A
    message that does not name its field gets it as a prefix (``"range_start: ..."``).
    """

    def render(self, words: Wording) -> str:
        message = rename_words(self.message, words.fields)
        if self.field is None:
            return message
        shown = words.field_name(self.field)
        return message if names_word(message, shown) else f"{shown}: {message}"


class InvalidTransition(DomainError):
    """A requested state change is not allowed from the current state (HTTP 422).

    ``template`` may use ``{current}``, ``{requested}`` (statuses), ``{allowed}`` (the
    statuses allowed from ``current``, comma-separated), ``{fields}`` (field names,
    comma-separated); each adapter fills them in with its own words.
    """

    def __init__(
        self,
        template: str,
        *,
        current: str | None = None,
        requested: str | None = None,
        allowed: tuple[str, ...] = (),
        fields: tuple[str, ...] = (),
    ) -> None:
        self.template = template
        self.current = current
        self.requested = requested
        self.allowed = allowed
        self.fields = fields
        super().__init__(self._fill(CANONICAL), field="status")

    def _fill(self, words: Wording) -> str:
        def status(name: str | None) -> str:
            return words.status(name) if name is not None else ""

        return self.template.format(
            current=status(self.current),
            requested=status(self.requested),
            allowed=", ".join(status(a) for a in self.allowed),
            fields=", ".join(words.field_name(f) for f in self.fields),
        )

    def render(self, words: Wording) -> str:
        return self._fill(words)


class NotFound(DomainError):
    """The record does not exist, or belongs to another team (HTTP 404)."""


class Conflict(DomainError):
    """The request conflicts with existing state, e.g. overlapping backfills (HTTP 409)."""


class OverlappingBackfill(Conflict):
    """Another unfinished backfill of the same pipeline covers some of the intervals."""

    def __init__(self, other_id: int, other_name: str, other_status: str) -> None:
        self.other_id = other_id
        self.other_name = other_name
        self.other_status = other_status
        super().__init__(self.render(CANONICAL))

    def render(self, words: Wording) -> str:
        # A failed backfill has finished running: it waits for a user, not for time.
        advice = "retry or cancel it" if self.other_status == "failed" else "cancel it or wait for it to finish"
        return (
            f"backfill {self.other_id} ({self.other_name!r}, {words.status(self.other_status)}) already covers "
            f"intervals of this range for the same {words.pipeline}; {advice}"
        )


class AuthenticationFailed(DomainError):
    """Credentials (email + password) were refused (HTTP 401)."""


class PipelineFileError(DomainError):
    """A pipeline definition on disk is invalid; ``path`` names the file."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
