"""booking: what it takes off the bus — rooms asked for by the events service.

Answered only by the usual `booking.booking.*` facts, with `event_id` set. A request the
room's rules refuse is answered by `booking.booking.rejected` with the reasons (no booking
row is kept); it is never raised, so it is never dead-lettered.
"""

from __future__ import annotations

import logging

from sqlmodel.ext.asyncio.session import AsyncSession

from shared.bus import QUEUES, Bus, Handles, add_to_outbox
from shared.contracts import CloudEvent, Rejection
from shared.contracts.booking import BOOKING_REJECTED, ROOM_RELEASED, ROOM_REQUESTED, RoomReleased, RoomRequested
from shared.errors import Bilingual
from shared.models import new_id, utcnow
from shared.privacy import answer_exports
from shared.settings import Settings

from . import privacy
from .bookings import book_in_session
from .decisions import bookings_of_event, release_event_bookings
from .domain import Interval
from .errors import RuleBroken
from .messages import SOURCE, announce, message_data
from .models import HOLDING, Booking, Room
from .schemas import BookingIn

log = logging.getLogger("kranj.booking.handlers")


def room_booking_in(data: RoomRequested) -> BookingIn:
    """The request as a booking of the KS itself (the organiser has no contact: no validation
    of one; notify then tells nobody by email or SMS, the events staff page shows the answer)."""
    return BookingIn.model_construct(
        room_id=data.room_id,
        starts_at=data.starts_at,
        ends_at=data.ends_at,
        purpose=data.purpose,
        category="other",
        group_kind="ks",
        name=data.organiser,
        email=data.email,
        phone=data.phone,
        attendees=data.attendees,
        language=data.language,
        recurrence=None,
        on_conflict="fail",
    )


def refuse(
    session: AsyncSession, settings: Settings, envelope: CloudEvent, data: RoomRequested, room: Room, reason: str
) -> None:
    """Answer an event's room request with `booking.booking.rejected` and the reason (nothing stored)."""
    now = utcnow()
    fields = room_booking_in(data).model_dump(exclude={"recurrence", "on_conflict"})
    refusal = Booking(  # not stored: the answer only
        id=new_id(), **fields, status="rejected", reason=reason[:1000], created_at=now, decided_at=now,
        event_id=data.request_id,
    )  # fmt: skip
    answer = message_data(settings, room, refusal).model_copy(update={"status_url": None, "cancel_url": None})
    add_to_outbox(session, BOOKING_REJECTED, answer, source=SOURCE, subject=data.request_id)
    log.info("room request refused", extra={"ce_id": envelope.id, "event_id": data.request_id, "reason": reason[:300]})


def register(bus: Bus, settings: Settings) -> None:
    db = bus.db
    answer_exports(bus, "booking", privacy)  # GDPR access: notify asks, booking answers

    async def on_room_requested(session: AsyncSession, envelope: CloudEvent, data: RoomRequested) -> None:
        room = await session.get(Room, data.room_id)
        if room is None and data.ks is None:
            raise Rejection(f"unknown room {data.room_id!r}")
        # Answered, not dead-lettered: the event's staff see why it has no room. An event asks
        # only for a room of its own KS: another KS's room is theirs to give.
        # The reason in the organiser's language (the events staff page shows it as it comes).
        wrong = None
        if room is None:
            wrong = Bilingual(f"Prostor z oznako »{data.room_id}« ne obstaja.", "No such room.")
            room = Room(id=data.room_id, ks=data.ks, name=data.room_id, address="")  # type: ignore[call-arg, arg-type]  # for the answer only (a table model is not validated; ks is set, see above)
        elif data.ks is not None and room.ks != data.ks:
            wrong = Bilingual(f"Prostor {room.name} ni prostor KS dogodka.", "The room belongs to another KS.")
        existing = await bookings_of_event(session, data.request_id)
        holding = [b for b in existing if b.status in HOLDING]
        same = next(
            (b for b in holding if (b.room_id, b.starts_at, b.ends_at) == (data.room_id, data.starts_at, data.ends_at)),
            None,
        )
        if same is not None and wrong is None:  # asked again for the same room and time (a redelivery): answer again
            announce(session, settings, room, same)
            return
        if holding:  # the event moved: the new request supersedes what was held for the old time
            await release_event_bookings(
                session, settings, data.request_id, "Dogodek je prestavljen na drug termin. / The event was moved."
            )
            await session.flush()
        if wrong is not None:
            refuse(session, settings, envelope, data, room, wrong.in_language(data.language))
            return
        now = utcnow()
        booking_in = room_booking_in(data)
        own_ks = data.ks is not None  # checked above: the room is the event's KS's own
        try:
            created = await book_in_session(
                session,
                db,
                settings,
                booking_in,
                [Interval(data.starts_at, data.ends_at)],
                now=now,
                staff_rules=own_ks,
                confirm=None if own_ks else False,
                created_by=f"events:{data.request_id}",
                event_id=data.request_id,
            )
        except RuleBroken as refused:
            refuse(session, settings, envelope, data, room, refused.message.in_language(data.language))
            return
        log.info(
            "room request booked",
            extra={"ce_id": envelope.id, "event_id": data.request_id, "status": created.bookings[0].status},
        )

    async def on_room_released(session: AsyncSession, envelope: CloudEvent, data: RoomReleased) -> None:
        released = await release_event_bookings(
            session, settings, data.request_id, data.reason or "Dogodek je odpovedan. / The event was cancelled."
        )
        log.info(
            "room released for an event",
            extra={"ce_id": envelope.id, "event_id": data.request_id, "bookings": len(released)},
        )

    bus.consume(
        QUEUES["booking.on-room-requested"],
        Handles(ROOM_REQUESTED, on_room_requested),
        Handles(ROOM_RELEASED, on_room_released),
    )
