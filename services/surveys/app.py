"""surveys: the wiring root."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from fastapi import FastAPI

from shared.contracts.surveys import SURVEYS_MESSAGE_TYPES
from shared.settings import Settings
from shared.web import ServiceApp, create_service_app

from . import service
from .api import api, pages
from .config import SurveysConfig
from .domain import decimal_comma

HERE = Path(__file__).parent
SERVICE = "surveys"
log = logging.getLogger("kranj.surveys")


def build(settings: Settings, config: SurveysConfig | None = None) -> ServiceApp:
    ctx = ServiceApp.for_service(SERVICE, settings, HERE / "templates")
    ctx.extra["config"] = config or SurveysConfig()
    ctx.templates.env.filters["decimal"] = decimal_comma
    for message_type in SURVEYS_MESSAGE_TYPES:
        ctx.bus.publisher(message_type)

    async def close_due_surveys() -> None:
        """Surveys past their closing time are closed, and `surveys.survey.closed` announced."""
        while True:
            try:
                closed = await service.close_due(ctx.db, settings)
                if closed:
                    log.info("closed %d survey(s) past their closing time", closed)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("closing due surveys failed")
            await asyncio.sleep(ctx.extra["config"].close_check_seconds)

    ctx.background.append(close_due_surveys)

    async def remind_before_closing() -> None:
        """`surveys.survey.closing-soon`, once per survey, `reminder_hours_before` its closing time."""
        config: SurveysConfig = ctx.extra["config"]
        while True:
            try:
                sent = await service.remind_closing_soon(
                    ctx.db,
                    settings,
                    hours_before=config.reminder_hours_before,
                    not_within_hours_of_opening=config.reminder_not_within_hours_of_opening,
                )
                if sent:
                    log.info("announced %d survey(s) closing soon", sent)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("announcing surveys closing soon failed")
            await asyncio.sleep(config.close_check_seconds)

    ctx.background.append(remind_before_closing)
    return ctx


def create_app(
    settings: Settings, *, migrate: bool = True, start_bus: bool = True, config: SurveysConfig | None = None
) -> FastAPI:
    ctx = build(settings, config)
    return create_service_app(
        ctx,
        title="Kranj ZA vse — surveys",
        description=(
            "Needs-assessment surveys of the local communities (KS) of Kranj, and their results. "
            "Answers are anonymous; one network address may answer a survey at most "
            "`KRANJ_SURVEYS_RESPONSES_PER_ADDRESS_PER_DAY` times in 24 hours (default 10; 429 with Retry-After)."
        ),
        routers=[api, pages],
        migrate=migrate,
        start_bus=start_bus,
    )
