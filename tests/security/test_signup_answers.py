"""Issue 15, minor: sign-up answered differently for a subscribed phone (200) and a new one
(303), and a new email with an already subscribed phone gave 500. Now the answer is the
same whether or not the contact is known, and never 500; a subscribed contact is never
taken over by a new sign-up.

The real notify app (its delivery worker sends to the test SMTP sink and SMS gateway) on
the real databases.
"""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest
from sqlmodel import select
from staff_login import form_token
from support.settings import make_settings
from support.times import iso, weekday_ahead

from security.helpers import ADMIN, texts_to
from services.events.registrations import ALREADY_REGISTERED
from services.notify.app import create_app
from services.notify.models import Subscriber

pytestmark = pytest.mark.integration

FORM = {"ks": ["planina"], "topics": ["general"], "consent": "yes"}


@pytest.fixture
async def notify(tmp_path, amqp_url, database_url, smtp_server, sms_gateway):
    settings = make_settings(
        tmp_path, amqp_url, notify_database_url=database_url, **smtp_server.settings(), **sms_gateway.settings()
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
            added = await client.post(
                "/api/v1/subscribers",
                headers=ADMIN,
                json={"email": "znana@example.si", "phone": "+38641999888", "ks": ["planina"],
                      "topics": ["general"], "channels": ["email", "sms"], "language": "sl"},
            )  # fmt: skip
            assert added.status_code == 201, added.text
            client.headers["X-CSRF-Token"] = await form_token(client, "/subscribe")
            yield app, client


def page_text(answer: httpx.Response) -> str:
    """What the resident reads: the page without the per-request CSRF token and signed link."""
    return re.sub(r'value="[^"]{20,}"|/subscribe/code/[^"]+', "", answer.text)


async def subscribers(app) -> list[tuple[str | None, str | None, str]]:
    async with app.state.ctx.db.session() as session:
        rows = (await session.exec(select(Subscriber))).all()
    return sorted(((r.email, r.phone, r.status) for r in rows), key=str)


async def test_an_email_sign_up_answers_the_same_for_a_known_and_a_new_address(notify):
    app, client = notify
    known = await client.post("/subscribe", data={**FORM, "email": "ZNANA@example.si", "channels": ["email"]})
    new = await client.post("/subscribe", data={**FORM, "email": "nova@example.si", "channels": ["email"]})
    assert known.status_code == new.status_code == 200
    assert page_text(known) == page_text(new)


async def test_a_phone_sign_up_answers_the_same_for_a_known_and_a_new_number(notify, sms_gateway):
    app, client = notify
    known = await client.post("/subscribe", data={**FORM, "phone": "041 999 888", "channels": ["sms"]})
    new = await client.post("/subscribe", data={**FORM, "phone": "041 777 666", "channels": ["sms"]})
    assert known.status_code == new.status_code == 303
    assert known.headers["location"].startswith("/subscribe/code/") and new.headers["location"].startswith(
        "/subscribe/code/"
    )
    sent = await sms_gateway.wait_for(2)
    assert sorted(s.json["to"] for s in sent) == ["+38641777666", "+38641999888"]  # a code to each, the same words
    pages = [await client.get(a.headers["location"]) for a in (known, new)]
    assert [p.status_code for p in pages] == [200, 200] and page_text(pages[0]) == page_text(pages[1])
    wrong = [await client.post(a.headers["location"], data={"code": "000000x"}) for a in (known, new)]
    assert [w.status_code for w in wrong] == [422, 422] and page_text(wrong[0]) == page_text(wrong[1])
    # The known number's code confirms nothing new: the subscription is as it was.
    code = re.search(r"\b(\d{6})\b", next(s for s in sent if s.json["to"] == "+38641999888").json["text"])[1]
    done = await client.post(known.headers["location"], data={"code": code})
    assert done.status_code == 200 and "Prijava je potrjena" in done.text
    assert ("znana@example.si", "+38641999888", "active") in await subscribers(app)


async def test_a_new_email_with_a_subscribed_phone_is_no_500_and_takes_nothing_over(notify):
    app, client = notify
    before = await subscribers(app)
    clash = await client.post(
        "/subscribe",
        data={**FORM, "email": "druga@example.si", "phone": "+386 41 999 888", "channels": ["email", "sms"]},
    )
    plain = await client.post("/subscribe", data={**FORM, "email": "tretja@example.si", "channels": ["email"]})
    assert clash.status_code == plain.status_code == 200
    assert page_text(clash) == page_text(plain)
    after = await subscribers(app)
    assert ("znana@example.si", "+38641999888", "active") in after
    assert [r for r in after if r not in before] == [("tretja@example.si", None, "pending")]


async def test_registering_a_known_contact_again_sends_its_link_to_its_owner_only(platform, smtp_server, sms_gateway):
    """Event registration: a second registration with a contact that already has one answers
    409 with a neutral text and nothing of the registration (no id, link or name); the link
    goes again to the contacts given at the first registration, never to those typed now."""
    async with platform() as p:
        thursday = weekday_ahead(3, weeks=2)
        event = await p.events.post(
            "/api/v1/events",
            headers=ADMIN,
            json={"ks": "primskovo", "title": "Pohod na Šmarjetno goro", "starts_at": iso(thursday),
                  "ends_at": iso(thursday + timedelta(hours=2)), "venue": "Dom KS Primskovo", "capacity": 20},
        )  # fmt: skip
        event_id = event.json()["id"]
        assert (await p.events.post(f"/api/v1/events/{event_id}/publish", headers=ADMIN)).status_code == 200
        owner = {"name": "Ana Kos", "email": "ana.kos@example.si"}
        first = await p.events.post(f"/api/v1/events/{event_id}/registrations", json=owner)
        assert first.status_code == 201, first.text
        await p.settled(owner["email"], 1)

        prober = {"name": "Nekdo", "email": "ANA.KOS@example.si", "phone": "+38640555999"}
        again = await p.events.post(f"/api/v1/events/{event_id}/registrations", json=prober)
        assert again.status_code == 409, again.text
        assert again.json() == {"detail": str(ALREADY_REGISTERED)}
        token = await form_token(p.events, f"/events/{event_id}")
        page = await p.events.post(f"/events/{event_id}/prijava", data={**prober, "csrf_token": token})
        assert page.status_code == 409
        assert "Prijava s tem e-naslovom ali telefonom že obstaja" in page.text
        for answer in (again, page):
            assert first.json()["id"] not in answer.text and "Ana Kos" not in answer.text
            assert "/events/prijava/" not in answer.text

        await p.settled(owner["email"], 3)  # the first confirmation, and the link again for each try
        mails, sms = texts_to(smtp_server, sms_gateway, owner["email"], prober["phone"])
        assert len(mails) == 3 and sms == []
        # Each carries the registration's (short, signed) link, which leads to its own page.
        codes = [re.search(r"/k/([A-Za-z0-9_-]+)", mail) for mail in mails]
        assert all(codes), mails
        opened = await p.notify.get(f"/k/{codes[-1].group(1)}")
        assert opened.status_code in (302, 303, 307) and opened.headers["location"] == first.json()["cancel_url"]
        assert await p.deliveries(prober["phone"]) == []
