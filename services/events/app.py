"""events: the wiring root."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.bus import QUEUES, Handles
from shared.contracts import CloudEvent
from shared.contracts.booking import BOOKING_MESSAGE_TYPES, ROOM_REQUESTED, BookingChanged
from shared.contracts.events import EVENTS_MESSAGE_TYPES
from shared.periodic import every
from shared.privacy import retention_job
from shared.settings import Settings
from shared.web import ServiceApp, create_service_app

from . import privacy, service
from .api import api, pages

HERE = Path(__file__).parent
SERVICE = "events"
log = logging.getLogger("kranj.events.handlers")
REMINDER_INTERVAL = 60.0  # seconds between looks for events starting within 24 hours


def build(settings: Settings, *, reminder_interval: float = REMINDER_INTERVAL) -> ServiceApp:
    ctx = ServiceApp.for_service(SERVICE, settings, HERE / "templates")
    for message_type in EVENTS_MESSAGE_TYPES:
        ctx.bus.publisher(message_type)
    ctx.bus.publisher(ROOM_REQUESTED)

    async def on_booking_changed(session: AsyncSession, envelope: CloudEvent, data: BookingChanged) -> None:
        outcome = await service.on_booking_changed(session, settings, data)
        log.info(
            "booking answer",
            extra={"ce_id": envelope.id, "event_id": data.event_id, "status": data.status, "outcome": outcome},
        )

    ctx.bus.consume(
        QUEUES["events.on-booking-changed"],
        *(Handles(message_type, on_booking_changed) for message_type in BOOKING_MESSAGE_TYPES.values()),
    )

    async def send_reminders() -> int:
        return await service.send_reminders(ctx.db, settings)

    ctx.background.append(every(reminder_interval, send_reminders, name="event reminders sent"))
    ctx.background.append(retention_job(privacy.retain, ctx.db, settings))
    return ctx


def create_app(
    settings: Settings, *, migrate: bool = True, start_bus: bool = True, reminder_interval: float = REMINDER_INTERVAL
) -> FastAPI:
    ctx = build(settings, reminder_interval=reminder_interval)
    return create_service_app(
        ctx,
        title="Kranj ZA vse — events",
        description=(
            "Community events and workshops of the local communities of Kranj: sign-up with a waitlist, "
            "reminders, iCalendar and Atom feeds. Residents register without a token; staff create, change, "
            "publish and cancel with one. Times are RFC 3339; recurring events expand in Europe/Ljubljana time."
        ),
        routers=[api, pages],
        migrate=migrate,
        start_bus=start_bus,
    )
