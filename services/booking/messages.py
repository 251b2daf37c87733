"""What booking tells the others: the data of its `booking.booking.*` facts (the contract
`BookingChanged`) and of `booking.room.updated` (the room catalogue, `RoomUpdated`), staged in
the caller's transaction, and the requester's signed links (status page, cancelling) those
messages carry."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from shared.contracts.booking import (
    BOOKING_MESSAGE_TYPES,
    ROOM_UPDATED,
    BookingChanged,
    Requester,
    RoomClosure,
    RoomUpdated,
)
from shared.links import SignedIds
from shared.outbox import add_to_outbox
from shared.settings import Settings

from .models import HOLDING, Booking, Closure, Room

SOURCE = "/kranj/booking"
TOKEN_SALT = "kranj.booking.requester-link.v1"


def requester_token(settings: Settings, booking_id: str) -> str:
    return SignedIds(settings, TOKEN_SALT).sign(booking_id)


def booking_id_from_token(settings: Settings, token: str) -> str | None:
    return SignedIds(settings, TOKEN_SALT).read(token)


def status_url(settings: Settings, booking_id: str) -> str:
    return f"{settings.public_base('booking')}/rooms/prosnja/{requester_token(settings, booking_id)}"


def cancel_url(settings: Settings, booking_id: str) -> str:
    return status_url(settings, booking_id) + "/preklic"


def message_data(settings: Settings, room: Room, booking: Booking, cancelled_by: str | None = None) -> BookingChanged:
    holding = booking.status in HOLDING
    return BookingChanged(
        booking_id=booking.id,
        series_id=booking.series_id,
        room_id=room.id,
        room_name=room.name,
        room_address=room.address,
        ks=room.ks,
        starts_at=booking.starts_at,
        ends_at=booking.ends_at,
        purpose=booking.purpose,
        category=booking.category,
        group_kind=booking.group_kind,
        attendees=booking.attendees,
        status=booking.status,
        reason=booking.reason,
        requester=Requester(
            name=booking.name,
            email=booking.email,
            phone=booking.phone,
            language=booking.language,
        ),
        cancelled_by=cancelled_by,
        expires_at=booking.expires_at if booking.status == "requested" else None,
        access_instructions=(room.access_instructions or None) if booking.status == "confirmed" else None,
        status_url=status_url(settings, booking.id),
        cancel_url=cancel_url(settings, booking.id) if holding else None,
        review_url=(
            f"{settings.public_base('booking')}/rooms/osebje/prosnje" if booking.status == "requested" else None
        ),
        event_id=booking.event_id,
        # Staff or the events service (for its staff's event) made or asked for it, or staff
        # approved it: its words were seen by staff (notify, services/notify/relay.py).
        staff_vouched=booking.created_by is not None
        or booking.event_id is not None
        or (booking.status == "confirmed" and booking.decided_by is not None),
    )


def announce(
    session: AsyncSession, settings: Settings, room: Room, booking: Booking, cancelled_by: str | None = None
) -> None:
    """Stage the message of a booking's current status (also the answer to a repeated room request)."""
    add_to_outbox(
        session,
        BOOKING_MESSAGE_TYPES[booking.status],
        message_data(settings, room, booking, cancelled_by),
        source=SOURCE,
        subject=booking.id,
    )


def room_data(room: Room, closures: list[Closure]) -> RoomUpdated:
    """The room as the catalogue fact tells it: no personal data, no access instructions."""
    return RoomUpdated(
        room_id=room.id,
        ks=room.ks,
        name=room.name,
        address=room.address,
        capacity=room.capacity,
        requires_approval=room.requires_approval,
        closures=[
            RoomClosure(starts_at=c.starts_at, ends_at=c.ends_at, reason=c.reason)
            for c in sorted(closures, key=lambda c: c.starts_at)[:100]
        ],
    )


def announce_room(session: AsyncSession, room: Room, closures: list[Closure]) -> None:
    """Stage `booking.room.updated` for the room (`closures`: those not ended yet)."""
    add_to_outbox(session, ROOM_UPDATED, room_data(room, closures), source=SOURCE, subject=room.id)
