"""Use cases of the events service: each opens one transaction and writes rows + outbox."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlmodel import col, select

from shared.auth import Staff
from shared.bus import add_to_outbox
from shared.contracts import EVENT_PUBLISHED, EventPublished
from shared.contracts.ks import KsOrAll
from shared.db import Database
from shared.models import utcnow
from shared.settings import Settings

from .models import Event

SOURCE = "/kranj/events"


class Conflict(Exception):
    """The request is valid but the event's state does not allow it (HTTP 409)."""


class NotFound(Exception):
    pass


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    ks: KsOrAll = Field(description='KS slug, or "*" for a city-wide event.')
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=10000)
    starts_at: AwareDatetime = Field(description="RFC 3339 with an offset.")
    ends_at: AwareDatetime
    venue: str = Field(min_length=1, max_length=300)
    capacity: int | None = Field(default=None, ge=1, le=10000, description="Seats; registration required when set.")

    @field_validator("title", "venue")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @model_validator(mode="after")
    def _ends_after_start(self) -> EventIn:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class EventOut(BaseModel):
    id: str
    ks: str
    title: str
    description: str
    starts_at: datetime
    ends_at: datetime
    venue: str
    capacity: int | None
    status: str
    created_at: datetime
    published_at: datetime | None
    url: str


def event_url(settings: Settings, event_id: str) -> str:
    return f"{settings.public_base('events')}/events/{event_id}"


def to_out(settings: Settings, event: Event) -> EventOut:
    return EventOut(**event.model_dump(exclude={"created_by"}), url=event_url(settings, event.id))


async def create_event(db: Database, staff: Staff, data: EventIn) -> Event:
    event = Event(**data.model_dump(), created_by=staff.subject)
    async with db.session() as session:
        session.add(event)
        await session.commit()
    return event


async def get_event(db: Database, event_id: str) -> Event:
    async with db.session() as session:
        event = await session.get(Event, event_id)
    if event is None:
        raise NotFound(event_id)
    return event


async def publish_event(db: Database, settings: Settings, event_id: str) -> Event:
    """draft -> published and its `events.event.published` outbox row, in one transaction.
    Publishing an already published event changes nothing (safe to retry)."""
    async with db.session() as session:
        query = select(Event).where(Event.id == event_id)
        if not db.is_sqlite:
            query = query.with_for_update()
        event = (await session.exec(query)).first()
        if event is None:
            raise NotFound(event_id)
        if event.status == "published":
            return event
        if event.status != "draft":
            raise Conflict(f"Dogodka s stanjem '{event.status}' ni mogoče objaviti. / A {event.status} event cannot be published.")
        if event.ends_at <= utcnow():
            raise Conflict("Dogodek je že mimo. / The event has already ended.")
        event.status = "published"
        event.published_at = utcnow()
        session.add(event)
        add_to_outbox(
            session,
            EVENT_PUBLISHED,
            EventPublished(
                event_id=event.id,
                ks=event.ks,
                title=event.title,
                description=event.description,
                starts_at=event.starts_at,
                ends_at=event.ends_at,
                venue=event.venue,
                capacity=event.capacity,
                url=event_url(settings, event.id),  # type: ignore[arg-type]
            ),
            source=SOURCE,
            subject=event.id,
        )
        await session.commit()
    return event


async def list_published(db: Database, ks: str | None = None, limit: int = 200) -> list[Event]:
    async with db.session() as session:
        query = select(Event).where(Event.status == "published", Event.ends_at >= utcnow())
        if ks:
            query = query.where(col(Event.ks).in_([ks, "*"]))
        rows = (await session.exec(query.order_by(col(Event.starts_at)).limit(limit))).all()
    return list(rows)
