"""A consumer stopped (SIGSTOP) past the broker's ack timeout and then resumed: the broker
takes the message back and delivers it again; the redelivered message does not send a
second SMS, and the consumer really comes back (the next message is processed too).

The private RabbitMQ node has `consumer_timeout` = CONSUMER_TIMEOUT_MS (checked every second)."""

from __future__ import annotations

import json
import os
import signal

import httpx
from conftest import publish_bare, wait_until

from .conftest import (
    CONSUMER_TIMEOUT_MS,
    import_residents,
    notice_envelope,
    notify_db,
    received_sms,
    sqlite_scalar,
)

RESIDENTS = 10
QUEUE = "notify.on-notice-requested"


async def test_consumer_stopped_past_the_ack_timeout_sends_no_second_sms(
    kranj_up, fault_rabbit, fault_amqp_url, sms_gateway
):
    vhost = fault_amqp_url.rsplit("/", 1)[1]
    system = kranj_up(
        {
            "KRANJ_AMQP_URL": fault_amqp_url,
            "KRANJ_SMS_GATEWAY_URL": sms_gateway.url,
            "KRANJ_SMS_GATEWAY_TOKEN": sms_gateway.token,
        }
    )
    people = import_residents(system, RESIDENTS)
    system.start()
    await system.wait_ready()
    db = notify_db(system)

    def queue(name: str = QUEUE) -> tuple[int, int]:
        return fault_rabbit.queue_counts(vhost).get(name, (-1, -1))

    timeouts_before = fault_rabbit.log().count("delivery acknowledgement on channel")
    pid = system.kill_child("notify", signal.SIGSTOP)
    try:
        title = "Nujno: prekinitev dobave vode"
        envelope = notice_envelope(title, channels=["sms"])
        await publish_bare(fault_amqp_url, json.dumps(envelope), routing_key="notify.notice.requested")
        # Delivered to the frozen consumer, never acknowledged ...
        await wait_until(lambda: queue() == (0, 1), timeout=20, interval=0.2, message="the message held unacked")
        # ... until the broker's ack timeout closes the frozen consumer's channel (it stays
        # "closing" until the client answers; then the message goes back to the queue).
        await wait_until(
            lambda: fault_rabbit.log().count("delivery acknowledgement on channel") > timeouts_before,
            timeout=CONSUMER_TIMEOUT_MS / 1000 + 30,
            interval=0.3,
            message="the broker to close the channel after consumer_timeout",
        )
    finally:
        os.kill(pid, signal.SIGCONT)

    await wait_until(
        lambda: sqlite_scalar(db, "SELECT count(*) FROM deliveries WHERE status = 'sent'") == RESIDENTS,
        timeout=60,
        interval=0.3,
        message="the SMS of the resumed consumer",
    )
    await wait_until(lambda: queue() == (0, 0), timeout=30, interval=0.3, message="the queue to drain")
    # Whatever the resumed process did with the frame it had buffered, and with the
    # redelivery: one notice, one delivery and one text message per resident.
    assert sqlite_scalar(db, "SELECT count(*) FROM notices") == 1
    assert sqlite_scalar(db, "SELECT count(*) FROM processed_messages WHERE message_id = ?", envelope["id"]) == 1
    texts, requests = received_sms(sms_gateway, title)
    assert all(texts[p] == 1 and requests[p] == 1 for _, p in people), (texts, requests)
    async with httpx.AsyncClient(timeout=10) as client:
        metrics = (await client.get(f"{system.urls['notify']}/metrics")).text
    outcomes = {
        line.split('outcome="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("kranj_messages_consumed_total{") and QUEUE in line
    }

    # The consumer came back: the next message is processed.
    after = "Dobava vode spet deluje"  # no diacritics: SMS text is GSM-7
    await publish_bare(
        fault_amqp_url, json.dumps(notice_envelope(after, channels=["sms"])), routing_key="notify.notice.requested"
    )
    await wait_until(
        lambda: sqlite_scalar(db, "SELECT count(*) FROM deliveries WHERE status = 'sent'") == 2 * RESIDENTS,
        timeout=60,
        interval=0.3,
        message="the next notice sent after the resume",
    )
    texts, requests = received_sms(sms_gateway, after)
    assert all(texts[p] == 1 and requests[p] == 1 for _, p in people)
    print(
        f"\n{RESIDENTS} residents: SIGSTOP past consumer_timeout={CONSUMER_TIMEOUT_MS} ms; {RESIDENTS} SMS, "
        f"0 duplicates; consumer outcomes after the resume: {outcomes}"
    )
