"""The whole system started as `make run` starts it (`kranj up`: four supervised
processes), with a real SMTP server and a real HTTP SMS gateway: health, documents, the
outside-system fan-out and the staff event fan-out, then a clean stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aio_pika
import httpx
import pytest
from support.settings import TEST_ADMIN_TOKEN, TEST_SECRET_KEY, free_port, wait_until
from support.times import FRIDAY, TZ, day_ahead, iso, weekday_ahead

# How residents read a date ("četrtek, 14. januarja 2027"), written out here rather than
# taken from the code under test.
MONTHS_GENITIVE = (
    "januarja februarja marca aprila maja junija julija avgusta septembra oktobra novembra decembra".split()
)

pytestmark = pytest.mark.e2e
SERVICES = ("events", "booking", "surveys", "notify")
KRANJ = Path(sys.executable).parent / "kranj"


@pytest.fixture
def system(tmp_path, amqp_url, smtp_server, sms_gateway):
    ports = {s: free_port() for s in SERVICES}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KRANJ_")},
        "KRANJ_AMQP_URL": amqp_url,
        "KRANJ_DATA_DIR": str(tmp_path / "var"),
        "KRANJ_ADMIN_TOKEN": TEST_ADMIN_TOKEN,
        "KRANJ_SECRET_KEY": TEST_SECRET_KEY,
        "KRANJ_QUIET_HOURS": "off",
        "KRANJ_SMTP_HOST": smtp_server.host,
        "KRANJ_SMTP_PORT": str(smtp_server.port),
        "KRANJ_SMS_GATEWAY_URL": sms_gateway.url,
        "KRANJ_SMS_GATEWAY_TOKEN": sms_gateway.token,
        "KRANJ_GRACEFUL_TIMEOUT": "5",
        **{f"KRANJ_{s.upper()}_PORT": str(p) for s, p in ports.items()},
    }
    log = (tmp_path / "kranj-up.log").open("w+b")
    proc = subprocess.Popen([str(KRANJ), "up"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    urls = {s: f"http://127.0.0.1:{p}" for s, p in ports.items()}
    try:
        yield proc, urls, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


async def _all_ready(urls: dict[str, str]) -> bool:
    async with httpx.AsyncClient(timeout=2) as client:
        for url in urls.values():
            try:
                if (await client.get(f"{url}/readyz")).status_code != 200:
                    return False
            except httpx.HTTPError:
                return False
    return True


async def test_make_run_system_fans_out_and_stops_cleanly(system, amqp_url, smtp_server, sms_gateway):
    proc, urls, log = system
    try:
        await wait_until(lambda: _all_ready(urls), timeout=60, interval=0.3, message="all four services ready")
    except BaseException:
        log.seek(0)
        print(log.read().decode(errors="replace")[-5000:])
        raise
    log.seek(0)
    printed = log.read().decode(errors="replace")
    for url in urls.values():
        assert url in printed  # `kranj up` prints the four addresses

    admin = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
    async with httpx.AsyncClient(timeout=10) as client:
        for service, url in urls.items():
            assert (await client.get(f"{url}/healthz")).json()["status"] == "ok"
            assert (await client.get(f"{url}/openapi.json")).json()["info"]["title"].endswith(service)
            asyncapi = (await client.get(f"{url}/asyncapi.json")).json()
            assert asyncapi["asyncapi"].startswith("3.")
            assert "kranj_" in (await client.get(f"{url}/metrics")).text

        created = await client.post(
            f"{urls['notify']}/api/v1/subscribers",
            headers=admin,
            json={
                "email": "mojca@example.si",
                "phone": "+38641234567",
                "ks": ["primskovo"],
                "topics": ["general", "events"],
                "channels": ["email", "sms"],
                "language": "sl",
            },
        )
        assert created.status_code == 201, created.text

        # An outside system, plain AMQP, no properties at all.
        notice_id = str(uuid.uuid4())
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange("kranj")
            body = {
                "specversion": "1.0",
                "id": notice_id,
                "source": "/komunala-kranj/outages",
                "type": "si.kranj.notify.notice.requested.v1",
                "data": {"title": "Izklop elektrike", "body": "Jutri med 9. in 11. uro.", "ks": ["primskovo"]},
            }
            await exchange.publish(aio_pika.Message(json.dumps(body).encode()), routing_key="notify.notice.requested")

        [mail] = await smtp_server.wait_for(1, timeout=20)
        assert "Izklop elektrike" in mail.subject
        await sms_gateway.wait_for(1, timeout=20)
        board = await client.get(f"{urls['notify']}/noticeboard/primskovo")
        assert "Izklop elektrike" in board.text

        # Staff create and publish an event; it fans out with nobody doing anything else.
        thursday = weekday_ahead(3, weeks=2)
        event = await client.post(
            f"{urls['events']}/api/v1/events",
            headers=admin,
            json={
                "ks": "primskovo",
                "title": "Delavnica: skupni prostor",
                "description": "Kaj bi radi počeli v domu KS?",
                "starts_at": iso(thursday),
                "ends_at": iso(thursday.replace(hour=20)),
                "venue": "Dom KS Primskovo",
            },
        )
        assert event.status_code == 201, event.text
        published = await client.post(f"{urls['events']}/api/v1/events/{event.json()['id']}/publish", headers=admin)
        assert published.status_code == 200 and published.json()["status"] == "published"
        mails = await smtp_server.wait_for(2, timeout=20)
        assert "Delavnica: skupni prostor" in mails[1].subject
        when = f"četrtek, {thursday.day}. {MONTHS_GENITIVE[thursday.month - 1]} {thursday.year}, 18.00–20.00"
        assert when in mails[1].part("text/plain")
        await sms_gateway.wait_for(2, timeout=20)
        feed = await client.get(f"{urls['notify']}/noticeboard/primskovo/feed.atom")
        assert "Delavnica: skupni prostor" in feed.text

    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert time.monotonic() - started < 30


async def test_services_talk_only_through_the_bus(system, smtp_server):
    """Surveys, booking and notify started by `kranj up`: a survey invitation with a
    personal link, a volunteer who becomes a subscriber, and a booking request's receipt."""
    import re
    from datetime import datetime, timedelta

    proc, urls, log = system
    await wait_until(lambda: _all_ready(urls), timeout=60, interval=0.3, message="all four services ready")
    admin = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
    async with httpx.AsyncClient(timeout=10) as client:
        created = await client.post(
            f"{urls['notify']}/api/v1/subscribers",
            headers=admin,
            json={"email": "janez@example.si", "ks": ["planina"], "topics": ["surveys"]},
        )
        assert created.status_code == 201, created.text

        survey = await client.post(
            f"{urls['surveys']}/api/v1/surveys", headers=admin, json={"template": "needs-assessment", "ks": "planina"}
        )
        assert survey.status_code == 201, survey.text
        sid = survey.json()["id"]
        assert (await client.post(f"{urls['surveys']}/api/v1/surveys/{sid}/open", headers=admin)).status_code == 200
        [invitation] = await smtp_server.wait_for(1, timeout=20)
        assert invitation.rcpt_tos == ["janez@example.si"]
        token = re.search(rf"/surveys/{sid}\?t=(\S+)", invitation.part("text/plain"))[1]

        answer = {
            "answers": {"need": "yes", "what": ["youth"], "take-part": "yes"},
            "invitation": token,
            "contact": {"email": "prostovoljka@example.si", "consent": True},
        }
        first = await client.post(f"{urls['surveys']}/api/v1/surveys/{sid}/responses", json=answer)
        assert first.status_code == 201, first.text
        again = await client.post(f"{urls['surveys']}/api/v1/surveys/{sid}/responses", json=answer)
        assert again.status_code == 409  # one answer per invitation

        async def volunteer_subscribed():
            found = await client.post(
                f"{urls['notify']}/api/v1/subscribers/export", headers=admin, json={"email": "prostovoljka@example.si"}
            )
            return found.json()["subscriptions"]

        [volunteer] = await wait_until(volunteer_subscribed, timeout=20, message="the volunteer in notify")
        assert volunteer["topics"] == ["surveys"] and volunteer["consent_source"] == "survey-web"
        assert volunteer["status"] == "pending"  # until she follows the emailed link

        day = day_ahead(10, weekday=FRIDAY)  # no KS office hours, no holiday (support.times)
        start = datetime(day.year, day.month, day.day, 18, 0, tzinfo=TZ)
        booking = await client.post(
            f"{urls['booking']}/api/v1/bookings",
            json={
                "room_id": "ks-planina",
                "starts_at": start.isoformat(),
                "ends_at": (start + timedelta(hours=2)).isoformat(),
                "purpose": "Vaje folklorne skupine",
                "name": "Vesna Kos",
                "email": "vesna@example.si",
                "attendees": 8,
            },
        )
        assert booking.status_code == 201, booking.text
        # the invitation, the volunteer's confirmation request (a survey answer starts a
        # confirmation, never an active subscription: issue 17) and the requester's receipt
        mails = await smtp_server.wait_for(3, timeout=20)
        [confirm] = [m for m in mails if m.rcpt_tos == ["prostovoljka@example.si"]]
        assert confirm.subject.startswith("Potrdite prijavo na obvestila KS")
        receipt = next(m for m in mails if m.rcpt_tos == ["vesna@example.si"])
        # Fixed wording: nobody confirmed the requester's address (services/notify/relay.py).
        assert receipt.subject.startswith("Prošnja za prostor")
