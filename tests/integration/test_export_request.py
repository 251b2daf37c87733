"""GDPR access from the manage page (issue 17): a resident asks for their data, notify asks
every other service by message, each answers its part, and the resident gets a link at the
confirmed address to one JSON document — through the four real services on one broker
vhost, a real SMTP server, on SQLite and PostgreSQL (notify's database)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from security.helpers import ADMIN, at, day_ahead
from staff_login import form_token
from support.apps import running
from support.settings import make_settings, wait_until
from support.times import iso, weekday_ahead

from shared.settings import SERVICES

pytestmark = pytest.mark.integration

NAME, EMAIL, PHONE = "Marta Kern", "marta.kern@example.si", "041 222 333"


async def test_a_resident_gets_all_their_data_from_the_manage_page(tmp_path, amqp_url, database_url, smtp_server):
    settings = make_settings(tmp_path, amqp_url, notify_database_url=database_url, **smtp_server.settings())
    async with running(settings) as (c, apps):
        added = await c["notify"].post(
            "/api/v1/subscribers", headers=ADMIN,
            json={"email": EMAIL, "phone": PHONE, "ks": ["primskovo"], "topics": ["general"], "channels": ["email"]},
        )  # fmt: skip
        assert added.status_code == 201, added.text
        thursday = weekday_ahead(3, weeks=2)
        event = await c["events"].post(
            "/api/v1/events", headers=ADMIN,
            json={"ks": "primskovo", "title": "Delavnica", "starts_at": iso(thursday),
                  "ends_at": iso(thursday + timedelta(hours=2)), "venue": "Dom KS Primskovo", "capacity": 20},
        )  # fmt: skip
        event_id = event.json()["id"]
        await c["events"].post(f"/api/v1/events/{event_id}/publish", headers=ADMIN)
        assert (await c["events"].post(f"/api/v1/events/{event_id}/registrations",
                                       json={"name": NAME, "email": EMAIL})).status_code == 201  # fmt: skip
        for days, contact, purpose in ((15, {"email": EMAIL}, "Bralni krožek"), (40, {"phone": PHONE}, "Šahovski večer")):
            friday = at(day_ahead(days, weekday=4), "18:00")
            booked = await c["booking"].post(
                "/api/v1/bookings",
                json={"room_id": "ks-primskovo", "starts_at": iso(friday), "ends_at": iso(friday + timedelta(hours=2)),
                      "purpose": purpose, "name": NAME, "attendees": 6, **contact},
            )  # fmt: skip
            assert booked.status_code == 201, booked.text
        survey_id = (await c["surveys"].post("/api/v1/surveys", json={"template": "needs-assessment", "ks": "primskovo"},
                                             headers=ADMIN)).json()["id"]  # fmt: skip
        await c["surveys"].post(f"/api/v1/surveys/{survey_id}/open", headers=ADMIN)
        answered = await c["surveys"].post(f"/api/v1/surveys/{survey_id}/responses",
                                           json={"answers": {"need": "yes", "what": ["culture"],
                                                             "existing": f"Pišite mi na {EMAIL}."}})  # fmt: skip
        assert answered.status_code == 201, answered.text

        manage = apps["notify"].state.ctx.extra["renderer"].manage_url(added.json()["id"])
        path = "/manage/" + manage.rsplit("/manage/", 1)[1]
        page = await c["notify"].get(path)
        assert "Pošljite mi moje podatke" in page.text
        asked = await c["notify"].post(f"{path}/izvoz", data={"csrf_token": await form_token(c["notify"], path)})
        assert asked.status_code == 200, asked.text
        assert "Zahteva je oddana" in asked.text and "m***@example.si" in asked.text

        def export_mails():
            return [m for m in smtp_server.messages if "podatki" in (m.message["Subject"] or "")]

        [mail] = await wait_until(export_mails, timeout=60, message="the email with the link to her data")
        assert mail.rcpt_tos == [EMAIL]
        text = mail.part("text/plain") or ""
        [link] = re.findall(r"https?://\S+/manage/izvoz/[A-Za-z0-9_.\-]+", text)
        download = await c["notify"].get("/manage/izvoz/" + link.rsplit("/manage/izvoz/", 1)[1])
        assert download.status_code == 200, download.text
        assert "attachment" in download.headers["content-disposition"]
        document = download.json()
        assert [s["email"] for s in document["notify"]["subscriptions"]] == [EMAIL]
        assert [r["name"] for r in document["events"]["registrations"]] == [NAME]
        # Only what her confirmed contact finds: the phone on her subscription was never
        # confirmed (no SMS chosen), so the booking made with that phone alone is not in it.
        assert [b["purpose"] for b in document["booking"]["bookings"]] == ["Bralni krožek"]
        assert len(document["surveys"]["answers_naming_them"]) == 1

        again = await c["notify"].post(f"{path}/izvoz", data={"csrf_token": await form_token(c["notify"], path)})
        assert again.status_code == 409 and "danes že oddali" in again.text
        forged = await c["notify"].get("/manage/izvoz/" + "x" * 40)
        assert forged.status_code == 404


def test_every_service_answers(tmp_path):  # the services notify waits for are the platform's others
    from services.notify.exports import SERVICES as ANSWERING

    assert set(ANSWERING) == set(SERVICES) - {"notify"}


async def test_parts_arriving_at_once_are_all_kept(tmp_path, database_url):
    """The three answers arrive together, each in its own consumer transaction: none may
    overwrite another (on PostgreSQL the request's row is locked), and the link goes once."""
    import asyncio

    from sqlmodel import select

    from services.notify import exports
    from services.notify.models import Delivery, ExportRequest, Subscriber
    from shared.contracts.privacy import ExportAnswered
    from shared.db import Database
    from shared.migrations import upgrade_async

    settings = make_settings(tmp_path, "amqp://unused/", notify_database_url=database_url)
    await upgrade_async("notify", database_url)
    db = Database(database_url)
    try:
        async with db.session() as s:
            subscriber = Subscriber(email=EMAIL, channels=["email"], consent_source="staff", consent_text="Da.")
            s.add(subscriber)
            await s.flush()
            request = ExportRequest(subscriber_id=subscriber.id, email=EMAIL)
            s.add(request)
            await s.commit()
            request_id = request.id

        async def answer(service: str) -> str:
            async with db.session() as s:
                part = ExportAnswered(request_id=request_id, service=service, document={"from": service})
                outcome = await exports.take_answer(s, settings, part)
                await asyncio.sleep(0.2)  # hold the transaction open while the others arrive
                await s.commit()
                return outcome

        outcomes = await asyncio.gather(*(answer(name) for name in exports.SERVICES))
        assert sum(o.startswith("complete") for o in outcomes) == 1, outcomes
        async with db.session() as s:
            done = await s.get(ExportRequest, request_id)
            links = (await s.exec(select(Delivery).where(Delivery.address == EMAIL))).all()
        assert done is not None and done.completed_at is not None
        assert done.parts == {name: {"from": name} for name in exports.SERVICES}
        assert len(links) == 1
    finally:
        await db.dispose()
