"""The weekly digest through the real path: a resident chooses it on the sign-up page (and can
change it on their manage page), confirms by the emailed link, gets no single email for a
notice published through the real broker, and on Monday at 07:00 Europe/Ljubljana the real
delivery worker sends them the digest, which the real SMTP sink receives.

Times are built from the platform clock: "next Monday 07:05" after now, frozen in-process
(the worker runs in this process and claims by the same clock)."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import aio_pika
import httpx
import pytest
from sqlmodel import select
from staff_login import form_token
from support.settings import make_settings, wait_until

from services.notify.app import create_app
from services.notify.digest import DIGEST_HOUR, run_digests
from services.notify.models import Delivery, Subscriber
from shared import clock
from shared.i18n import TZ, format_span
from shared.senders import amqp_user

pytestmark = pytest.mark.integration


@pytest.fixture
async def notify_app(tmp_path, amqp_url, database_url, smtp_server):
    settings = make_settings(tmp_path, amqp_url, notify_database_url=database_url, **smtp_server.settings())
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


def client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t")


def next_monday_morning(after: datetime) -> datetime:
    """07:05 Europe/Ljubljana on the first Monday whose digest slot (07:00) is after `after`
    (aware, UTC): its digest covers the week in which `after` falls. Not "07:05 after
    `after`": a test that starts on a Monday between 07:00 and 07:05 would get that very
    morning's digest, whose week ended before the test wrote anything."""
    day = after.astimezone(TZ).date()
    while True:
        slot = datetime(day.year, day.month, day.day, DIGEST_HOUR, tzinfo=TZ)
        if day.weekday() == 0 and slot > after:
            return (slot + timedelta(minutes=5)).astimezone(UTC)
        day += timedelta(days=1)


def cloud_event(event_type: str, source: str, data: dict) -> dict:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": source,
        "type": event_type,
        "time": clock.now().isoformat(),
        "data": data,
    }


async def publish_notice(amqp_url: str, title: str, body: str) -> None:
    """An outside system's notice, published as a plain AMQP client would."""
    envelope = cloud_event(
        "si.kranj.notify.notice.requested.v1",
        "/komunala-kranj/outages",
        {"title": title, "body": body, "ks": ["primskovo"], "topic": "utilities"},
    )
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange("kranj")
        await exchange.publish(
            aio_pika.Message(json.dumps(envelope, ensure_ascii=False).encode()), routing_key="notify.notice.requested"
        )


async def sign_up_for_the_digest(app, smtp_server, email: str, topics: tuple[str, ...] = ("utilities",)) -> None:
    async with client(app) as c:
        page = await c.get("/subscribe")
        assert 'name="digest" value="weekly"' in page.text  # the choice is on the sign-up page
        form = {
            "email": email,
            "ks": ["primskovo"],
            "topics": list(topics),
            "channels": ["email"],
            "digest": "weekly",
            "consent": "yes",
        }
        answer = await c.post("/subscribe", data={**form, "csrf_token": await form_token(c, "/subscribe")})
        assert answer.status_code == 200, answer.text[:300]
        [confirm] = await smtp_server.wait_for(1)
        link = re.search(r"http://127\.0\.0\.1:8004(/subscribe/confirm/\S+)", confirm.part("text/plain"))[1]
        assert (await c.get(link)).status_code == 200


async def test_a_digest_subscriber_gets_the_weekly_digest_by_the_real_worker(notify_app, amqp_url, smtp_server):
    db = notify_app.state.ctx.db
    await sign_up_for_the_digest(notify_app, smtp_server, "tedenski@example.si")
    async with db.session() as s:
        sub = (await s.exec(select(Subscriber).where(Subscriber.email == "tedenski@example.si"))).one()
    assert sub.digest is True and sub.status == "active"

    title = f"Izklop vode na Zlatem polju {uuid.uuid4().hex[:6]}"
    await publish_notice(amqp_url, title, "V četrtek med 8. in 12. uro ne bo vode.")

    async def notice_recorded() -> bool:
        async with db.session() as s:
            from services.notify.models import Notice

            return (await s.exec(select(Notice).where(Notice.title == title))).first() is not None

    await wait_until(notice_recorded, message="the notice consumed from the broker")
    await asyncio.sleep(0.5)
    assert len(smtp_server.messages) == 1  # only the confirmation: no single email per notice

    monday = next_monday_morning(clock.now())
    with clock.frozen(monday):
        assert await run_digests(db, notify_app.state.ctx.settings) == 1
        notify_app.state.ctx.extra["worker"].wake()
        mails = await smtp_server.wait_for(2, timeout=15)
        digest = mails[1]

        async def digest_delivery() -> str | None:
            async with db.session() as s:
                return (await s.exec(select(Delivery.status).where(Delivery.subscriber_id == sub.id))).first()

        await wait_until(lambda: _equals(digest_delivery, "sent"), message="the digest delivery recorded as sent")
    assert digest.rcpt_tos == ["tedenski@example.si"]
    assert digest.subject == "Ta teden v KS Primskovo"
    text = digest.part("text/plain")
    assert title in text and "V četrtek med 8. in 12. uro ne bo vode." in text
    assert title in digest.part("text/html")
    assert "http://127.0.0.1:8004/manage/" in text
    assert digest.message["List-Unsubscribe"].startswith("<http://127.0.0.1:8004/unsubscribe/")
    assert digest.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert digest.message["Content-Language"] == "sl"


async def test_a_weekly_series_lists_each_of_its_dates_of_the_week(notify_app, amqp_url, smtp_server):
    """A series that began last week: the digest lists its dates of the coming week (not only
    the first date, long past) and says how many come after (found in issue 18's review: the
    digest showed an event's first date only, and a series whose first date had passed fell
    out of the digest altogether)."""
    db = notify_app.state.ctx.db
    await sign_up_for_the_digest(notify_app, smtp_server, "serija@example.si", topics=("events",))
    first = clock.now() + timedelta(hours=1)
    # The Monday after the first date is over: on a Monday before 07:00 the coming digest is
    # that morning's, and a date that ends after 07:00 would still be on it.
    monday = next_monday_morning(first + timedelta(hours=2))
    evening = monday.astimezone(TZ).replace(hour=18, minute=0)
    dates = [(first, first + timedelta(hours=2))] + [
        ((evening + timedelta(days=d)).astimezone(UTC), (evening + timedelta(days=d, hours=2)).astimezone(UTC))
        for d in (1, 3, 8)  # Tuesday and Thursday of the digest's week, and the Tuesday after
    ]
    title = f"Telovadba za starejše {uuid.uuid4().hex[:6]}"
    envelope = cloud_event(
        "si.kranj.events.event.published.v1",
        "/events",
        {
            "event_id": str(uuid.uuid4()),
            "ks": "primskovo",
            "title": title,
            "starts_at": dates[0][0].isoformat(),
            "ends_at": dates[0][1].isoformat(),
            "venue": "Dom krajanov Primskovo",
            "url": "http://127.0.0.1:8001/events/serija",
            "rrule": "FREQ=WEEKLY",
            "dates": [{"starts_at": a.isoformat(), "ends_at": b.isoformat()} for a, b in dates],
        },
    )
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange("kranj")
        await exchange.publish(
            aio_pika.Message(json.dumps(envelope).encode(), user_id=amqp_user(amqp_url)),
            routing_key="events.event.published",
        )

    async def on_the_board() -> bool:
        async with db.session() as s:
            from services.notify.models import Notice

            return (await s.exec(select(Notice).where(Notice.title == title))).first() is not None

    await wait_until(on_the_board, message="the series consumed from the broker")
    with clock.frozen(monday):
        assert await run_digests(db, notify_app.state.ctx.settings) == 1
        notify_app.state.ctx.extra["worker"].wake()
        mails = await smtp_server.wait_for(2, timeout=15)
    digest = mails[1]
    assert digest.rcpt_tos == ["serija@example.si"]
    text, html = digest.part("text/plain"), digest.part("text/html")
    listed = [format_span(*dates[1]), format_span(*dates[2])]
    assert f"* {title}\n  Kdaj:\n  - {listed[0]}\n  - {listed[1]}\n  Pozneje še 1 termin.\n" in text
    assert format_span(*dates[0]) not in text and format_span(*dates[3]) not in text
    assert f"{listed[0]}<br>\n{listed[1]}<br>\nPozneje še 1 termin." in html


async def _equals(read, expected) -> bool:
    return await read() == expected


async def test_the_manage_page_offers_and_changes_the_digest(notify_app, smtp_server):
    db = notify_app.state.ctx.db
    renderer = notify_app.state.ctx.extra["renderer"]
    from services.notify import subscribers

    ana = await subscribers.add_subscriber(
        db, subscribers.SubscriberIn(email="ana@example.si", ks=["primskovo"], topics=["utilities"])
    )
    assert ana.digest is False
    url = f"/manage/{renderer.manage_token(ana.id)}"
    form = {"ks": ["primskovo"], "topics": ["utilities"], "channels": ["email"], "language": "sl"}
    async with client(notify_app) as c:
        page = await c.get(url)
        assert 'name="digest" value="weekly"' in page.text and "tedenski pregled" in page.text
        saved = await c.post(url, data={**form, "digest": "weekly", "csrf_token": await form_token(c, url)})
        assert saved.status_code == 200
        assert (await subscribers.get_subscription(db, ana.id)).digest is True
        assert re.search(r'value="weekly" checked', (await c.get(url)).text)
        await c.post(url, data={**form, "digest": "each", "csrf_token": await form_token(c, url)})
        assert (await subscribers.get_subscription(db, ana.id)).digest is False
