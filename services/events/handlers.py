"""events: what it takes off the bus — booking's answers to its room requests, and booking's
room catalogue.

`booking.booking.*` with `event_id` set moves the event on (published once its room is
confirmed, `room-refused` with the reason, back to `pending-room` when the room is lost);
the use case is `service.on_booking_changed`, run in the consumer's transaction.
`booking.room.updated` keeps events' copy of the KS rooms (`rooms.on_room_updated`)."""

from __future__ import annotations

import logging

from sqlmodel.ext.asyncio.session import AsyncSession

from shared.bus import QUEUES, Bus, Handles
from shared.contracts import CloudEvent
from shared.contracts.booking import BOOKING_MESSAGE_TYPES, ROOM_UPDATED, BookingChanged, RoomUpdated
from shared.privacy import answer_exports
from shared.settings import Settings

from . import privacy, rooms, service

log = logging.getLogger("kranj.events.handlers")


def register(bus: Bus, settings: Settings) -> None:
    answer_exports(bus, "events", privacy)  # GDPR access: notify asks, events answers

    async def on_booking_changed(session: AsyncSession, envelope: CloudEvent, data: BookingChanged) -> None:
        outcome = await service.on_booking_changed(session, settings, data)
        log.info(
            "booking answer",
            extra={"ce_id": envelope.id, "event_id": data.event_id, "status": data.status, "outcome": outcome},
        )

    bus.consume(
        QUEUES["events.on-booking-changed"],
        *(Handles(message_type, on_booking_changed) for message_type in BOOKING_MESSAGE_TYPES.values()),
    )

    async def on_room_updated(session: AsyncSession, envelope: CloudEvent, data: RoomUpdated) -> None:
        outcome = await rooms.on_room_updated(session, envelope, data)
        log.info("room catalogue", extra={"ce_id": envelope.id, "room_id": data.room_id, "outcome": outcome})

    bus.consume(QUEUES["events.on-room-updated"], Handles(ROOM_UPDATED, on_room_updated))
