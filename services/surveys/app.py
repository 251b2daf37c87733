"""surveys: the wiring root."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import cast

from fastapi import FastAPI

from shared.contracts.surveys import SURVEYS_MESSAGE_TYPES
from shared.periodic import every
from shared.privacy import retention_job
from shared.settings import Settings
from shared.web import ServiceApp, create_service_app

from . import handlers, privacy, surveys
from .api import api
from .config import SurveysConfig
from .pages import pages, paper_pages
from .staff_actions import survey_staff
from .staff_pages import console
from .tally import decimal_comma

HERE = Path(__file__).parent
SERVICE = "surveys"
log = logging.getLogger("kranj.surveys")


def build(settings: Settings, config: SurveysConfig | None = None) -> ServiceApp:
    ctx = ServiceApp.for_service(SERVICE, settings, HERE / "templates")
    ctx.extra["config"] = config or SurveysConfig()
    ctx.templates.env.filters["decimal"] = decimal_comma
    for message_type in SURVEYS_MESSAGE_TYPES:
        ctx.bus.publisher(message_type)
    handlers.register(ctx.bus, settings)

    config = cast(SurveysConfig, ctx.extra["config"])

    async def close_due_surveys() -> int:
        """Surveys past their closing time are closed, and `surveys.survey.closed` announced."""
        return await surveys.close_due(ctx.db, settings)

    async def remind_before_closing() -> int:
        """`surveys.survey.closing-soon`, once per survey, `reminder_hours_before` its closing time."""
        return await surveys.remind_closing_soon(
            ctx.db,
            settings,
            hours_before=config.reminder_hours_before,
            not_within_hours_of_opening=config.reminder_not_within_hours_of_opening,
        )

    check = lambda: ctx.extra["config"].close_check_seconds  # noqa: E731 - read each round (tests change it)
    ctx.background.append(every(check, close_due_surveys, name="surveys past their closing time closed"))
    ctx.background.append(every(check, remind_before_closing, name="surveys closing soon announced"))
    ctx.background.append(retention_job(privacy.retain, ctx.db, settings))
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
        routers=[api, console, survey_staff, paper_pages, pages],  # the console's /surveys/osebje before /surveys/{id}
        migrate=migrate,
        start_bus=start_bus,
    )
