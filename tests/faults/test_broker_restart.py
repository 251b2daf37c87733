"""The broker stopped and started (`rabbitmqctl stop_app` / `start_app`) in the middle of a
fan-out: every resident gets the notice exactly once, the publisher that was writing keeps
its outbox rows until the broker is back, and the consumers really come back (a new
message afterwards is processed). On the private RabbitMQ node, never the shared one."""

from __future__ import annotations

import asyncio
import json

from conftest import publish_bare, wait_until

from .conftest import import_residents, notice_envelope, notify_db, received_emails, received_sms, sqlite_scalar

RESIDENTS = 150
UNSENT = "SELECT count(*) FROM outbox WHERE sent_at IS NULL"


async def test_broker_stop_and_start_mid_fan_out(kranj_up, fault_rabbit, fault_amqp_url, smtp_server, sms_gateway):
    system = kranj_up(
        {
            "KRANJ_AMQP_URL": fault_amqp_url,
            "KRANJ_SMTP_HOST": smtp_server.host,
            "KRANJ_SMTP_PORT": str(smtp_server.port),
            "KRANJ_SMS_GATEWAY_URL": sms_gateway.url,
            "KRANJ_SMS_GATEWAY_TOKEN": sms_gateway.token,
            "KRANJ_EMAIL_PER_SECOND": "25",
            "KRANJ_SMS_PER_SECOND": "25",
        }
    )
    people = import_residents(system, RESIDENTS)
    system.start()
    await system.wait_ready()
    db = notify_db(system)

    first = "Zapora ceste na Primskovem"
    await publish_bare(fault_amqp_url, json.dumps(notice_envelope(first)), routing_key="notify.notice.requested")
    await wait_until(lambda: len(smtp_server.messages) >= 20, timeout=60, message="the fan-out to start")

    await asyncio.to_thread(fault_rabbit.stop_app)
    try:
        at_stop = len(smtp_server.messages)
        # notify keeps sending while the broker is away; its notify.delivery.* facts wait in
        # the outbox: tried, not confirmed, kept.
        await wait_until(
            lambda: sqlite_scalar(db, "SELECT count(*) FROM outbox WHERE sent_at IS NULL AND attempts > 0") > 0,
            timeout=60,
            message="outbox rows the relay could not publish",
        )
        unsent_while_down = sqlite_scalar(db, UNSENT)
        assert unsent_while_down > 0
        await wait_until(lambda: len(smtp_server.messages) >= at_stop + 20, timeout=60, message="sending goes on")
        held = sqlite_scalar(db, UNSENT)
        assert held >= unsent_while_down  # nothing dropped while the broker is away
    finally:
        await asyncio.to_thread(fault_rabbit.start_app)

    await wait_until(
        lambda: sqlite_scalar(db, "SELECT count(*) FROM deliveries WHERE status = 'sent'") == 2 * RESIDENTS,
        timeout=90,
        interval=0.3,
        message="every delivery sent",
    )
    await wait_until(lambda: sqlite_scalar(db, UNSENT) == 0, timeout=60, interval=0.3, message="the outbox drained")
    published = sqlite_scalar(db, "SELECT count(*) FROM outbox WHERE routing_key LIKE 'notify.delivery.%'")
    assert published == 2 * RESIDENTS

    # The consumers came back: a new notice after the restart reaches everyone too.
    second = "Odvoz kosovnih odpadkov"
    await publish_bare(fault_amqp_url, json.dumps(notice_envelope(second)), routing_key="notify.notice.requested")
    await wait_until(
        lambda: sqlite_scalar(db, "SELECT count(*) FROM deliveries WHERE status = 'sent'") == 4 * RESIDENTS,
        timeout=90,
        interval=0.3,
        message="the notice published after the restart sent to everyone",
    )
    for title in (first, second):
        emails = received_emails(smtp_server, title)
        texts, _ = received_sms(sms_gateway, title)
        assert all(emails[e] == 1 for e, _ in people), {e: emails[e] for e, _ in people if emails[e] != 1}
        assert all(texts[p] == 1 for _, p in people), {p: texts[p] for _, p in people if texts[p] != 1}
    print(
        f"\n{RESIDENTS} residents x 2 notices: {4 * RESIDENTS} deliveries, 0 duplicates, 0 missing; "
        f"{held} outbox rows held while the broker was down, all published after"
    )
