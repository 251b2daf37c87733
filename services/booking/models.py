from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from shared.models import new_id, ts_column, utcnow

# Weekday keys of opening and office hours: {"mon": [["08:00", "22:00"]], ...}
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Room(SQLModel, table=True):
    """A community room of a KS (seeded by the first migration; staff keep it current)."""

    __tablename__ = "rooms"

    id: str = Field(primary_key=True, max_length=64)
    ks: str = Field(max_length=40, index=True)
    name: str = Field(max_length=200)
    address: str = Field(max_length=300)
    capacity: int = Field(ge=1)
    accessibility: str = Field(default="", max_length=500)
    equipment: str = Field(default="", max_length=500)
    access_instructions: str = Field(default="", sa_type=sa.Text)
    opening_hours: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    office_hours: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    min_duration_minutes: int = Field(default=60)
    max_duration_minutes: int = Field(default=240)
    min_notice_hours: int = Field(default=24)
    max_ahead_days: int = Field(default=180)
    buffer_minutes: int = Field(default=0)
    requires_approval: bool = Field(default=True)
    request_ttl_hours: int = Field(default=72)


class Closure(SQLModel, table=True):
    """A one-off blackout of a room (renovation, elections, a KS event)."""

    __tablename__ = "closures"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    room_id: str = Field(foreign_key="rooms.id", max_length=64, index=True)
    starts_at: datetime = Field(sa_column=ts_column())
    ends_at: datetime = Field(sa_column=ts_column())
    reason: str = Field(max_length=300)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class Booking(SQLModel, table=True):
    """One booking (or request) of one room for one interval [starts_at, ends_at)."""

    __tablename__ = "bookings"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    series_id: str | None = Field(default=None, max_length=64, index=True)
    room_id: str = Field(foreign_key="rooms.id", max_length=64, index=True)
    starts_at: datetime = Field(sa_column=ts_column())
    ends_at: datetime = Field(sa_column=ts_column())
    purpose: str = Field(max_length=300)
    category: str = Field(default="other", max_length=30)
    group_kind: str = Field(default="individual", max_length=30)
    name: str = Field(max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=20)
    language: str = Field(default="sl", max_length=2)
    attendees: int = Field(ge=1)
    status: str = Field(default="requested", max_length=20, index=True)
    reason: str | None = Field(default=None, max_length=1000)
    created_by: str | None = Field(default=None, max_length=200)  # staff subject, when staff booked
    decided_by: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    decided_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    expires_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True, index=True))
    event_id: str | None = Field(default=None, max_length=64, index=True)  # asked for by the events service


HOLDING = ("requested", "confirmed")  # statuses that hold their slot
