"""What booking's use cases raise: `NotFound` (a room or booking that does not exist, 404),
and the refusals with their reason in Slovenian and English (`shared.errors.Refused`):
`Conflict` (the record's state does not allow it) and `RuleBroken` (the room's rules, with
every broken rule and a series' unavailable dates)."""

from __future__ import annotations

from typing import Any

from shared.errors import Bilingual, Refused

from .domain import Violation


class NotFound(Exception):
    """No room or booking with this id (the argument); the routes answer 404."""


class Conflict(Refused):
    """The booking's state does not allow this (HTTP 409)."""


class RuleBroken(Refused):
    """The room does not allow this request, with every reason: 409; 403 where the request is
    not the requester's to make; 422 a phone we cannot text. The message is the violations'
    Slovenian sentences, then their English ones."""

    def __init__(
        self, violations: list[Violation], conflicts: list[dict[str, Any]] | None = None, *, status: int = 409
    ) -> None:
        self.violations = violations
        self.conflicts = conflicts or []
        super().__init__(Bilingual.join(v.message for v in violations), status=status)

    @property
    def detail(self) -> str:
        """The JSON API's `detail`: "sl / en"."""
        return str(self.message)
