"""Notify's rules against relaying anyone's words (services/notify/relay.py), on the
in-memory broker: fixed wording for unconfirmed contacts, one message per series, the
daily caps. The attacks through the real services: tests/security/test_relay.py."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from faststream.rabbit import TestRabbitBroker
from sqlmodel import select

from services.notify import subscribers
from services.notify.app import build
from services.notify.models import Delivery, Notice
from shared import clock
from shared.bus import EXCHANGE
from shared.contracts.booking import BOOKING_MESSAGE_TYPES
from shared.contracts.events import REGISTRATION_MESSAGE_TYPES
from shared.migrations import upgrade_async
from shared.settings import Settings

PLATFORM_USER = "guest"
PHISHING = "Vaš račun je zaklenjen. Odklenite na https://evil.example"


@pytest.fixture
async def notify(tmp_path):
    settings = Settings(
        data_dir=tmp_path,
        quiet_hours="off",
        secret_key="component-test-key",
        notify_database_url=f"sqlite+aiosqlite:///{tmp_path}/notify.db",
        unconfirmed_per_contact_daily=3,
        unconfirmed_daily_cap=500,
    )
    await upgrade_async("notify", settings.database_url("notify"))
    ctx = build(settings)
    yield ctx
    await ctx.db.dispose()


def booking(status: str = "requested", n: int = 0, **extra) -> dict:
    start = clock.now().replace(microsecond=0) + timedelta(days=10 + 7 * n)
    data = {
        "booking_id": f"b-{n}-{extra.pop('suffix', '')}",
        "room_id": "ks-primskovo",
        "room_name": "Dom KS Primskovo",
        "ks": "primskovo",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=2)).isoformat(),
        "purpose": PHISHING,
        "attendees": 5,
        "status": status,
        "requester": {"name": "Banka NLB", "email": "zrtev@example.si", "phone": "+38641987654"},
        "cancel_url": "http://127.0.0.1:8002/rooms/prosnja/x/preklic",
        **extra,
    }
    return BOOKING_MESSAGE_TYPES[status].envelope(data, source="/kranj/booking")


async def publish(ctx, envelope: dict, routing_key: str) -> None:
    async with TestRabbitBroker(ctx.bus.broker) as br:
        await br.publish(
            json.dumps(envelope).encode(), exchange=EXCHANGE, routing_key=routing_key, user_id=PLATFORM_USER
        )


async def rows(ctx):
    async with ctx.db.session() as s:
        deliveries = (await s.exec(select(Delivery.channel, Delivery.address, Delivery.status))).all()
        notices = (await s.exec(select(Notice).where(Notice.kind == "personal"))).all()
    return deliveries, notices


async def test_an_unconfirmed_contact_gets_fixed_words_only(notify):
    await publish(notify, booking(), "booking.booking.requested")
    deliveries, notices = await rows(notify)
    assert sorted(deliveries) == [("email", "zrtev@example.si", "queued"), ("sms", "+38641987654", "queued")]
    [notice] = notices
    text = notice.title + notice.body
    for words in ("zaklenjen", "evil.example", "Banka", "NLB"):
        assert words not in text
    assert "niste oddali vi, sporočila prezrite" in text and "/k/" in notice.body


async def test_a_series_is_told_once(notify):
    series = "s-1"
    async with TestRabbitBroker(notify.bus.broker) as br:
        for n in range(8):
            envelope = booking("confirmed", n, series_id=series, staff_vouched=True)
            await br.publish(json.dumps(envelope).encode(), exchange=EXCHANGE, routing_key="booking.booking.confirmed",
                             user_id=PLATFORM_USER)  # fmt: skip
    deliveries, notices = await rows(notify)
    assert sorted(c for c, _, _ in deliveries) == ["email", "sms"]
    [notice] = notices
    assert PHISHING in notice.body  # staff made it: in full
    assert "enako velja za vse njene termine" in notice.body


async def test_the_fourth_message_a_day_to_one_contact_is_not_sent(notify):
    for n in range(4):
        await publish(notify, booking(n=n, suffix=str(n)), "booking.booking.requested")
    deliveries, _ = await rows(notify)
    sms = sorted(s for c, _, s in deliveries if c == "sms")
    assert sms == ["queued", "queued", "queued", "skipped"]


async def test_confirmed_email_in_full_unconfirmed_phone_fixed(notify):
    await subscribers.add_subscriber(
        notify.db, subscribers.SubscriberIn(email="zrtev@example.si", ks=["primskovo"], topics=["general"])
    )
    await publish(notify, booking(), "booking.booking.requested")
    _, notices = await rows(notify)
    by_channel = {tuple(n.channels): n for n in notices}
    assert PHISHING in by_channel[("email",)].body
    assert PHISHING not in by_channel[("sms",)].body


async def test_a_staff_registration_is_told_in_full_a_web_one_fixed(notify):
    start = clock.now().replace(microsecond=0) + timedelta(days=5)
    for channel, phone in (("phone", "+38640111222"), ("web", "+38640111333")):
        data = {
            "registration_id": f"r-{channel}",
            "event_id": "ev-1",
            "ks": "huje",
            "title": "Medgeneracijsko druženje",
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=2)).isoformat(),
            "venue": "MCK",
            "url": "http://127.0.0.1:8001/events/ev-1",
            "status": "confirmed",
            "channel": channel,
            "registrant": {"name": "Franc Novak", "phone": phone},
        }
        envelope = REGISTRATION_MESSAGE_TYPES["confirmed"].envelope(data, source="/kranj/events")
        await publish(notify, envelope, "events.registration.confirmed")
    _, notices = await rows(notify)
    bodies = sorted(n.body for n in notices)
    assert sum("Franc Novak" in b for b in bodies) == 1
    assert sum("niste prijavili vi" in b for b in bodies) == 1
