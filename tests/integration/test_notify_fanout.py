"""notify on the real broker, against SQLite and PostgreSQL: an outside system publishes a
notice with a plain AMQP client and no properties; a real SMTP server and a real HTTP SMS
gateway receive it, once, however often the message is delivered."""

from __future__ import annotations

import asyncio
import json
import uuid

import aio_pika
import httpx
import pytest
from sqlmodel import select
from support.settings import make_settings, wait_until
from support.times import iso, local_day, utc_iso

from services.notify import notices, subscribers
from services.notify.app import create_app
from services.notify.models import Delivery
from shared.senders import amqp_user

pytestmark = pytest.mark.integration


def outside_notice(**data) -> bytes:
    body = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/komunala-kranj/outages",
        "type": "si.kranj.notify.notice.requested.v1",
        "time": utc_iso(),
        "data": {
            "title": "Izklop vode na Primskovem",
            "body": "V četrtek med 8. in 12. uro ne bo vode.",
            "ks": ["primskovo"],
            "topic": "utilities",
            **data,
        },
    }
    return json.dumps(body, ensure_ascii=False).encode()


async def publish_plain(amqp_url: str, body: bytes, routing_key: str = "notify.notice.requested") -> None:
    """Like a shell `amqp-publish`: no content type, no message id, no delivery mode. A
    platform fact (any other routing key) carries the broker user as `user_id`, as the
    services' outbox relays do: only they may publish facts (shared/senders.py)."""
    user_id = None if routing_key == "notify.notice.requested" else amqp_user(amqp_url)
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange("kranj")
        await exchange.publish(aio_pika.Message(body, delivery_mode=None, user_id=user_id), routing_key=routing_key)


@pytest.fixture
async def notify_app(tmp_path, amqp_url, database_url, smtp_server, sms_gateway):
    settings = make_settings(
        tmp_path,
        amqp_url,
        notify_database_url=database_url,
        retry_base_seconds=0.05,
        **smtp_server.settings(),
        **sms_gateway.settings(),
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        ctx = app.state.ctx
        await subscribers.add_subscriber(
            ctx.db,
            subscribers.SubscriberIn(
                email="ana.novak@example.si", phone="040 123 456", ks=["primskovo"], topics=["utilities"]
            ),
        )
        await subscribers.add_subscriber(
            ctx.db, subscribers.SubscriberIn(email="janez@example.si", ks=["planina"], topics=["utilities"])
        )
        yield app


async def test_outside_notice_reaches_real_smtp_and_sms_gateway_once(notify_app, amqp_url, smtp_server, sms_gateway):
    body = outside_notice()
    await publish_plain(amqp_url, body)
    await publish_plain(amqp_url, body)  # the same message again: must have the effect of one

    [mail] = await smtp_server.wait_for(1)
    [sms] = await sms_gateway.wait_for(1)
    assert mail.rcpt_tos == ["ana.novak@example.si"]
    assert "Izklop vode na Primskovem" in mail.subject and "KS Primskovo" in mail.subject
    assert mail.message["Content-Language"] == "sl"
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail.message["List-Unsubscribe"].startswith("<http://127.0.0.1:8004/unsubscribe/")
    assert mail.message["Message-ID"].endswith("@kranj-za-vse.si>")
    assert "V četrtek med 8. in 12. uro ne bo vode." in mail.part("text/plain")
    assert "V četrtek med 8. in 12. uro ne bo vode." in mail.part("text/html")
    assert sms.json["to"] == "+38640123456"
    assert sms.authorization == "Bearer test-sms-token"
    assert sms.idempotency_key == sms.json["reference"]
    assert "Izklop vode" in sms.json["text"]

    async with httpx.AsyncClient(transport=httpx.ASGITransport(notify_app), base_url="http://t") as client:
        board = await client.get("/noticeboard/primskovo")
        feed = await client.get("/noticeboard/primskovo/feed.atom")
    assert board.status_code == 200 and "Izklop vode na Primskovem" in board.text
    assert feed.headers["content-type"].startswith("application/atom+xml")
    assert "Izklop vode na Primskovem" in feed.text
    # SMTP and gateway latency, and the message counted by type and outcome. A latency is
    # observed when the server's answer is back, a moment after the server has the message.
    email_latency = 'kranj_send_seconds_count{channel="email",outcome="sent",transport="smtp"}'
    sms_latency = 'kranj_send_seconds_count{channel="sms",outcome="sent",transport="gateway"}'
    async with httpx.AsyncClient(transport=httpx.ASGITransport(notify_app), base_url="http://t") as client:

        async def observed():
            text = (await client.get("/metrics")).text
            return text if email_latency in text and sms_latency in text else None

        metrics = await wait_until(observed, message="both send latencies in /metrics")
    assert 'type="si.kranj.notify.notice.requested.v1"' in metrics

    # Give a second delivery every chance to happen, then prove it did not.
    await asyncio.sleep(1.0)
    assert len(smtp_server.messages) == 1
    assert len(sms_gateway.requests) == 1
    async with notify_app.state.ctx.db.session() as s:
        states = (await s.exec(select(Delivery.channel, Delivery.status))).all()
    assert sorted(states) == [("email", "sent"), ("sms", "sent")]


async def test_temporary_failures_are_retried_and_sent_once(notify_app, amqp_url, smtp_server, sms_gateway):
    sms_gateway.statuses.extend([500, 429])
    smtp_server.replies.append("451 4.3.0 Try again later")
    await publish_plain(amqp_url, outside_notice())

    await smtp_server.wait_for(1, timeout=15)
    await wait_until(lambda: len(sms_gateway.accepted) == 1, timeout=15, message="SMS accepted after retries")
    assert [r.status for r in sms_gateway.requests] == [500, 429, 200]
    assert len({r.idempotency_key for r in sms_gateway.requests}) == 1  # same key on every retry
    await asyncio.sleep(0.5)
    assert len(smtp_server.messages) == 1 and len(sms_gateway.accepted) == 1


async def test_permanent_sms_failure_is_not_retried(notify_app, amqp_url, sms_gateway, smtp_server):
    sms_gateway.statuses.append(400)
    await publish_plain(amqp_url, outside_notice())
    await smtp_server.wait_for(1)

    async def sms_state():
        async with notify_app.state.ctx.db.session() as s:
            return (await s.exec(select(Delivery.status).where(Delivery.channel == "sms"))).first()

    async def is_final():
        return await sms_state() == "failed-permanent"

    await wait_until(is_final, message="SMS delivery marked failed-permanent")
    await asyncio.sleep(0.5)  # a retry would have happened by now (retry base 0.05 s)
    assert await sms_state() == "failed-permanent"
    assert len(sms_gateway.requests) == 1


async def test_one_click_unsubscribe_stops_that_channel(notify_app, amqp_url, smtp_server, sms_gateway):
    await publish_plain(amqp_url, outside_notice())
    [mail] = await smtp_server.wait_for(1)
    await sms_gateway.wait_for(1)
    link = mail.message["List-Unsubscribe"].strip("<>")
    path = link.removeprefix("http://127.0.0.1:8004")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(notify_app), base_url="http://t") as client:
        forged = await client.post(path[:-3] + "abc", data={"List-Unsubscribe": "One-Click"})
        assert forged.status_code == 400
        done = await client.post(path, data={"List-Unsubscribe": "One-Click"})
        assert done.status_code == 200
    await publish_plain(amqp_url, outside_notice(title="Drugo obvestilo"))
    await sms_gateway.wait_for(2)
    await asyncio.sleep(0.5)
    assert len(smtp_server.messages) == 1  # email stopped, SMS still comes


ADMIN = {"Authorization": "Bearer test-admin-token"}


async def test_delivery_log_masks_contacts_and_failed_sms_can_be_resent(notify_app, amqp_url, sms_gateway, smtp_server):
    sms_gateway.statuses.append(400)
    await publish_plain(amqp_url, outside_notice())
    await smtp_server.wait_for(1)
    await sms_gateway.wait_for(1)
    async with notify_app.state.ctx.db.session() as s:
        [notice_id] = (await s.exec(select(Delivery.notice_id).distinct())).all()

    async with httpx.AsyncClient(transport=httpx.ASGITransport(notify_app), base_url="http://t") as client:
        assert (await client.get(f"/api/v1/notices/{notice_id}/deliveries")).status_code == 401

        # The email and the SMS are recorded by separate group commits: the SMTP server's copy
        # can arrive before the email's outcome is written, so wait for both outcomes.
        async def log():
            answer = (await client.get(f"/api/v1/notices/{notice_id}/deliveries", headers=ADMIN)).json()
            email, sms = answer["counts"].get("email", {}), answer["counts"].get("sms")
            email_settled = bool(email) and not {"queued", "sending"} & email.keys()
            return answer if email_settled and sms == {"failed-permanent": 1} else None

        body = await wait_until(log, message="both outcomes in the delivery log")
        assert body["counts"]["email"] == {"sent": 1}
        text = json.dumps(body)
        assert "ana.novak@example.si" not in text and "+38640123456" not in text
        assert {d["to"] for d in body["deliveries"]} == {"a***@example.si", "+386***56"}
        [failed] = [d for d in body["deliveries"] if d["status"] == "failed-permanent"]
        assert "400" in failed["last_error"]

        resent = await client.post(f"/api/v1/notices/{notice_id}/deliveries/resend", headers=ADMIN)
        assert resent.json() == {"requeued": 1}
    await wait_until(lambda: len(sms_gateway.accepted) == 1, message="the resent SMS accepted")
    await asyncio.sleep(0.3)
    assert len(smtp_server.messages) == 1  # the email was not sent again


async def test_staff_preview_shows_every_channel_and_the_sms_cost(notify_app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(notify_app), base_url="http://t") as client:
        notice = {"title": "Zapora ceste v Čirčah", "body": "Zaradi del bo cesta zaprta. " * 30, "ks": ["circe"]}
        assert (await client.post("/api/v1/preview", json=notice)).status_code == 401
        answer = await client.post("/api/v1/preview", json=notice, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    preview = answer.json()
    assert preview["email_subject"] == "Zapora ceste v Čirčah – KS Čirče"
    assert "Zaradi del bo cesta zaprta." in preview["email_text"]
    assert "Zapora ceste v Čirčah" in preview["noticeboard_card_html"]
    sms = preview["sms"]
    assert sms["encoding"] == "GSM-7" and sms["transliterated"] is True
    assert sms["text"].startswith("KS Circe: Zapora ceste v Circah.")
    assert sms["segments"] == 3  # capped at the default of three
    assert sms["estimated_cost_eur"] == pytest.approx(0.12)


async def test_gdpr_export_and_erasure_leave_no_trace(tmp_path, amqp_url, database_url):
    """Erasure removes the resident everywhere notify keeps them: tables, file outboxes,
    and (SQLite) the database and WAL files' bytes."""
    settings = make_settings(tmp_path, amqp_url, notify_database_url=database_url)  # file outboxes
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        ctx = app.state.ctx
        await subscribers.add_subscriber(
            ctx.db, subscribers.SubscriberIn(email="erase.me@example.si", phone="+38640999888", ks=["bitnje"])
        )
        await subscribers.add_subscriber(ctx.db, subscribers.SubscriberIn(email="stays@example.si", ks=["bitnje"]))
        await publish_plain(amqp_url, outside_notice(ks=["bitnje"], topic="general"))
        await wait_until(lambda: len(list((tmp_path / "outbox" / "email").glob("*.eml"))) == 2, message="2 emails")
        await wait_until(lambda: (tmp_path / "outbox" / "sms.jsonl").exists(), message="the SMS file")

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
            exported = await client.post(
                "/api/v1/subscribers/export", json={"email": "Erase.Me@example.si"}, headers=ADMIN
            )
            assert exported.status_code == 200
            data = exported.json()
            assert data["subscriptions"][0]["email"] == "erase.me@example.si"
            assert data["subscriptions"][0]["ks"] == ["bitnje"]
            assert data["subscriptions"][0]["consent_source"] == "staff"
            assert {d["channel"] for d in data["deliveries"]} == {"email", "sms"}

            erased = await client.post(
                "/api/v1/subscribers/erase",
                json={"email": "erase.me@example.si", "phone": "040 999 888"},
                headers=ADMIN,
            )
            assert erased.status_code == 200, erased.text
            assert erased.json() == {
                "subscribers": 1, "deliveries": 2, "export_requests": 0, "texts_masked": 0, "outbox_messages": 0,
                "outbox_files": 2,
            }  # fmt: skip
            again = await client.post(
                "/api/v1/subscribers/export", json={"email": "erase.me@example.si"}, headers=ADMIN
            )
            assert again.json() == {"subscriptions": [], "deliveries": [], "ks_contact_for": []}
        if database_url.startswith("sqlite"):
            # While the service still runs (its WAL open), no database file keeps the bytes.
            files = list(tmp_path.glob("x.db*"))
            assert any(p.name == "x.db-wal" for p in files)
            for path in files:
                content = path.read_bytes()
                assert b"erase.me@example.si" not in content, path.name
                assert b"+38640999888" not in content, path.name

    emails = [p.read_bytes() for p in (tmp_path / "outbox" / "email").glob("*.eml")]
    assert len(emails) == 1 and b"stays@example.si" in emails[0]
    assert b"+38640999888" not in (tmp_path / "outbox" / "sms.jsonl").read_bytes()


async def test_cancelled_event_leaves_the_noticeboard(notify_app, amqp_url):
    """events.event.cancelled reaches notify through its second binding (real broker)."""
    event = {
        "event_id": "ev-9",
        "ks": "primskovo",
        "title": "Pohod na Šmarjetno goro",
        "starts_at": iso(local_day(40, 9)),
        "ends_at": iso(local_day(40, 13)),
        "venue": "Pred domom KS",
        "url": "http://127.0.0.1:8001/events/ev-9",
    }
    from shared.contracts import EVENT_PUBLISHED
    from shared.contracts.events import EVENT_CANCELLED

    published = EVENT_PUBLISHED.envelope(event, source="/kranj/events")
    cancelled = EVENT_CANCELLED.envelope(
        {**event, "status": "cancelled", "reason": "Slabo vreme."}, source="/kranj/events"
    )
    await publish_plain(amqp_url, json.dumps(published).encode(), "events.event.published")
    ctx = notify_app.state.ctx
    await wait_until(lambda: notices.noticeboard(ctx.db, "primskovo"), message="the event on the board")
    await publish_plain(amqp_url, json.dumps(cancelled).encode(), "events.event.cancelled")

    async def gone():
        return await notices.noticeboard(ctx.db, "primskovo") == []

    await wait_until(gone, message="the cancelled event off the board")


async def test_sms_goes_only_to_slovenian_numbers_by_default(notify_app, amqp_url, sms_gateway):
    """Against SMS pumping: a foreign number gets no SMS unless KRANJ_SMS_COUNTRY_CODES allows it."""
    ctx = notify_app.state.ctx
    await subscribers.add_subscriber(
        ctx.db, subscribers.SubscriberIn(phone="+4915112345678", ks=["primskovo"], topics=["utilities"])
    )
    await publish_plain(amqp_url, outside_notice())
    [sms] = await sms_gateway.wait_for(1)
    assert sms.json["to"] == "+38640123456"

    async def foreign_state():
        async with ctx.db.session() as s:
            row = (
                await s.exec(select(Delivery.status, Delivery.last_error).where(Delivery.address == "+4915112345678"))
            ).first()
        return row if row and row[0] not in ("queued", "sending") else None

    status, error = await wait_until(foreign_state, message="the foreign SMS recorded")
    assert status == "skipped" and "KRANJ_SMS_COUNTRY_CODES" in error
    assert len(sms_gateway.requests) == 1
