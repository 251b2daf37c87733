"""surveys: what it takes off the bus — notify's requests for a person's data (GDPR access).

Answered by `surveys.export.answered` with the free-text answers that name the person
(services/surveys/privacy.py)."""

from __future__ import annotations

from shared.bus import Bus
from shared.privacy import answer_exports
from shared.settings import Settings

from . import privacy


def register(bus: Bus, settings: Settings) -> None:
    answer_exports(bus, "surveys", privacy)
