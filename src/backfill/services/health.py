"""What each long-running component of a process says about itself (read by ``/readyz``).

A component is ready, or not ready with a reason ("restarting after it died: ...",
"database unavailable: ..."). Thread-safe; components report, readers take a snapshot.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class ComponentState:
    ready: bool
    reason: str = ""


class HealthRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, ComponentState] = {}

    def ready(self, name: str) -> None:
        with self._lock:
            self._states[name] = ComponentState(True)

    def not_ready(self, name: str, reason: str) -> None:
        with self._lock:
            self._states[name] = ComponentState(False, reason)

    def snapshot(self) -> dict[str, ComponentState]:
        with self._lock:
            return dict(self._states)

    def problems(self) -> list[str]:
        """``"name: reason"`` of every component that is not ready, sorted by name."""
        return [f"{name}: {s.reason}" for name, s in sorted(self.snapshot().items()) if not s.ready]


class ComponentReporter:
    """The handle a loop reports through: its name in one registry (or nowhere)."""

    def __init__(self, registry: HealthRegistry | None, name: str) -> None:
        self.registry = registry
        self.name = name

    def ready(self) -> None:
        if self.registry is not None:
            self.registry.ready(self.name)

    def not_ready(self, reason: str) -> None:
        if self.registry is not None:
            self.registry.not_ready(self.name, reason)
