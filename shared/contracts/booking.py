"""Messages owned by the booking service: facts about one booking of a community room.

All five share one data schema (`BookingChanged`), so a consumer (notify) can write a
message to the requester, or to the KS staff, from the data alone. The `requester`
object is personal data: consumers keep it only as long as they need it to deliver the
message, and it is erased with the rest of a resident's data (GDPR).

Import from here directly: `from shared.contracts.booking import BOOKING_CONFIRMED`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from .envelope import MessageType
from .ks import KsSlug

BookingStatus = Literal["requested", "confirmed", "rejected", "cancelled", "expired"]
BOOKING_STATUSES: tuple[str, ...] = get_args(BookingStatus)
Category = Literal["social", "education", "culture", "sport", "meeting", "other"]
CATEGORIES: tuple[str, ...] = get_args(Category)
GroupKind = Literal["individual", "association", "informal-group", "ks", "public-body", "other"]
GROUP_KINDS: tuple[str, ...] = get_args(GroupKind)


class Requester(BaseModel):
    """Who asked for the room. PERSONAL DATA: use it only to tell this person about their
    booking; do not copy it anywhere else; erase it on a GDPR erasure request."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1, max_length=200, description="Personal data: the requester's name.")
    email: str | None = Field(default=None, max_length=320, description="Personal data: email address, if given.")
    phone: str | None = Field(
        default=None, max_length=20, description="Personal data: phone in E.164 (+386...), if given."
    )
    language: Literal["sl", "en"] = Field(default="sl", description="Language the requester wants messages in.")


class BookingChanged(BaseModel):
    """A booking of a community room changed status; everything needed to tell its requester."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    booking_id: str
    series_id: str | None = Field(default=None, description="Set when the booking is one date of a recurring series.")
    room_id: str = Field(description="Stable room id, e.g. `ks-primskovo` or `mck`.")
    room_name: str = Field(description="The room's name for residents, e.g. `Dom KS Primskovo`.")
    room_address: str = Field(default="", description="Street address of the room.")
    ks: KsSlug = Field(description="KS that owns the room.")
    starts_at: datetime = Field(description="UTC (RFC 3339); show it in Europe/Ljubljana time.")
    ends_at: datetime = Field(description="UTC (RFC 3339); show it in Europe/Ljubljana time.")
    purpose: str = Field(max_length=300)
    category: Category = Field(default="other", description="Kind of use, for the room-use figures.")
    group_kind: GroupKind = Field(default="individual", description="Kind of group that asked.")
    attendees: int = Field(ge=1)
    status: BookingStatus = Field(description="The status after this change.")
    reason: str | None = Field(
        default=None, max_length=1000, description="Why it was rejected or cancelled (staff's words), or expired."
    )
    requester: Requester
    cancelled_by: Literal["requester", "staff"] | None = Field(default=None, description="Set on `cancelled`.")
    expires_at: datetime | None = Field(
        default=None, description="On `requested`: when the request lapses unless staff decide."
    )
    access_instructions: str | None = Field(
        default=None, description="On `confirmed`: key handover and how to get in, written by the KS."
    )
    status_url: AnyHttpUrl | None = Field(
        default=None, description="Signed link where the requester sees the booking's status (no login)."
    )
    cancel_url: AnyHttpUrl | None = Field(
        default=None, description="Signed link with which the requester cancels (while requested or confirmed)."
    )
    review_url: AnyHttpUrl | None = Field(
        default=None, description="On `requested`: staff page where KS staff approve or reject (login needed)."
    )
    event_id: str | None = Field(
        default=None,
        max_length=64,
        description="Set when the booking answers an events service's `booking.room.requested` (its `request_id`).",
    )
    staff_vouched: bool = Field(
        default=False,
        description="True when KS staff (or the events service, for an event's room) made the booking, or staff "
        "approved it: staff have seen its words. Otherwise notify repeats none of the requester's own words (name, "
        "purpose) to a contact nobody confirmed, and tells a series once (docs/security.md).",
    )


BOOKING_REQUESTED = MessageType(
    "booking.booking.requested",
    1,
    BookingChanged,
    "Fact: a resident asked for a room; the slot is held until KS staff approve or reject it, or it expires. "
    "Notify tells the requester it was received, and the KS staff that a request waits.",
)
BOOKING_CONFIRMED = MessageType(
    "booking.booking.confirmed",
    1,
    BookingChanged,
    "Fact: a booking is confirmed (by staff, or by itself where the room allows). Carries access instructions.",
)
BOOKING_REJECTED = MessageType(
    "booking.booking.rejected",
    1,
    BookingChanged,
    "Fact: KS staff rejected a request; `reason` says why.",
)
BOOKING_CANCELLED = MessageType(
    "booking.booking.cancelled",
    1,
    BookingChanged,
    "Fact: a requested or confirmed booking was cancelled, by the requester or by staff (`cancelled_by`).",
)
BOOKING_EXPIRED = MessageType(
    "booking.booking.expired",
    1,
    BookingChanged,
    "Fact: a request lapsed because nobody approved or rejected it in time; the slot is free again.",
)

BOOKING_MESSAGE_TYPES: dict[str, MessageType[BookingChanged]] = {
    "requested": BOOKING_REQUESTED,
    "confirmed": BOOKING_CONFIRMED,
    "rejected": BOOKING_REJECTED,
    "cancelled": BOOKING_CANCELLED,
    "expired": BOOKING_EXPIRED,
}


# --------------------------------------------------------------------------------------
# A room asked for by the events service (a command to booking; PERSONAL DATA if contact given)
# --------------------------------------------------------------------------------------
class RoomRequested(BaseModel):
    """The events service asks booking for a KS room for one event. Booking answers with
    `booking.booking.requested|confirmed|rejected` (and later cancelled|expired) carrying
    `event_id` = `request_id`. It books through the room's usual rules, as a request of the
    KS itself: confirmed at once where the room does not need approval, otherwise it waits
    for KS staff like any request."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    request_id: str = Field(min_length=1, max_length=64, description="The event's id; answers carry it as `event_id`.")
    room_id: str = Field(min_length=1, max_length=64, description="Stable room id, e.g. `ks-primskovo`.")
    ks: KsSlug | None = Field(
        default=None,
        description="The KS of the event (added compatibly in v1; the events service always sends it). Booking "
        "books only a room of this KS as the KS's own request; a room of another KS or an unknown room is answered "
        "`booking.booking.rejected` with the reason. A request without `ks` (an older sender) is never booked as a "
        "KS's own: it waits for the room's KS staff like a resident's request.",
    )
    starts_at: datetime = Field(description="UTC (RFC 3339).")
    ends_at: datetime = Field(description="UTC (RFC 3339).")
    purpose: str = Field(min_length=1, max_length=300, description="The event's title.")
    attendees: int = Field(default=1, ge=1, description="The event's capacity, or 1 when it has none.")
    organiser: str = Field(min_length=1, max_length=200, description="Personal data: the organiser's name.")
    email: str | None = Field(default=None, max_length=320, description="Personal data: organiser's email, if known.")
    phone: str | None = Field(default=None, max_length=20, description="Personal data: organiser's phone (E.164).")
    language: Literal["sl", "en"] = Field(default="sl", description="Language the organiser wants messages in.")
    event_url: AnyHttpUrl | None = Field(default=None, description="The event's page.")


ROOM_REQUESTED = MessageType(
    "booking.room.requested",
    1,
    RoomRequested,
    "Command (events -> booking): book this room for this event. Answered by `booking.booking.*` with "
    "`event_id` = `request_id`; a refusal is `booking.booking.rejected` with the rules' reasons.",
)


class RoomReleased(BaseModel):
    """The events service no longer needs the room it asked for (the event was cancelled).
    Booking cancels whatever it holds for `request_id` and answers `booking.booking.cancelled`
    with `event_id`. Asking again (`booking.room.requested` for the same `request_id` at
    another time) releases the earlier booking by itself."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    request_id: str = Field(min_length=1, max_length=64, description="The event's id, as in `booking.room.requested`.")
    reason: str = Field(default="", max_length=1000, description="Why, in Slovenian (shown to the organiser).")


ROOM_RELEASED = MessageType(
    "booking.room.released",
    1,
    RoomReleased,
    "Command (events -> booking): release the room booked for this event. Answered by `booking.booking.cancelled` "
    "with `event_id` = `request_id` for each booking that was holding it; nothing held, nothing answered.",
)


# --------------------------------------------------------------------------------------
# The room catalogue (a fact for every service that offers a KS's rooms; no personal data)
# --------------------------------------------------------------------------------------
class RoomClosure(BaseModel):
    """A time a room is closed (renovation, elections, a KS event of its own)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    starts_at: datetime = Field(description="UTC (RFC 3339).")
    ends_at: datetime = Field(description="UTC (RFC 3339).")
    reason: str = Field(default="", max_length=300, description="Why, in Slovenian (e.g. `prenova`).")


class RoomUpdated(BaseModel):
    """One community room as booking has it now: sent whenever a room is imported or changed
    or a closure is added, and for every room once a day (and when booking starts), so a
    service that keeps a copy of the catalogue catches up by itself. The latest message (by
    the envelope's `time`) is the truth. The room's public page, with its free times, is
    `/rooms/{room_id}` under booking's address."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    room_id: str = Field(min_length=1, max_length=64, description="Stable room id, e.g. `ks-primskovo`.")
    ks: KsSlug = Field(description="KS that owns the room.")
    name: str = Field(min_length=1, max_length=200, description="The room's name for residents.")
    address: str = Field(default="", max_length=300)
    capacity: int = Field(ge=1, description="Most people the room holds.")
    active: bool = Field(
        default=True, description="False when the room is no longer offered (nothing can be booked in it)."
    )
    requires_approval: bool = Field(default=True, description="Whether KS staff approve each request.")
    closures: list[RoomClosure] = Field(
        default_factory=list, max_length=100, description="The room's closures that have not ended yet, in order."
    )


ROOM_UPDATED = MessageType(
    "booking.room.updated",
    1,
    RoomUpdated,
    "Fact: a community room as booking has it now (name, capacity, closures). Sent when rooms are imported or "
    "changed, and for every room once a day; the events service keeps the KS's rooms to offer them in its editor.",
)
