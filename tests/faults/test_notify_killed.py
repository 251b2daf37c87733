"""`kill -9` of notify in the middle of a fan-out to several hundred residents: after
`kranj up` starts it again, every resident has the notice exactly once per channel."""

from __future__ import annotations

import json
import signal

from conftest import publish_bare, wait_until

from .conftest import (
    import_residents,
    notice_envelope,
    notify_db,
    received_emails,
    received_sms,
    sqlite_scalar,
)

RESIDENTS = 300


async def test_kill_9_of_notify_mid_fan_out_loses_nothing_and_sends_nothing_twice(
    kranj_up, fault_amqp_url, smtp_server, sms_gateway
):
    system = kranj_up(
        {
            "KRANJ_AMQP_URL": fault_amqp_url,
            "KRANJ_SMTP_HOST": smtp_server.host,
            "KRANJ_SMTP_PORT": str(smtp_server.port),
            "KRANJ_SMS_GATEWAY_URL": sms_gateway.url,
            "KRANJ_SMS_GATEWAY_TOKEN": sms_gateway.token,
            # Slow enough that the kill lands mid-fan-out; the lease short enough that what the
            # killed worker had claimed is claimed again within the test.
            "KRANJ_EMAIL_PER_SECOND": "60",
            "KRANJ_SMS_PER_SECOND": "60",
            "KRANJ_DELIVERY_LEASE_SECONDS": "4",
        }
    )
    people = import_residents(system, RESIDENTS)
    system.start()
    await system.wait_ready()

    title = "Izklop vode v Kranju"
    envelope = notice_envelope(title)
    await publish_bare(fault_amqp_url, json.dumps(envelope), routing_key="notify.notice.requested")

    # Mid fan-out: some residents have it, most do not yet.
    await wait_until(lambda: len(smtp_server.messages) >= 40, timeout=60, message="the fan-out to start")
    killed = system.kill_child("notify", signal.SIGKILL)
    at_kill = len(smtp_server.messages), len(sms_gateway.accepted)
    assert at_kill[0] < RESIDENTS, "the fan-out finished before the kill: make it slower"

    await wait_until(
        lambda: (pid := system.child_pid("notify")) is not None and pid != killed,
        timeout=30,
        message="kranj up to start notify again",
    )
    assert "notify was killed by SIGKILL" in system.log()
    db = notify_db(system)
    await wait_until(
        lambda: sqlite_scalar(db, "SELECT count(*) FROM deliveries WHERE status = 'sent'") == 2 * RESIDENTS,
        timeout=90,
        interval=0.3,
        message=f"{2 * RESIDENTS} deliveries recorded as sent",
    )
    emails = received_emails(smtp_server, title)
    texts, requests = received_sms(sms_gateway, title)
    missing_email = [e for e, _ in people if emails[e] == 0]
    missing_sms = [p for _, p in people if texts[p] == 0]
    assert not missing_email and not missing_sms, (missing_email[:5], missing_sms[:5])
    duplicate_texts = {p: n for p, n in texts.items() if n > 1}
    assert not duplicate_texts  # one Idempotency-Key per resident: one text message each
    duplicate_emails = {e: n for e, n in emails.items() if n > 1}
    # SMTP has no idempotency key: only the one email in flight at the kill may repeat.
    assert len(duplicate_emails) <= 1, duplicate_emails
    print(
        f"\n{RESIDENTS} residents, {2 * RESIDENTS} deliveries; killed at {at_kill[0]} emails / {at_kill[1]} SMS; "
        f"emails received {sum(emails.values())} (repeated: {len(duplicate_emails)}), "
        f"SMS requests {sum(requests.values())} for {sum(texts.values())} distinct keys"
    )
