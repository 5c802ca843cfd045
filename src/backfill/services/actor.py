"""Who is acting: every service call runs on behalf of a user in a team."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    team_id: int
    user_id: int | None = None
