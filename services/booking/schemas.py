"""booking: the HTTP API's models (what the JSON API and the room form take and give).

The use cases (rooms.py, bookings.py, decisions.py) take and return these; the bus messages are the versioned
contracts in shared/contracts/booking.py, not these."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field, field_validator, model_validator

from shared.contact import ContactFields
from shared.contracts.booking import BookingStatus, Category, GroupKind

from . import domain


class RoomOut(BaseModel):
    id: str = Field(description="Stable room id, e.g. `ks-primskovo`.")
    ks: str = Field(description="KS slug the room belongs to.")
    name: str
    address: str
    capacity: int = Field(description="Seats.")
    accessibility: str = ""
    equipment: str = ""
    opening_hours: dict[str, list[list[str]]] = Field(
        default_factory=dict, description='Europe/Ljubljana, e.g. `{"mon": [["08:00", "22:00"]]}`.'
    )
    office_hours: dict[str, list[list[str]]] = Field(
        default_factory=dict, description="KS office hours: blocked for bookings every week."
    )
    min_duration_minutes: int = 60
    max_duration_minutes: int = 240
    min_notice_hours: int = 24
    max_ahead_days: int = 180
    buffer_minutes: int = 0
    requires_approval: bool = True
    request_ttl_hours: int = 72


class RoomRulesIn(BaseModel):
    """Staff edit of a room: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    address: str | None = Field(default=None, min_length=1, max_length=300)
    capacity: int | None = Field(default=None, ge=1, le=1000)
    accessibility: str | None = Field(default=None, max_length=500)
    equipment: str | None = Field(default=None, max_length=500)
    access_instructions: str | None = Field(default=None, max_length=5000)
    opening_hours: dict[str, list[list[str]]] | None = None
    office_hours: dict[str, list[list[str]]] | None = None
    min_duration_minutes: int | None = Field(default=None, ge=15, le=24 * 60)
    max_duration_minutes: int | None = Field(default=None, ge=15, le=24 * 60)
    min_notice_hours: int | None = Field(default=None, ge=0, le=24 * 60)
    max_ahead_days: int | None = Field(default=None, ge=1, le=3 * 365)
    buffer_minutes: int | None = Field(default=None, ge=0, le=240)
    requires_approval: bool | None = None
    request_ttl_hours: int | None = Field(default=None, ge=1, le=24 * 30)

    @field_validator("opening_hours", "office_hours")
    @classmethod
    def _week(cls, value: dict[str, list[list[str]]] | None) -> dict[str, list[list[str]]] | None:
        if value is not None:
            domain.parse_week(value)
        return value


class Recurrence(BaseModel):
    """A repeating request: an RFC 5545 RRULE, or simply weekly until a date."""

    model_config = ConfigDict(extra="forbid")

    rrule: str | None = Field(default=None, max_length=500, examples=["FREQ=WEEKLY;BYDAY=WE;UNTIL=20270630"])
    weekly_until: date | None = Field(default=None, description="Every week on the same weekday, until this date.")

    @model_validator(mode="after")
    def _one(self) -> Recurrence:
        if (self.rrule is None) == (self.weekly_until is None):
            raise ValueError("give either rrule or weekly_until")
        return self

    def as_rrule(self) -> str:
        if self.rrule:
            return self.rrule
        assert self.weekly_until is not None
        return f"FREQ=WEEKLY;UNTIL={self.weekly_until.strftime('%Y%m%d')}T235959"


class BookingIn(ContactFields):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    room_id: str = Field(min_length=1, max_length=64)
    starts_at: AwareDatetime = Field(description="RFC 3339 with an offset.")
    ends_at: AwareDatetime
    purpose: str = Field(min_length=1, max_length=300)
    category: Category = Field(default="other", description="Kind of use (room-use figures).")
    group_kind: GroupKind = Field(default="individual", description="Who asks: a person, an association, …")
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr | None = None
    phone: str | None = Field(default=None, max_length=30, description="E.164 or a Slovenian number.")
    attendees: int = Field(ge=1, le=10000)
    language: Literal["sl", "en"] = "sl"
    recurrence: Recurrence | None = None
    on_conflict: Literal["fail", "skip"] = Field(
        default="fail", description="Recurring requests: `fail` refuses the series, `skip` books the free dates."
    )

    @field_validator("purpose", "name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @model_validator(mode="after")
    def _check(self) -> BookingIn:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class BookingOut(BaseModel):
    id: str
    series_id: str | None = None
    room_id: str
    starts_at: datetime
    ends_at: datetime
    status: BookingStatus
    purpose: str
    category: str
    group_kind: str
    attendees: int
    reason: str | None = None
    created_at: datetime
    expires_at: datetime | None = None
    event_id: str | None = Field(default=None, description="Set when the events service asked for it for an event.")
    name: str | None = Field(default=None, description="Personal data: only for staff of the room's KS.")
    email: str | None = Field(default=None, description="Personal data: only for staff of the room's KS.")
    phone: str | None = Field(default=None, description="Personal data: only for staff of the room's KS.")


class SkippedDate(BaseModel):
    starts_at: datetime
    ends_at: datetime
    reasons: list[str]


class BookingCreated(BookingOut):
    """The first booking made; for a series also every booking and the skipped dates."""

    bookings: list[BookingOut] = Field(default_factory=list)
    skipped: list[SkippedDate] = Field(default_factory=list)
