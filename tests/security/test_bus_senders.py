"""Issue 15, finding 4: "Any outside system can send an urgent, city-wide notice at 3 a.m."

What a message may do depends on who provably sent it: the AMQP `user_id` property, which
RabbitMQ checks against the connection's own user, matched against the registry of senders
(KRANJ_SENDERS, shared/senders.py). The CloudEvent `source` proves nothing. Everything here
runs against the real broker (a vhost and broker users of the test's own) and a running
notify with a real SMTP server and SMS gateway."""

from __future__ import annotations

import contextlib
import json
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aio_pika
import aiormq
import pytest
from sqlmodel import select
from support.rabbit import publish_bare, rabbitmqctl_batch, vhost_of
from support.settings import make_settings, wait_until

from services.events.app import create_app as create_events
from services.notify import notices, subscribers
from services.notify.app import create_app as create_notify
from services.notify.models import Delivery
from shared import clock
from shared.bus import (
    DEAD_QUEUE_NAME,
    HEADER_REASON,
    HEADER_SENDER,
    REJECTED_QUEUE_NAME,
    add_to_outbox,
)
from shared.contracts import EVENT_PUBLISHED
from shared.models import ProcessedMessage

pytestmark = pytest.mark.integration

ATTACK_SOURCE = "/mestna-obcina-kranj/civilna-zascita"  # made up: nobody checks a source


# --------------------------------------------------------------------------------------
# Broker users of this test (RabbitMQ users are global: unique names, deleted afterwards)
# --------------------------------------------------------------------------------------
class Sender:
    def __init__(self, amqp_url: str, role: str) -> None:
        self.name = f"test-{role}-{uuid.uuid4().hex[:8]}"
        self.password = uuid.uuid4().hex
        parts = urllib.parse.urlsplit(amqp_url)
        netloc = f"{urllib.parse.quote(self.name)}:{self.password}@{parts.hostname}:{parts.port or 5672}"
        self.url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        self.vhost = vhost_of(amqp_url)

    def create(self) -> list[list[str]]:
        """The rabbitmqctl commands that make this user."""
        return [
            ["add_user", self.name, self.password],
            # What deploy/rabbitmq gives an outside system: publish on `kranj`, nothing else.
            ["set_permissions", "-p", self.vhost, self.name, "^$", "^kranj$", "^$"],
        ]


@pytest.fixture
def senders(amqp_url: str) -> Iterator[dict[str, Sender]]:
    made = {role: Sender(amqp_url, role) for role in ("komunala", "primskovo", "stranger")}
    try:
        rabbitmqctl_batch([command for sender in made.values() for command in sender.create()])
        yield made
    finally:
        rabbitmqctl_batch([["delete_user", sender.name] for sender in made.values()], cleanup=True)


def registry(senders: dict[str, Sender]) -> str:
    return json.dumps(
        {
            # The utility: every KS, utilities and safety, urgent and city-wide allowed.
            senders["komunala"].name: {
                "description": "Komunala Kranj",
                "topics": ["utilities", "safety"],
                "urgent": True,
                "city_wide": True,
            },
            # One KS's own system: its KS only, nothing urgent.
            senders["primskovo"].name: {"description": "KS Primskovo", "ks": ["primskovo"]},
            # senders["stranger"] has a broker user but no entry: ordinary rights.
        }
    )


def quiet_hours_now() -> str:
    """A quiet-hours window around the current Ljubljana time (from the platform's clock)."""
    here = clock.now().astimezone(ZoneInfo("Europe/Ljubljana"))
    return f"{(here - timedelta(hours=2)):%H:%M}-{(here + timedelta(hours=2)):%H:%M}"


@contextlib.asynccontextmanager
async def running_notify(tmp_path, amqp_url, smtp_server, sms_gateway, senders, **overrides: Any) -> AsyncIterator[Any]:
    settings = make_settings(
        tmp_path,
        amqp_url,
        senders=registry(senders),
        retry_base_seconds=0.05,
        **smtp_server.settings(),
        **sms_gateway.settings(),
        **overrides,
    )
    app = create_notify(settings)
    async with app.router.lifespan_context(app):
        ctx = app.state.ctx
        for email, phone, ks in (
            ("ana@example.si", "040 123 456", "primskovo"),
            ("janez@example.si", "041 222 333", "huje"),
            ("meta@example.si", None, "center"),
        ):
            await subscribers.add_subscriber(
                ctx.db,
                subscribers.SubscriberIn(
                    email=email, phone=phone, ks=[ks], topics=["general", "utilities", "safety", "events"]
                ),
            )
        yield app


# --------------------------------------------------------------------------------------
# Messages and the broker
# --------------------------------------------------------------------------------------
def notice(**data: Any) -> tuple[str, bytes]:
    ce_id = str(uuid.uuid4())
    body = {
        "specversion": "1.0",
        "id": ce_id,
        "source": data.pop("source", "/komunala-kranj/outages"),
        "type": "si.kranj.notify.notice.requested.v1",
        "time": clock.now().isoformat(),
        "data": {
            "title": "Izklop vode na Primskovem",
            "body": "V četrtek med 8. in 12. uro ne bo vode.",
            "ks": ["primskovo"],
            "topic": "utilities",
            **data,
        },
    }
    return ce_id, json.dumps(body, ensure_ascii=False).encode()


def event_fact(event_id: str) -> dict[str, Any]:
    starts = (clock.now() + timedelta(days=9)).replace(hour=17, minute=0, second=0, microsecond=0)
    return {
        "event_id": event_id,
        "ks": "primskovo",
        "title": f"Delavnica {event_id}",
        "description": "Kaj potrebujemo?",
        "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(hours=2)).isoformat(),
        "venue": "Dom KS Primskovo",
        "url": f"http://127.0.0.1:8001/events/{event_id}",
    }


async def publish_as(
    sender: Sender, body: bytes, *, routing_key: str = "notify.notice.requested", user_id: str | None = None
) -> None:
    """Publish over `sender`'s own connection with `user_id` (default: its own name)."""
    connection = await aio_pika.connect(sender.url, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.get_exchange("kranj", ensure=False)
        await exchange.publish(
            aio_pika.Message(body, user_id=user_id or sender.name, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=routing_key,
            mandatory=True,
            timeout=10,
        )


async def dead_letters(amqp_url: str) -> dict[str, aio_pika.abc.AbstractIncomingMessage]:
    """kranj.dead by CloudEvent id (browsed: each is put back)."""
    return {json.loads(m.body)["id"]: m for m in await _browse(amqp_url, DEAD_QUEUE_NAME)}


async def rejections(amqp_url: str) -> dict[str, dict[str, Any]]:
    """bus.message.rejected data by the rejected message's CloudEvent id."""
    found = [json.loads(m.body)["data"] for m in await _browse(amqp_url, REJECTED_QUEUE_NAME)]
    return {r["id"]: r for r in found}


async def _browse(amqp_url: str, queue_name: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(queue_name, ensure=False)
        taken = []
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            taken.append(message)
        for message in taken:
            await message.nack(requeue=True)
        return taken


async def expect_refused(amqp_url: str, ce_id: str, *words: str) -> dict[str, Any]:
    """`ce_id` is in kranj.dead with a reason naming `words`, and bus.message.rejected says so."""

    async def dead() -> bool:
        return ce_id in await dead_letters(amqp_url)

    await wait_until(dead, timeout=20, message=f"{ce_id} in kranj.dead")
    letter = (await dead_letters(amqp_url))[ce_id]
    reason = str((letter.headers or {})[HEADER_REASON])
    assert reason.startswith("not allowed"), reason
    for word in words:
        assert word in reason, (word, reason)

    async def told() -> bool:
        return ce_id in await rejections(amqp_url)

    await wait_until(told, timeout=20, message=f"bus.message.rejected for {ce_id}")
    rejected = (await rejections(amqp_url))[ce_id]
    assert rejected["reason"] == reason
    return {"reason": reason, "letter": letter, "rejected": rejected}


async def deliveries(app: Any) -> list[tuple[str, str]]:
    async with app.state.ctx.db.session() as session:
        return sorted((await session.exec(select(Delivery.channel, Delivery.status))).all())


# --------------------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------------------
async def test_the_3am_attack_is_dead_lettered_and_an_anonymous_ordinary_notice_still_goes_out(
    tmp_path, amqp_url, smtp_server, sms_gateway, senders
):
    """(a) The exact attack: a plain message (no properties, so no user_id) with urgent,
    ks ["*"], a phishing link and a made-up source, during quiet hours: nothing is sent,
    it is in kranj.dead with the reason, and bus.message.rejected says why.
    (b) An anonymous ordinary notice for one KS still goes out (CONTRACT.md)."""
    async with running_notify(
        tmp_path, amqp_url, smtp_server, sms_gateway, senders, quiet_hours=quiet_hours_now()
    ) as app:
        attack_id, attack = notice(
            title="NUJNO: zaprta voda v vsem Kranju",
            body="Zaradi onesnaženja potrdite naslov za nadomestno vodo.",
            ks=["*"],
            topic="safety",
            urgency="urgent",
            url="https://kranj-voda.example.com/potrdi",
            source=ATTACK_SOURCE,
        )
        await publish_bare(amqp_url, attack, routing_key="notify.notice.requested")

        refused = await expect_refused(amqp_url, attack_id, "anonymous", "urgent", 'ks: ["*"]')
        assert refused["rejected"]["source"] == ATTACK_SOURCE
        assert refused["rejected"]["type"] == "si.kranj.notify.notice.requested.v1"
        assert (refused["letter"].headers or {})[HEADER_SENDER] == ""  # anonymous

        # Nothing went out, nothing was even recorded, on no board.
        assert smtp_server.messages == [] and sms_gateway.requests == []
        assert await deliveries(app) == []
        assert await notices.noticeboard(app.state.ctx.db, None) == []

    # (b) Quiet hours off (the test default): the same plain client, an ordinary notice.
    async with running_notify(tmp_path / "b", amqp_url, smtp_server, sms_gateway, senders) as app:
        ordinary_id, ordinary = notice()
        await publish_bare(amqp_url, ordinary, routing_key="notify.notice.requested")
        [mail] = await smtp_server.wait_for(1)
        [sms] = await sms_gateway.wait_for(1)
        assert mail.rcpt_tos == ["ana@example.si"] and "Izklop vode na Primskovem" in mail.subject
        assert sms.json["to"] == "+38640123456"
        assert [n.title for n in await notices.noticeboard(app.state.ctx.db, "primskovo")] == [
            "Izklop vode na Primskovem"
        ]
        assert ordinary_id not in await dead_letters(amqp_url)


async def test_a_registered_sender_with_the_urgent_right_is_heard_during_quiet_hours(
    tmp_path, amqp_url, smtp_server, sms_gateway, senders
):
    """(c) The utility's own broker user, registered with urgent and city-wide rights: its
    urgent notice goes out at once during quiet hours; its normal one waits for morning."""
    komunala = senders["komunala"]
    async with running_notify(
        tmp_path, amqp_url, smtp_server, sms_gateway, senders, quiet_hours=quiet_hours_now()
    ) as app:
        normal_id, normal = notice(title="Redno vzdrževanje hidrantov")
        urgent_id, urgent = notice(title="Okvara vodovoda", urgency="urgent", ks=["*"])
        await publish_as(komunala, normal)
        await publish_as(komunala, urgent)

        mails = await smtp_server.wait_for(3)  # ana, janez and meta: city-wide
        assert sorted(m.rcpt_tos[0] for m in mails) == ["ana@example.si", "janez@example.si", "meta@example.si"]
        assert all("Okvara vodovoda" in m.subject for m in mails)
        sms = await sms_gateway.wait_for(2)
        assert sorted(r.json["to"] for r in sms) == ["+38640123456", "+38641222333"]
        assert all("Okvara vodovoda" in r.json["text"] for r in sms)

        async with app.state.ctx.db.session() as session:
            processed = set((await session.exec(select(ProcessedMessage.message_id))).all())
        assert {normal_id, urgent_id} <= processed  # both accepted; the normal one is held
        assert not any("hidrantov" in m.subject for m in smtp_server.messages)
        assert await dead_letters(amqp_url) == {}


async def test_senders_are_held_to_their_ks_topics_and_rights(tmp_path, amqp_url, smtp_server, sms_gateway, senders):
    """(d) A sender publishing beyond its KS rights (or topics, or urgency) is refused with
    the reason; within them it is heard. A broker user with no entry has ordinary rights."""
    primskovo, komunala, stranger = senders["primskovo"], senders["komunala"], senders["stranger"]
    async with running_notify(tmp_path, amqp_url, smtp_server, sms_gateway, senders) as app:
        beyond_id, beyond = notice(title="Zbor krajanov", ks=["primskovo", "huje"], topic="general")
        await publish_as(primskovo, beyond)
        refused = await expect_refused(amqp_url, beyond_id, primskovo.name, "huje")
        assert (refused["letter"].headers or {})[HEADER_SENDER] == primskovo.name

        urgent_id, urgent = notice(title="Nujno", urgency="urgent", topic="general")
        await publish_as(primskovo, urgent)
        await expect_refused(amqp_url, urgent_id, primskovo.name, "urgent")

        topic_id, topic = notice(title="Koncert", topic="events", ks=["huje"])
        await publish_as(komunala, topic)
        await expect_refused(amqp_url, topic_id, komunala.name, "topic 'events'")

        city_id, city = notice(title="Vsem", ks=["*"], topic="general")
        await publish_as(stranger, city)
        await expect_refused(amqp_url, city_id, stranger.name, "not in the registry", 'ks: ["*"]')

        within_id, within = notice(title="Zbor krajanov Primskovo", topic="general")
        await publish_as(primskovo, within)
        [mail] = await smtp_server.wait_for(1)
        assert mail.rcpt_tos == ["ana@example.si"] and "Zbor krajanov Primskovo" in mail.subject
        assert within_id not in await dead_letters(amqp_url)
        assert {n.title for n in await notices.noticeboard(app.state.ctx.db, None)} == {"Zbor krajanov Primskovo"}


async def test_platform_facts_are_accepted_only_from_their_owning_service(
    tmp_path, amqp_url, smtp_server, sms_gateway, senders
):
    """(e) events.event.published from an outside broker user, or anonymous, is refused;
    the events service's own outbox relay (its connection's user as user_id) is heard."""
    async with running_notify(tmp_path, amqp_url, smtp_server, sms_gateway, senders) as notify:
        forged_by_user = EVENT_PUBLISHED.envelope(event_fact("ev-outside"), source="/kranj/events")
        await publish_as(senders["komunala"], json.dumps(forged_by_user).encode(), routing_key="events.event.published")
        await expect_refused(amqp_url, forged_by_user["id"], "events.event.published", senders["komunala"].name)

        forged_anonymous = EVENT_PUBLISHED.envelope(event_fact("ev-anonymous"), source="/kranj/events")
        await publish_bare(amqp_url, json.dumps(forged_anonymous), routing_key="events.event.published")
        await expect_refused(amqp_url, forged_anonymous["id"], "events.event.published", "anonymous")
        assert await notices.noticeboard(notify.state.ctx.db, None) == []

        # The real events service, its outbox and relay (locally every service is `guest`).
        events = create_events(make_settings(tmp_path / "events", amqp_url))
        async with events.router.lifespan_context(events):
            async with events.state.ctx.db.session() as session:
                own = add_to_outbox(session, EVENT_PUBLISHED, event_fact("ev-own"), source="/kranj/events")
                await session.commit()

            async def on_the_board() -> bool:
                board = await notices.noticeboard(notify.state.ctx.db, "primskovo")
                return [n.title for n in board] == ["Delavnica ev-own"]

            await wait_until(on_the_board, timeout=20, message="the events service's own fact on the board")
        assert own["id"] not in await dead_letters(amqp_url)


async def test_a_forged_user_id_is_refused_by_the_broker_itself(tmp_path, amqp_url, smtp_server, sms_gateway, senders):
    """(f) The platform relies on a real broker guarantee: a publish whose user_id is not
    the connection's own user never reaches a queue; RabbitMQ closes the channel with
    PRECONDITION_FAILED. (Both the registered utility and the platform's user are tried.)"""
    stranger = senders["stranger"]
    async with running_notify(tmp_path, amqp_url, smtp_server, sms_gateway, senders) as app:
        for claimed in (senders["komunala"].name, "guest"):
            forged_id, forged = notice(title="Ponarejeno", urgency="urgent", ks=["*"])
            with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed) as caught:
                await publish_as(stranger, forged, user_id=claimed)
            assert f"user_id property set to '{claimed}'" in str(caught.value)
            assert f"authenticated user was '{stranger.name}'" in str(caught.value)

        # A message after them is handled: had a forged one got through, it would be first.
        after_id, after = notice(title="Po ponaredku")
        await publish_as(stranger, after)
        [mail] = await smtp_server.wait_for(1)
        assert "Po ponaredku" in mail.subject
        assert [t for t in (n.title for n in await notices.noticeboard(app.state.ctx.db, None))] == ["Po ponaredku"]
        assert await dead_letters(amqp_url) == {}
