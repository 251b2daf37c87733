"""events: the wiring root."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from shared.contracts.booking import ROOM_REQUESTED
from shared.contracts.events import EVENTS_MESSAGE_TYPES
from shared.periodic import every
from shared.privacy import retention_job
from shared.settings import Settings
from shared.web import ServiceApp, create_service_app

from . import handlers, privacy, reminders
from .api import api
from .pages import pages
from .staff_actions import staff_actions
from .staff_pages import staff_pages

HERE = Path(__file__).parent
SERVICE = "events"
REMINDER_INTERVAL = 60.0  # seconds between looks for events starting within 24 hours


def build(settings: Settings, *, reminder_interval: float = REMINDER_INTERVAL) -> ServiceApp:
    ctx = ServiceApp.for_service(SERVICE, settings, HERE / "templates")
    for message_type in EVENTS_MESSAGE_TYPES:
        ctx.bus.publisher(message_type)
    ctx.bus.publisher(ROOM_REQUESTED)

    handlers.register(ctx.bus, settings)

    async def send_reminders() -> int:
        return await reminders.send_reminders(ctx.db, settings)

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
        # the public pages first (/events/osebje before /events/{event_id}); the editor's buttons before the editor
        routers=[api, pages, staff_actions, staff_pages],
        migrate=migrate,
        start_bus=start_bus,
    )
