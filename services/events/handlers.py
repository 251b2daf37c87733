"""events: what it takes off the bus — booking's answers to its room requests.

`booking.booking.*` with `event_id` set moves the event on (published once its room is
confirmed, `room-refused` with the reason, back to `pending-room` when the room is lost);
the use case is `service.on_booking_changed`, run in the consumer's transaction."""

from __future__ import annotations

import logging

from sqlmodel.ext.asyncio.session import AsyncSession

from shared.bus import QUEUES, Bus, Handles
from shared.contracts import CloudEvent
from shared.contracts.booking import BOOKING_MESSAGE_TYPES, BookingChanged
from shared.privacy import answer_exports
from shared.settings import Settings

from . import privacy, service

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
