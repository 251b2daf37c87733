"""Messages owned by the events service."""

from __future__ import annotations

from datetime import datetime

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from .envelope import MessageType
from .ks import KsOrAll


class EventPublished(BaseModel):
    """A community event or workshop is now public."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: str
    ks: KsOrAll
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=10000)
    starts_at: datetime
    ends_at: datetime
    venue: str = Field(min_length=1, max_length=300)
    capacity: int | None = Field(default=None, ge=1)
    url: AnyHttpUrl


EVENT_PUBLISHED = MessageType(
    "events.event.published",
    1,
    EventPublished,
    "Fact: staff published an event; notify announces it to the KS's followers.",
)
