"""Held notices follow the quiet hours in force now, through the real path: a normal notice
published on the real broker at 22:00 Europe/Ljubljana under `KRANJ_QUIET_HOURS=21:00-07:00`
is held by the real worker (nothing reaches the real SMTP sink); notify restarted on the same
database with the quiet hours unchanged still holds it; restarted with
`KRANJ_QUIET_HOURS=off` it sends it at once, not at 07:00.

The time is 22:00 of today, frozen in-process with `shared.clock.frozen` (the worker and the
consumer run in this process); no literal dates."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime

import aio_pika
import pytest
from sqlmodel import select
from support.settings import make_settings, wait_until

from services.notify import subscribers
from services.notify.app import create_app
from services.notify.models import Delivery
from shared import clock
from shared.i18n import TZ

pytestmark = pytest.mark.integration


async def publish_notice(amqp_url: str, title: str) -> None:
    envelope = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/komunala-kranj/outages",
        "type": "si.kranj.notify.notice.requested.v1",
        "time": clock.now().isoformat(),
        "data": {"title": title, "body": "Jutri zjutraj ne bo vode.", "ks": ["primskovo"], "topic": "utilities"},
    }
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange("kranj")
        await exchange.publish(
            aio_pika.Message(json.dumps(envelope, ensure_ascii=False).encode()), routing_key="notify.notice.requested"
        )


async def deliveries(app) -> list[tuple[str, str]]:
    async with app.state.ctx.db.session() as s:
        return list((await s.exec(select(Delivery.channel, Delivery.status))).all())


async def test_held_notices_are_released_when_notify_restarts_without_quiet_hours(
    tmp_path, amqp_url, database_url, smtp_server, sms_gateway
):
    def settings(quiet_hours: str):
        return make_settings(
            tmp_path,
            amqp_url,
            notify_database_url=database_url,
            quiet_hours=quiet_hours,
            **smtp_server.settings(),
            **sms_gateway.settings(),
        )

    today = clock.local_now().date()
    evening = datetime(today.year, today.month, today.day, 22, 0, tzinfo=TZ)
    with clock.frozen(evening):
        app = create_app(settings("21:00-07:00"))
        async with app.router.lifespan_context(app):
            await subscribers.add_subscriber(
                app.state.ctx.db,
                subscribers.SubscriberIn(
                    email="ana@example.si", phone="040 123 456", ks=["primskovo"], topics=["utilities"]
                ),
            )
            await publish_notice(amqp_url, "Izklop vode ponoči")

            async def held() -> bool:
                return sorted(await deliveries(app)) == [("email", "held"), ("sms", "held")]

            await wait_until(held, message="both deliveries held for the quiet hours")
            await asyncio.sleep(1.5)  # the worker polls every second: it had its chance
            assert smtp_server.messages == [] and sms_gateway.requests == []

        # The same quiet hours after a restart: still held.
        app = create_app(settings("21:00-07:00"))
        async with app.router.lifespan_context(app):
            await asyncio.sleep(1.5)
            assert sorted(await deliveries(app)) == [("email", "held"), ("sms", "held")]
            assert smtp_server.messages == [] and sms_gateway.requests == []

        # KRANJ_QUIET_HOURS=off: what was held goes out now, not at 07:00.
        app = create_app(settings("off"))
        async with app.router.lifespan_context(app):
            [mail] = await smtp_server.wait_for(1, timeout=10)
            [sms] = await sms_gateway.wait_for(1, timeout=10)

            async def sent() -> bool:
                return sorted(await deliveries(app)) == [("email", "sent"), ("sms", "sent")]

            await wait_until(sent, message="both deliveries sent")
    assert "Izklop vode ponoči" in mail.subject
    assert "Izklop vode" in sms.json["text"]
