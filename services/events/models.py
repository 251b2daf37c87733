from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from shared.models import UTCDateTime, new_id, ts_column, utcnow

# draft -> (pending-room -> published | room-refused) | published -> cancelled
EVENT_STATUSES = ("draft", "pending-room", "room-refused", "published", "cancelled")
REGISTRATION_STATUSES = ("confirmed", "waitlisted", "cancelled")


class Event(SQLModel, table=True):
    __tablename__ = "events"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    ks: str = Field(max_length=40, index=True)
    title: str = Field(max_length=200)
    description: str = Field(default="", sa_type=sa.Text)
    starts_at: datetime = Field(sa_column=ts_column(index=True))
    ends_at: datetime = Field(sa_column=ts_column())
    venue: str = Field(max_length=300)
    capacity: int | None = None
    status: str = Field(default="draft", max_length=20, index=True)
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    published_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    audience: list[str] = Field(default_factory=lambda: ["vsi"], sa_type=sa.JSON)
    topics: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    organiser: str = Field(default="", max_length=200)
    organiser_email: str | None = Field(default=None, max_length=320)  # personal data: told about the room
    organiser_phone: str | None = Field(default=None, max_length=20)  # personal data (E.164)
    accessibility: str = Field(default="", max_length=1000)
    room_id: str | None = Field(default=None, max_length=64)
    booking_id: str | None = Field(default=None, max_length=64)
    room_note: str | None = Field(default=None, max_length=1000)
    # when the room was last asked for (booking.room.requested): a request left unanswered
    # for long is told to staff plainly, never silently pending
    room_requested_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    rrule: str | None = Field(default=None, max_length=500)
    exdates: list[Any] = Field(default_factory=list, sa_type=sa.JSON)  # UTC RFC 3339 strings
    # single occurrences of a series moved elsewhere in time (RFC 5545 RECURRENCE-ID):
    # [{"original": UTC RFC 3339, "starts_at": ..., "ends_at": ...}]
    moved: list[Any] = Field(default_factory=list, sa_type=sa.JSON)
    cancel_reason: str | None = Field(default=None, max_length=1000)
    cancelled_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    updated_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    # iCalendar SEQUENCE (RFC 5545 3.8.7.4): +1 on every change of time, dates, place or title
    # and on cancelling, so calendar apps that subscribed replace their copy
    sequence: int = Field(default=0)


class Registration(SQLModel, table=True):
    __tablename__ = "registrations"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    event_id: str = Field(foreign_key="events.id", max_length=64, index=True)
    name: str = Field(max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=20)
    language: str = Field(default="sl", max_length=2)
    channel: str = Field(default="web", max_length=10)
    status: str = Field(max_length=20, index=True)
    position: int
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    created_by: str | None = Field(default=None, max_length=200)
    confirmed_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    cancelled_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    reminder_sent_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True, index=True))


class Attendance(SQLModel, table=True):
    """How many came, per date of the event and age band (shared.contracts.age: the same
    bands as the surveys). `occurrence` names the date: the event's start, or for a series
    the start the series gives that date (as RECURRENCE-ID does, also when it was moved).
    Rows from before the one set of bands may carry `30-64` (see migration events_0004)."""

    __tablename__ = "attendance"

    event_id: str = Field(foreign_key="events.id", primary_key=True, max_length=64)
    occurrence: datetime = Field(sa_column=sa.Column(UTCDateTime(), primary_key=True))
    age_band: str = Field(primary_key=True, max_length=10)
    count: int
    recorded_by: str = Field(max_length=200)
    recorded_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class KsRoom(SQLModel, table=True):
    """The community rooms as booking announces them (`booking.room.updated`): events' own
    copy of the catalogue, from which the editor offers the KS's rooms. Never read from
    booking's database. `announced_at` is the message's time: an older message changes nothing."""

    __tablename__ = "ks_rooms"

    id: str = Field(primary_key=True, max_length=64)
    ks: str = Field(max_length=40, index=True)
    name: str = Field(max_length=200)
    address: str = Field(default="", max_length=300)
    capacity: int = Field(default=1)
    active: bool = Field(default=True)
    requires_approval: bool = Field(default=True)
    # [{"starts_at": UTC RFC 3339, "ends_at": ..., "reason": ...}] not ended when announced
    closures: list[Any] = Field(default_factory=list, sa_type=sa.JSON)
    announced_at: datetime = Field(sa_column=ts_column())
