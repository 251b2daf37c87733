"""Two replicas of every service at once (two `kranj up` on the same PostgreSQL databases
and the same broker, as two hosts of a deployment would run): no duplicate sends, and a
scheduled job (the events' reminders, started in both replicas at the same moment) fires
once per registration."""

from __future__ import annotations

import json
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
from support.rabbit import publish_bare
from support.settings import SERVICES, TEST_ADMIN_TOKEN, wait_until

from .conftest import import_residents, notice_envelope, received_emails, received_sms

ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
RESIDENTS = 150
REGISTRANTS = 12


def _equals(url: str, query: str, value: int, *, at_least: bool = False):  # noqa: ANN202
    async def check() -> bool:
        count = await _count(url, query)
        return count >= value if at_least else count == value

    return check


async def _count(url: str, query: str, *args: object) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(query, *args))
    finally:
        await conn.close()


async def test_two_replicas_of_every_service_send_once_and_fire_jobs_once(
    kranj_up, fault_amqp_url, fault_postgres, smtp_server, sms_gateway
):
    databases = {s: fault_postgres.new_database() for s in SERVICES}
    env = {
        "KRANJ_AMQP_URL": fault_amqp_url,
        **{f"KRANJ_{s.upper()}_DATABASE_URL": url for s, url in databases.items()},
        "KRANJ_SMTP_HOST": smtp_server.host,
        "KRANJ_SMTP_PORT": str(smtp_server.port),
        "KRANJ_SMS_GATEWAY_URL": sms_gateway.url,
        "KRANJ_SMS_GATEWAY_TOKEN": sms_gateway.token,
        "KRANJ_RATE_LIMIT_ENABLED": "false",  # the registrations below all come from 127.0.0.1
    }
    first, second = kranj_up(env, name="replica-a"), kranj_up(env, name="replica-b")
    first.start()
    await first.wait_ready()  # migrated; the second replica finds the schema at head
    second.start()
    await second.wait_ready()
    people = import_residents(first, RESIDENTS, prefix="rep", series=6, ks=("huje",))

    # A fan-out with two notify replicas consuming and sending side by side.
    title = "Obvestilo za KS Huje"
    envelope = notice_envelope(title, ks=["huje"])
    await publish_bare(fault_amqp_url, json.dumps(envelope), routing_key="notify.notice.requested")

    # A published event starting in three hours, and registrants through both replicas.
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
    async with httpx.AsyncClient(timeout=20) as client:
        created = await client.post(
            f"{first.urls['events']}/api/v1/events",
            headers=ADMIN,
            json={
                "ks": "huje",
                "title": "Zbor krajanov",
                "description": "Vabljeni vsi krajani.",
                "starts_at": starts.isoformat(),
                "ends_at": (starts + timedelta(hours=2)).isoformat(),
                "venue": "Dom KS Huje",
                "capacity": 100,
            },
        )
        assert created.status_code == 201, created.text
        event_id = created.json()["id"]
        published = await client.post(f"{second.urls['events']}/api/v1/events/{event_id}/publish", headers=ADMIN)
        assert published.status_code == 200, published.text
        registrants = [f"udelezenec{i}@example.si" for i in range(REGISTRANTS)]
        for i, email in enumerate(registrants):
            replica = (first, second)[i % 2]
            answer = await client.post(
                f"{replica.urls['events']}/api/v1/events/{event_id}/registrations",
                json={"name": f"Udeleženec {i}", "email": email},
            )
            assert answer.status_code == 201, answer.text

    # The reminders are due: both replicas' events processes start their reminder job at once.
    pids = [first.kill_child("events", signal.SIGTERM), second.kill_child("events", signal.SIGTERM)]
    for replica, old in zip((first, second), pids, strict=True):
        await wait_until(
            lambda r=replica, o=old: (p := r.child_pid("events")) is not None and p != o,
            timeout=30,
            message="events started again",
        )
    events_db = databases["events"]
    await wait_until(
        _equals(events_db, "SELECT count(*) FROM registrations WHERE reminder_sent_at IS NOT NULL", REGISTRANTS),
        timeout=60,
        interval=0.3,
        message="every registration reminded",
    )
    await wait_until(
        _equals(
            databases["notify"],
            "SELECT count(*) FROM deliveries WHERE status = 'sent'",
            2 * RESIDENTS + 2 * REGISTRANTS,
            at_least=True,
        ),
        timeout=90,
        interval=0.3,
        message="the fan-out and the registrants' messages sent",
    )
    reminders = await _count(events_db, "SELECT count(*) FROM outbox WHERE routing_key = 'events.event.reminder-due'")
    assert reminders == REGISTRANTS  # the job fired once per registration across both replicas
    notify_db = databases["notify"]
    unsent = await _count(
        notify_db, "SELECT count(*) FROM deliveries WHERE status NOT IN ('sent', 'skipped')"
    )
    await wait_until(
        _equals(notify_db, "SELECT count(*) FROM deliveries WHERE status NOT IN ('sent', 'skipped')", 0),
        timeout=60,
        interval=0.3,
        message=f"no delivery left to send ({unsent} when first counted)",
    )

    emails = received_emails(smtp_server, title)
    texts, requests = received_sms(sms_gateway, title)
    assert all(emails[e] == 1 for e, _ in people), {e: n for e, n in emails.items() if n != 1}
    assert all(texts[p] == 1 and requests[p] == 1 for _, p in people)
    per_registrant = Counter(r.lower() for m in smtp_server.messages for r in m.rcpt_tos if r.startswith("udelezenec"))
    # Each registrant: the confirmation and the reminder, once each.
    assert all(per_registrant[e] == 2 for e in registrants), per_registrant
    subjects = Counter(m.subject for m in smtp_server.messages if m.rcpt_tos[0] == registrants[0])
    assert len(subjects) == 2 and all(n == 1 for n in subjects.values()), subjects
    # Both notify replicas did part of the sending (the work was shared, not merely survived).
    sent_by = []
    async with httpx.AsyncClient(timeout=10) as client:
        for replica in (first, second):
            metrics = (await client.get(f"{replica.urls['notify']}/metrics")).text
            sent_by.append(
                sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in metrics.splitlines()
                    if line.startswith("kranj_deliveries_total{") and 'state="sent"' in line
                )
            )
    assert all(n > 0 for n in sent_by), sent_by
    print(
        f"\n2 replicas x 4 services: {RESIDENTS} residents, {2 * RESIDENTS} deliveries of the notice "
        f"({sum(emails.values())} emails, {sum(requests.values())} SMS, 0 duplicates); {REGISTRANTS} registrants, "
        f"{reminders} reminders (once each), {sum(per_registrant.values())} personal emails; "
        f"sent by replica A / B: {sent_by[0]:.0f} / {sent_by[1]:.0f}"
    )
