"""`kranj subscriber erase` across every service: notify's subscription, booking's
requests, the outbox copies of messages that named the resident (booking, surveys), and the
dead letters the platform holds in the real broker (`kranj.dead`, `kranj.rejected`)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, time, timedelta

import aio_pika
import pytest
from sqlmodel import select
from support.settings import TEST_SECRET_KEY, make_settings
from support.times import TZ, day_ahead
from typer.testing import CliRunner

from kranj.cli import app as cli
from services.booking.bookings import request_booking
from services.booking.models import Booking
from services.booking.schemas import BookingIn
from shared.bus import (
    DEAD_QUEUE_NAME,
    DLX_NAME,
    HEADER_QUEUE,
    HEADER_REASON,
    REJECTED_QUEUE_NAME,
    add_to_outbox,
    declare_topology,
    make_broker,
)
from shared.contracts.surveys import RESPONDENT_VOLUNTEERED
from shared.db import Database
from shared.migrations import upgrade_async
from shared.models import OutboxMessage, utcnow
from shared.settings import Settings

pytestmark = pytest.mark.integration
SERVICES = ("notify", "booking", "surveys", "events")


async def _given_a_booking_and_a_volunteer(settings) -> None:
    for name in SERVICES:
        await upgrade_async(name, settings.database_url(name))
    booking_db = Database(settings.database_url("booking"))
    surveys_db = Database(settings.database_url("surveys"))
    try:
        start = datetime.combine(day_ahead(3), time(10), tzinfo=TZ)  # a room is closed on holidays
        request = BookingIn(
            room_id="ks-bitnje",
            starts_at=start,
            ends_at=start + timedelta(hours=2),
            purpose="Sestanek društva",
            name="Tina Zupan",
            email="tina.zupan@example.si",
            phone="041 777 888",
            attendees=5,
        )
        await request_booking(booking_db, settings, request, staff=None)
        async with surveys_db.session() as session:
            add_to_outbox(
                session,
                RESPONDENT_VOLUNTEERED,
                {
                    "survey_id": "s-1",
                    "survey_title": "Potrebe",
                    "ks": "bitnje",
                    "name": "Tina Zupan",
                    "email": "tina.zupan@example.si",
                    "channels": ["email"],
                    "consent_text": "Soglašam.",
                    "consent_at": utcnow().isoformat(),
                    "consent_source": "web",
                },
                source="/kranj/surveys",
            )
            await session.commit()
    finally:
        await booking_db.dispose()
        await surveys_db.dispose()


async def _nothing_left(settings) -> None:
    for name in ("booking", "surveys"):
        db = Database(settings.database_url(name))
        try:
            async with db.session() as session:
                bodies = [row.body for row in (await session.exec(select(OutboxMessage))).all()]
                if name == "booking":
                    [row] = (await session.exec(select(Booking))).all()
                    assert (row.name, row.email, row.phone) == ("[izbrisano]", None, None)
        finally:
            await db.dispose()
        assert bodies, "the outbox rows stay (the record), without the person"
        for body in bodies:
            assert "tina.zupan@example.si" not in body and "+38641777888" not in body
            json.loads(body)  # still valid JSON


# Dead letters held by the platform: (body, reason). Hers name her (body, reason or both),
# in the spellings a sender may use; the others must come through byte for byte.
HERS = [
    (b'{"id": "d-1", "data": {"email": "Tina.Zupan@Example.si", "ks": ["atlantida"]}}', "data.ks.0: unknown KS"),
    (b'{"id": "d-2", "data": {"phone": "+38641777888"}}', "handler failed 5 times"),
    (b"not json, call 041 777 888", "body is not JSON"),
    (b'{"id": "d-4"}', 'data.email: not an address (got "tina.zupan@example.si")'),
]
OTHERS = [
    (b'{"id": "o-1", "data": {"email": "ana.novak@example.si"}}', "data.ks.0: unknown KS"),
    (b"\xff\xfe binary junk", "body is not UTF-8 text"),
    (b'{"id": "o-3", "data": {"phone": "+38640123456"}}', "data.title: Field required"),
]


async def _dead_letters_held(url: str) -> None:
    broker = make_broker(Settings(amqp_url=url), "erasetest")
    await broker.connect()
    try:
        await declare_topology(broker)
    finally:
        await broker.stop()
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        dlx = await channel.get_exchange(DLX_NAME)
        for body, reason in (*HERS[:2], *OTHERS, *HERS[2:]):  # hers and others interleaved
            headers = {HEADER_REASON: reason, HEADER_QUEUE: "notify.on-notice-requested"}
            await dlx.publish(aio_pika.Message(body, headers=headers, delivery_mode=2), routing_key="")
        for reason in ('data.email: not an address (got "tina.zupan@example.si")', "data.ks.0: unknown KS"):
            rejected = json.dumps({"id": "r", "type": "si.kranj.bus.message.rejected.v1", "data": {"reason": reason}})
            await channel.default_exchange.publish(
                aio_pika.Message(rejected.encode(), delivery_mode=2), routing_key=REJECTED_QUEUE_NAME
            )


async def _held_now(url: str, name: str) -> list[tuple[bytes, str]]:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        held = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            held.append((message.body, str((message.headers or {}).get(HEADER_REASON, ""))))
        return held


def _names_her(text: bytes | str) -> bool:
    raw = text.encode() if isinstance(text, str) else text
    lowered = raw.lower()
    return any(n in lowered for n in (b"tina.zupan@example.si", b"+38641777888", b"041 777 888", b"041777888"))


def test_subscriber_erase_reaches_booking_and_surveys(tmp_path, amqp_url, monkeypatch):
    settings = make_settings(tmp_path, amqp_url)
    asyncio.run(_given_a_booking_and_a_volunteer(settings))
    asyncio.run(_dead_letters_held(amqp_url))
    monkeypatch.setenv("KRANJ_AMQP_URL", amqp_url)
    monkeypatch.setenv("KRANJ_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KRANJ_SECRET_KEY", TEST_SECRET_KEY)
    for name in SERVICES:
        monkeypatch.setenv(f"KRANJ_{name.upper()}_DATABASE_URL", settings.database_url(name))

    result = CliRunner().invoke(
        cli, ["subscriber", "erase", "--email", "tina.zupan@example.si", "--phone", "041 777 888"]
    )
    assert result.exit_code == 0, result.output
    assert "booking: bookings 1," in result.output
    assert "surveys: texts masked 0, outbox messages 1" in result.output
    assert "rewrote 4 dead letter(s) in kranj.dead and 1 rejection(s) in kranj.rejected" in result.output
    assert "tina.zupan@example.si" not in result.output and "+38641777888" not in result.output

    # kranj.dead: nothing lost, nothing of hers left; the others untouched and still first, in order.
    dead = asyncio.run(_held_now(amqp_url, DEAD_QUEUE_NAME))
    assert len(dead) == len(HERS) + len(OTHERS)
    assert dead[: len(OTHERS)] == OTHERS
    for body, reason in dead:
        assert not _names_her(body) and not _names_her(reason), (body, reason)
    rewritten = dead[len(OTHERS) :]
    assert [r for _, r in rewritten] == [r.replace("tina.zupan@example.si", "[izbrisano]") for _, r in HERS]
    assert rewritten[0][0] == b'{"id": "d-1", "data": {"email": "[izbrisano]", "ks": ["atlantida"]}}'
    assert rewritten[2][0] == b"not json, call [izbrisano]"
    rejected = asyncio.run(_held_now(amqp_url, REJECTED_QUEUE_NAME))
    assert len(rejected) == 2 and not any(_names_her(body) for body, _ in rejected)
    assert [json.loads(body)["data"]["reason"] for body, _ in rejected] == [
        "data.ks.0: unknown KS",
        'data.email: not an address (got "[izbrisano]")',
    ]

    asyncio.run(_nothing_left(settings))
    for path in tmp_path.glob("*.db*"):
        assert b"tina.zupan@example.si" not in path.read_bytes(), path.name
