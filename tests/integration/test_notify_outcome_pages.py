"""notify's delivery outcomes as `notify.delivery.outcomes` v2 pages (issue 20 §4), on the real
broker, SQLite and PostgreSQL, a real SMTP server and a real HTTP SMS gateway: a fan-out's
pages name every delivery exactly once with its status (a gateway refusal as failed), one
page per group commit rather than one event per delivery; the deprecated per-delivery
`notify.delivery.sent|failed` v1 events go out beside them while KRANJ_DELIVERY_FACTS_V1 is
true (the default) and not at all when it is false."""

from __future__ import annotations

import json
import uuid
from collections import Counter

import aio_pika
import pytest
import sqlalchemy as sa
from support.settings import make_settings, wait_until

from services.notify import notices, subscribers
from services.notify.app import create_app
from services.notify.models import Delivery, NoticeDraft
from shared.contracts import parse_data, parse_envelope
from shared.contracts.notify import (
    DELIVERY_FAILED,
    DELIVERY_OUTCOMES,
    DELIVERY_SENT,
    OUTCOMES_PAGE_SIZE,
    DeliveryOutcome,
)
from shared.models import OutboxMessage, table_of

pytestmark = pytest.mark.integration
RESIDENTS = 24


@pytest.mark.parametrize("v1", [True, False], ids=["v1-on", "v1-off"])
async def test_a_fan_out_s_outcomes_go_out_in_pages_naming_each_delivery_once(
    v1, tmp_path, amqp_url, database_url, smtp_server, sms_gateway
):
    overrides = {} if v1 else {"delivery_facts_v1": False}  # on: the setting's default
    settings = make_settings(
        tmp_path, amqp_url, notify_database_url=database_url, smtp_connections=4, sms_per_second=10_000,
        email_per_second=10_000, **overrides, **smtp_server.settings(), **sms_gateway.settings(),
    )  # fmt: skip
    assert settings.delivery_facts_v1 is v1
    # Another system listens for every notify.delivery.* on the real broker.
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    queue = await channel.declare_queue(f"test.outcome-pages.{uuid.uuid4().hex[:8]}", auto_delete=True)
    app = create_app(settings)
    async with connection, app.router.lifespan_context(app):
        await queue.bind("kranj", routing_key="notify.delivery.*")  # once notify declared the exchange
        ctx = app.state.ctx
        for i in range(RESIDENTS):
            await subscribers.add_subscriber(
                ctx.db,
                subscribers.SubscriberIn(
                    email=f"krajan{i}@example.si", phone=f"+3864077{i:04d}", ks=["strazisce"], topics=["safety"]
                ),
            )
        sms_gateway.statuses.append(400)  # the first text is refused: failed-permanent, final
        notice = NoticeDraft(source="/gasilci", source_id="neurje-1", title="Neurje", body="Ostanite doma.",
                             ks=["strazisce"], topic="safety", channels=["email", "sms"])  # fmt: skip
        async with ctx.db.session() as session:
            await notices.record_notice(session, ctx.settings, notice)
            await session.commit()
        ctx.extra["worker"].wake()

        deliveries, outbox = table_of(Delivery), table_of(OutboxMessage)

        async def settled():
            def read(conn: sa.Connection, _info: dict[str, object]):
                rows = conn.execute(sa.select(deliveries.c.id, deliveries.c.channel, deliveries.c.status)).all()
                unsent = conn.execute(sa.select(sa.func.count()).where(outbox.c.sent_at.is_(None))).scalar_one()
                types = Counter(conn.execute(sa.select(outbox.c.type)).scalars())
                return rows, unsent, types

            rows, unsent, types = await ctx.db.run(read)
            done = len(rows) == 2 * RESIDENTS and all(r.status in ("sent", "failed-permanent") for r in rows)
            return (rows, types) if done and unsent == 0 else None

        rows, types = await wait_until(settled, timeout=30, message="every delivery final and its facts published")
        expected = {r.id: (r.channel, r.status) for r in rows}
        assert Counter(status for _, status in expected.values()) == {"sent": 2 * RESIDENTS - 1, "failed-permanent": 1}

        # What the listener received: at least once, so the same message (same id) may come twice.
        bodies: dict[str, bytes] = {}
        async with queue.iterator(timeout=5) as messages:
            async for message in messages:
                await message.ack()
                bodies[json.loads(message.body)["id"]] = message.body
                if len(bodies) == sum(types.values()):
                    break

    assert len(bodies) == sum(types.values()), (len(bodies), types)
    pages: list[list[DeliveryOutcome]] = []
    v1_facts: dict[str, DeliveryOutcome] = {}
    for body in bodies.values():
        assert b"krajan" not in body and b"3864077" not in body  # no contact data
        envelope = parse_envelope(body)
        assert envelope.source == "/kranj/notify"
        if envelope.type == DELIVERY_OUTCOMES.type:
            pages.append(parse_data(envelope, DELIVERY_OUTCOMES).outcomes)
        else:
            kind = DELIVERY_SENT if envelope.type == DELIVERY_SENT.type else DELIVERY_FAILED
            assert envelope.type == kind.type, envelope.type
            fact = parse_data(envelope, kind)
            assert fact.delivery_id not in v1_facts
            v1_facts[fact.delivery_id] = fact

    # Every delivery exactly once across the pages, with its channel and status.
    named = Counter(o.delivery_id for page in pages for o in page)
    assert set(named) == set(expected) and set(named.values()) == {1}, named
    outcomes = {o.delivery_id: o for page in pages for o in page}
    assert {d: (o.channel, o.status) for d, o in outcomes.items()} == expected
    [failed] = [o for o in outcomes.values() if o.status == "failed-permanent"]
    assert (failed.channel, failed.attempts) == ("sms", 1) and "400" in (failed.error or "")
    assert all((o.notice_id, o.source, o.source_id) == (notice.id, "/gasilci", "neurje-1") for o in outcomes.values())
    # Pages, not one event per delivery: the SMS and the four SMTP connections share commits.
    assert len(pages) < len(expected) and max(map(len, pages)) <= OUTCOMES_PAGE_SIZE, [len(p) for p in pages]
    assert types[DELIVERY_OUTCOMES.type] == len(pages)

    if v1:  # the deprecated per-delivery events, the same outcomes
        assert {d: f.model_dump() for d, f in v1_facts.items()} == {d: o.model_dump() for d, o in outcomes.items()}
        assert types[DELIVERY_SENT.type] == 2 * RESIDENTS - 1 and types[DELIVERY_FAILED.type] == 1
    else:
        assert v1_facts == {} and set(types) == {DELIVERY_OUTCOMES.type}
