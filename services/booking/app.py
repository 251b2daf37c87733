"""booking: the wiring root."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from shared.contracts.booking import BOOKING_MESSAGE_TYPES, ROOM_UPDATED
from shared.periodic import every
from shared.privacy import retention_job
from shared.settings import Settings
from shared.web import ServiceApp, create_service_app

from . import handlers, privacy, rooms
from .api import api
from .decisions import expire_due
from .pages import pages
from .staff_pages import staff_pages
from .staff_rooms import room_pages
from .staff_rules import rules_pages

HERE = Path(__file__).parent
SERVICE = "booking"
EXPIRY_INTERVAL = 60.0  # seconds between sweeps for lapsed requests
CATALOGUE_INTERVAL = 24 * 3600.0  # every room announced at start and once a day (booking.room.updated)


def build(settings: Settings, *, expiry_interval: float = EXPIRY_INTERVAL) -> ServiceApp:
    ctx = ServiceApp.for_service(SERVICE, settings, HERE / "templates")
    for message_type in BOOKING_MESSAGE_TYPES.values():
        ctx.bus.publisher(message_type)
    ctx.bus.publisher(ROOM_UPDATED)
    handlers.register(ctx.bus, settings)

    async def expire_lapsed_requests() -> int:
        total = 0
        while (expired := await expire_due(ctx.db, settings)) > 0:  # batches, until none is left
            total += expired
        return total

    ctx.background.append(every(expiry_interval, expire_lapsed_requests, name="lapsed room requests expired"))

    async def announce_rooms() -> int:
        return await rooms.announce_rooms(ctx.db)

    ctx.background.append(every(CATALOGUE_INTERVAL, announce_rooms, name="room catalogue announced"))
    ctx.background.append(retention_job(privacy.retain, ctx.db, settings))
    return ctx


def create_app(
    settings: Settings, *, migrate: bool = True, start_bus: bool = True, expiry_interval: float = EXPIRY_INTERVAL
) -> FastAPI:
    ctx = build(settings, expiry_interval=expiry_interval)
    return create_service_app(
        ctx,
        title="Kranj ZA vse — booking",
        description=(
            "The community rooms of the local communities (KS) of Kranj, and their bookings. "
            "Residents request a room without a token; staff approve, reject and cancel with one. "
            "Times are RFC 3339; the rooms' rules are in Europe/Ljubljana time."
        ),
        routers=[api, staff_pages, room_pages, rules_pages, pages],
        migrate=migrate,
        start_bus=start_bus,
    )
