"""surveys: the wiring root."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from shared.settings import Settings
from shared.web import ServiceApp, create_service_app

from .api import api, pages

HERE = Path(__file__).parent
SERVICE = "surveys"


def build(settings: Settings) -> ServiceApp:
    ctx = ServiceApp.for_service(SERVICE, settings, HERE / "templates")
    return ctx


def create_app(settings: Settings, *, migrate: bool = True, start_bus: bool = True) -> FastAPI:
    ctx = build(settings)
    return create_service_app(
        ctx,
        title="Kranj ZA vse — surveys",
        description="Needs-assessment surveys of the local communities (KS) of Kranj, and their results.",
        routers=[api, pages],
        migrate=migrate,
        start_bus=start_bus,
    )
