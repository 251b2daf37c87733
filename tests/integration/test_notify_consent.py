"""Each channel is confirmed on its own, a survey answer only starts a confirmation, and every
active channel has its consent record (issue 17, services.notify.consent) — the notify app with
its delivery worker, a real SMTP sink and SMS gateway, the real broker; SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest
from sqlmodel import select
from staff_login import form_token
from support.settings import make_settings
from support.times import utc_iso
from test_notify_fanout import outside_notice, publish_plain

from services.notify import privacy, subscribers
from services.notify.app import create_app
from services.notify.models import ChannelConsent, Subscriber
from shared.contracts.surveys import RESPONDENT_VOLUNTEERED
from shared.privacy import Person

pytestmark = pytest.mark.integration
ADMIN = {"Authorization": "Bearer test-admin-token"}


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
        yield app


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t")


async def _consents(app, **where) -> dict[str, ChannelConsent]:
    async with app.state.ctx.db.session() as s:
        ((key, value),) = where.items()
        sub = (await s.exec(select(Subscriber).where(getattr(Subscriber, key) == value))).one()
        rows = (await s.exec(select(ChannelConsent).where(ChannelConsent.subscriber_id == sub.id))).all()
    return {row.channel: row for row in rows}


def _path(text: str, route: str) -> str:
    return re.search(rf"http://127\.0\.0\.1:8004({route}/\S+)", text)[1]


async def test_each_channel_of_a_web_sign_up_is_confirmed_on_its_own(notify_app, amqp_url, smtp_server, sms_gateway):
    async with _client(notify_app) as client:
        token = await form_token(client, "/subscribe")
        form = {
            "email": "mojca@example.si",
            "phone": "041 555 666",
            "ks": ["primskovo"],
            "topics": ["utilities"],
            "channels": ["email", "sms"],
            "consent": "yes",
        }
        answer = await client.post("/subscribe", data={**form, "csrf_token": token})
        assert answer.status_code == 200
        [mail] = await smtp_server.wait_for(1)
        consents = await _consents(notify_app, email="mojca@example.si")
        assert {c: r.status for c, r in consents.items()} == {"email": "pending", "sms": "pending"}
        assert sms_gateway.requests == []  # nothing to the phone before the email link

        confirmed = await client.get(_path(mail.part("text/plain"), "/subscribe/confirm"))
        assert confirmed.status_code == 200 and "Vpišite kodo" in confirmed.text
        assert "e-naslov je potrjen" in confirmed.text
        [code_sms] = await sms_gateway.wait_for(1)  # the phone gets its code, and only that
        assert code_sms.json["to"] == "+38641555666"
        code = re.search(r"\b(\d{6})\b", code_sms.json["text"])[1]
        code_page = re.search(r'action="(/subscribe/code/[^"]+)"', confirmed.text)[1]
        consents = await _consents(notify_app, email="mojca@example.si")
        assert {c: r.status for c, r in consents.items()} == {"email": "active", "sms": "pending"}

        # The email is confirmed, the phone is not: a notice reaches the email only.
        await publish_plain(amqp_url, outside_notice(title="Izklop vode"))
        [_, notice_mail] = await smtp_server.wait_for(2)
        assert notice_mail.subject.startswith("Izklop vode") or "Izklop vode" in notice_mail.subject
        await asyncio.sleep(0.5)  # an SMS of the notice would have arrived by now
        assert len(sms_gateway.requests) == 1

        token = await form_token(client, code_page)
        entered = await client.post(code_page, data={"code": code, "csrf_token": token})
        assert entered.status_code == 200 and "Prijava je potrjena" in entered.text
        consents = await _consents(notify_app, email="mojca@example.si")
        assert {c: r.status for c, r in consents.items()} == {"email": "active", "sms": "active"}

    # Both channels confirmed: the next notice reaches both.
    await publish_plain(amqp_url, outside_notice(title="Drugo obvestilo"))
    [*_, second_mail] = await smtp_server.wait_for(3)
    assert "Drugo obvestilo" in second_mail.subject
    [_, notice_sms] = await sms_gateway.wait_for(2)
    assert notice_sms.json["to"] == "+38641555666" and "Drugo obvestilo" in notice_sms.json["text"]


def _volunteered(**data) -> bytes:
    envelope = RESPONDENT_VOLUNTEERED.envelope(
        {
            "survey_id": "s-7",
            "survey_title": "Kaj potrebujemo na Primskovem",
            "ks": "primskovo",
            "channels": ["email"],
            "consent_text": "Želim sodelovati in soglašam, da me KS obvešča.",
            "consent_at": utc_iso(),
            "consent_source": "web",
            **data,
        },
        source="/kranj/surveys",
    )
    return json.dumps(envelope).encode()


async def test_a_survey_answer_does_not_undo_a_one_click_opt_out(notify_app, amqp_url, smtp_server):
    db = notify_app.state.ctx.db
    ana = await subscribers.add_subscriber(
        db, subscribers.SubscriberIn(email="ana@example.si", ks=["primskovo"], topics=["utilities", "surveys"])
    )
    await publish_plain(amqp_url, outside_notice(title="Prvo obvestilo"))
    [first] = await smtp_server.wait_for(1)
    path = first.message["List-Unsubscribe"].strip("<>").removeprefix("http://127.0.0.1:8004")
    async with _client(notify_app) as client:
        assert (await client.post(path, data={"List-Unsubscribe": "One-Click"})).status_code == 200
    assert (await subscribers.get_subscription(db, ana.id)).status == "unsubscribed"

    await publish_plain(amqp_url, _volunteered(email="ana@example.si"), "surveys.respondent.volunteered")
    [_, confirm] = await smtp_server.wait_for(2)
    assert confirm.subject.startswith("Potrdite prijavo")
    assert confirm.message["List-Unsubscribe"] is None  # a personal message, not a notice
    assert (await subscribers.get_subscription(db, ana.id)).status == "unsubscribed"
    assert (await _consents(notify_app, email="ana@example.si"))["email"].status == "withdrawn"

    await publish_plain(amqp_url, outside_notice(title="Med odjavo"))
    await asyncio.sleep(1.0)  # the notice would have arrived by now
    assert len(smtp_server.messages) == 2  # the opt-out stands: no notice, only the confirmation

    async with _client(notify_app) as client:
        done = await client.get(_path(confirm.part("text/plain"), "/subscribe/confirm"))
        assert done.status_code == 200 and "Prijava je potrjena" in done.text
    assert (await subscribers.get_subscription(db, ana.id)).status == "active"
    record = (await _consents(notify_app, email="ana@example.si"))["email"]
    assert record.status == "active" and record.how == "survey-web" and record.proof.startswith("ip:")
    await publish_plain(amqp_url, outside_notice(title="Po potrditvi"))
    [*_, after] = await smtp_server.wait_for(3)
    assert "Po potrditvi" in after.subject


async def test_an_old_confirmation_link_does_not_undo_a_later_opt_out(notify_app, smtp_server):
    async with _client(notify_app) as client:
        token = await form_token(client, "/subscribe")
        form = {"email": "bor@example.si", "ks": ["planina"], "topics": ["general"], "channels": ["email"]}
        await client.post("/subscribe", data={**form, "consent": "yes", "csrf_token": token})
        [mail] = await smtp_server.wait_for(1)
        link = _path(mail.part("text/plain"), "/subscribe/confirm")
        assert (await client.get(link)).status_code == 200
        async with notify_app.state.ctx.db.session() as s:
            sub = (await s.exec(select(Subscriber).where(Subscriber.email == "bor@example.si"))).one()
        await subscribers.leave(notify_app.state.ctx.db, sub.id)
        await client.get(link)  # the same link again, after the opt-out
    assert (await subscribers.get_subscription(notify_app.state.ctx.db, sub.id)).status == "unsubscribed"
    assert (await _consents(notify_app, email="bor@example.si"))["email"].status == "withdrawn"


async def test_every_active_channel_has_its_consent_record(notify_app, smtp_server, sms_gateway):
    db = notify_app.state.ctx.db
    async with _client(notify_app) as client:
        staff = await client.post(
            "/api/v1/subscribers",
            json={"email": "cene@example.si", "phone": "+38640111222", "ks": ["huje"], "topics": ["general"]},
            headers=ADMIN,
        )
        assert staff.status_code == 201, staff.text
        token = await form_token(client, "/subscribe")
        form = {"email": "dana@example.si", "ks": ["huje"], "topics": ["general"], "channels": ["email"]}
        await client.post("/subscribe", data={**form, "consent": "yes", "csrf_token": token})
        [mail] = await smtp_server.wait_for(1)
        await client.get(_path(mail.part("text/plain"), "/subscribe/confirm"))

        exported = await client.post("/api/v1/subscribers/export", json={"email": "cene@example.si"}, headers=ADMIN)
        assert exported.status_code == 200, exported.text
    [cene] = exported.json()["subscriptions"]
    by_channel = {c["channel"]: c for c in cene["consents"]}
    assert set(by_channel) == {"email", "sms"}
    for record in by_channel.values():  # staff-entered: active at once, naming who entered it
        assert record["status"] == "active" and record["how"] == "staff"
        assert record["proof"].startswith("staff:") and record["proof"] != "staff:"
        assert record["at"] and record["wording_version"].startswith("sha256:") and record["wording"]

    imported = await subscribers.add_subscriber(
        db,
        subscribers.SubscriberIn(phone="+38640333444", ks=["huje"]),
        consent_source="import",
        entered_by="import by mojca.kovac",
    )
    [paper] = (await privacy.export(db, Person.of(phone=imported.phone)))["subscriptions"][0]["consents"]
    assert paper["how"] == "import" and paper["proof"] == "import by mojca.kovac" and paper["status"] == "active"

    [dana] = (await privacy.export(db, Person.of(email="dana@example.si")))["subscriptions"]
    [web] = dana["consents"]
    assert web["how"] == "web" and web["status"] == "active" and web["at"]
    assert web["proof"].startswith("ip:") and "127.0.0.1" not in web["proof"]  # the address, hashed
    assert web["wording"].startswith("Soglašam") and web["wording_version"].startswith("sha256:")
