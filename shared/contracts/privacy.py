"""GDPR access (Art. 15) across the services, by message.

A resident asks on their manage page for what the platform holds about them. notify (which
knows their confirmed contacts) asks every other service with `notify.export.requested`;
each answers with its part, `<service>.export.answered`, carrying the same `request_id`;
notify puts the parts together with its own and sends the resident a link to the whole
document, at the confirmed address. Both messages carry personal data.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .envelope import MessageType


class ExportRequested(BaseModel):
    """What a service should look for: the person's confirmed contacts (and names, if known)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    request_id: str = Field(min_length=1, max_length=64, description="notify's request; the answers carry it.")
    emails: list[str] = Field(default_factory=list, max_length=10, description="Personal data: lower-case emails.")
    phones: list[str] = Field(default_factory=list, max_length=10, description="Personal data: phones in E.164.")
    names: list[str] = Field(default_factory=list, max_length=10, description="Personal data: names they gave.")


class ExportAnswered(BaseModel):
    """One service's part of the document: what `privacy.export` returns there."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    request_id: str = Field(min_length=1, max_length=64)
    service: str = Field(min_length=1, max_length=20, description="events, booking or surveys.")
    document: dict[str, Any] = Field(description="Personal data: everything the service holds about the person.")


EXPORT_REQUESTED = MessageType(
    "notify.export.requested",
    1,
    ExportRequested,
    "Command (notify -> events, booking, surveys): send what you hold about this person (GDPR access). "
    "Answered by `<service>.export.answered` with the same `request_id`. Only notify may send it.",
)
EVENTS_EXPORT_ANSWERED = MessageType(
    "events.export.answered", 1, ExportAnswered, "Fact: events' part of a person's data (answers notify)."
)
BOOKING_EXPORT_ANSWERED = MessageType(
    "booking.export.answered", 1, ExportAnswered, "Fact: booking's part of a person's data (answers notify)."
)
SURVEYS_EXPORT_ANSWERED = MessageType(
    "surveys.export.answered", 1, ExportAnswered, "Fact: surveys' part of a person's data (answers notify)."
)
EXPORT_ANSWERED: dict[str, MessageType[ExportAnswered]] = {
    "events": EVENTS_EXPORT_ANSWERED,
    "booking": BOOKING_EXPORT_ANSWERED,
    "surveys": SURVEYS_EXPORT_ANSWERED,
}
