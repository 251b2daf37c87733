"""events: the wiring root."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from shared.contracts import EVENT_PUBLISHED
from shared.settings import Settings
from shared.web import ServiceApp, create_service_app

from .api import api, pages

HERE = Path(__file__).parent
SERVICE = "events"


def build(settings: Settings) -> ServiceApp:
    ctx = ServiceApp.for_service(SERVICE, settings, HERE / "templates")
    ctx.bus.publisher(EVENT_PUBLISHED)
    return ctx


def create_app(settings: Settings, *, migrate: bool = True, start_bus: bool = True) -> FastAPI:
    ctx = build(settings)
    return create_service_app(
        ctx,
        title="Kranj ZA vse — events",
        description="Community events and workshops of the local communities of Kranj.",
        routers=[api, pages],
        migrate=migrate,
        start_bus=start_bus,
    )
