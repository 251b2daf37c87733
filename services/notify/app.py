"""notify: the wiring root."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from shared.contracts.notify import DELIVERY_FAILED, DELIVERY_OUTCOMES, DELIVERY_SENT, NOTICE_REQUESTED
from shared.privacy import retention_job
from shared.settings import Settings
from shared.web import ServiceApp, create_service_app

from . import handlers, privacy
from .api import api, pages
from .board import board
from .board import install_globals as install_board_globals
from .delivery import DeliveryWorker
from .digest import weekly_digest_job
from .links import links
from .manage import manage
from .render import Renderer
from .retention import contact_retention_job
from .staff import staff_pages
from .staff_notices import notice_pages, scheduled_notices_job
from .staff_subscribers import subscriber_pages
from .subscribe import subscribe
from .transports import email_transport, sms_transport

HERE = Path(__file__).parent
SERVICE = "notify"


def build(settings: Settings) -> ServiceApp:
    ctx = ServiceApp.for_service(SERVICE, settings, HERE / "templates")
    ctx.bus.publisher(DELIVERY_OUTCOMES)  # a page of outcomes per group commit (services/notify/sending.py)
    ctx.bus.publisher(DELIVERY_SENT)  # deprecated v1, one per delivery, while KRANJ_DELIVERY_FACTS_V1 is true
    ctx.bus.publisher(DELIVERY_FAILED)
    ctx.bus.publisher(NOTICE_REQUESTED)  # the notices staff write on its pages (services/notify/staff.py)
    renderer = Renderer(settings)
    # The transports are chosen once, here, by configuration (services/notify/transports.py).
    worker = DeliveryWorker(settings, ctx.db, renderer, email_transport(settings), sms_transport(settings))
    # The senders wake when a commit wrote deliveries (notices.record_notice / record_personal
    # mark the session), not after every message consumed: a noticeboard-only notice costs no
    # claim (make bench, ingest).
    ctx.db.on_commit(lambda info: worker.wake() if info.pop("deliveries_written", False) else None)
    handlers.register(ctx.bus, settings, renderer)
    install_board_globals(ctx.templates.env)  # a series' next date on cards, kiosk, poster, bulletin
    ctx.extra.update(renderer=renderer, worker=worker)
    ctx.background.append(worker.run)
    ctx.background.append(weekly_digest_job(ctx.db, settings, on_new_deliveries=worker.wake))
    ctx.background.append(contact_retention_job(ctx.db, settings))
    ctx.background.append(retention_job(privacy.retain, ctx.db, settings))
    ctx.background.append(scheduled_notices_job(ctx.db))  # staff notices scheduled for later
    return ctx


def create_app(settings: Settings, *, migrate: bool = True, start_bus: bool = True) -> FastAPI:
    return create_service_app(
        build(settings),
        title="Kranj ZA vse — notify",
        description="Residents' subscriptions and notices over email, SMS and the KS noticeboard.",
        # board first: /noticeboard/feed.atom is not a KS
        routers=[api, board, subscribe, manage, links, staff_pages, notice_pages, subscriber_pages, pages],
        migrate=migrate,
        start_bus=start_bus,
    )
