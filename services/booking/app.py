"""booking: the wiring root."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from shared.auth import TokenSigner
from shared.bus import Bus
from shared.db import Database
from shared.settings import Settings
from shared.web import ServiceApp, create_service_app, make_templates

from .api import api, pages

HERE = Path(__file__).parent
SERVICE = "booking"


def build(settings: Settings) -> ServiceApp:
    db = Database(settings.database_url(SERVICE))
    bus = Bus(settings, SERVICE, db)
    return ServiceApp(
        service=SERVICE,
        settings=settings,
        db=db,
        bus=bus,
        templates=make_templates(HERE / "templates", settings),
        signer=TokenSigner(settings),
    )


def create_app(settings: Settings, *, migrate: bool = True, start_bus: bool = True) -> FastAPI:
    ctx = build(settings)
    return create_service_app(
        ctx,
        title="Kranj ZA vse — booking",
        description="The community rooms of the local communities (KS) of Kranj, and their bookings.",
        routers=[api, pages],
        migrate=migrate,
        start_bus=start_bus,
    )
