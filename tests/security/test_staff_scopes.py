"""Finding 5 against the real services, broker and databases, and the minor items of the same
pass: organisers act only on their own events; drafts are for the staff allowed to read them;
a booking's details are for its KS's staff or the requester's signed link; notify's delivery
log and resend belong to the notice's KS, with `last_error` masked.

(The whole matrix, every staff endpoint × role × KS × owner, is
tests/security/test_permission_matrix.py.)"""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from support.settings import make_settings
from support.times import iso, local_day

from security.helpers import ADMIN, at, day_ahead
from services.booking.messages import requester_token
from shared import clock

pytestmark = pytest.mark.integration

PHONE = "+38640123456"
EMAIL = "janez.kranjc@example.si"


def event_body(ks: str = "primskovo", days: int = 21) -> dict:
    starts = local_day(days, hour=17)
    return {
        "ks": ks,
        "title": "Delavnica pletenja",
        "description": "Vabljeni vsi krajani.",
        "starts_at": iso(starts),
        "ends_at": iso(starts + timedelta(hours=2)),
        "venue": "Dom KS",
        "capacity": 10,
    }


async def test_organiser_acts_only_on_the_events_they_created(services):
    async with services("events") as events:
        client = events.client
        mine = await events.staff("organiser", ["primskovo"], label="Društvo upokojencev")
        theirs = await events.staff("organiser", ["primskovo"], label="Športno društvo")
        staff = await events.staff("ks-staff", ["primskovo"], label="tajnica KS Primskovo")

        own = await client.post("/api/v1/events", json=event_body(), headers=mine)
        assert own.status_code == 201, own.text
        own_id = own.json()["id"]
        other = await client.post("/api/v1/events", json=event_body(days=22), headers=theirs)
        assert other.status_code == 201, other.text
        other_id = other.json()["id"]
        elsewhere = await client.post("/api/v1/events", json=event_body("huje"), headers=mine)
        assert elsewhere.status_code == 403 and " / " in elsewhere.json()["detail"]

        # the other organiser's draft: not readable, not changeable, not publishable
        for method, path, body in (
            ("GET", f"/api/v1/events/{other_id}", None),
            ("PATCH", f"/api/v1/events/{other_id}", {"title": "Prevzeto"}),
            ("POST", f"/api/v1/events/{other_id}/publish", None),
            ("POST", f"/api/v1/events/{other_id}/cancel", None),
            ("GET", f"/api/v1/events/{other_id}/registrations", None),
            ("GET", f"/api/v1/events/{other_id}/registrations.csv", None),
        ):
            answer = await client.request(method, path, json=body, headers=mine)
            assert answer.status_code == 403, f"{method} {path}: {answer.status_code} {answer.text}"
            assert "organiser" in answer.json()["detail"] or "role" in answer.json()["detail"]
        assert (await client.get(f"/api/v1/events/{other_id}", headers=theirs)).status_code == 200

        # their own: everything an organiser needs
        published = await client.post(f"/api/v1/events/{own_id}/publish", headers=mine)
        assert published.status_code == 200, published.text
        registered = await client.post(
            f"/api/v1/events/{own_id}/registrations", json={"name": "Ana Novak", "email": "ana@example.si"}
        )
        assert registered.status_code == 201, registered.text
        listed = await client.get(f"/api/v1/events/{own_id}/registrations", headers=mine)
        assert listed.status_code == 200 and listed.json()[0]["email"] == "ana@example.si"
        # ... which the other organiser may not read or cancel
        assert (await client.get(f"/api/v1/events/{own_id}/registrations", headers=theirs)).status_code == 403
        reg_id = registered.json()["id"]
        assert (await client.post(f"/api/v1/registrations/{reg_id}/cancel", headers=theirs)).status_code == 403
        # the KS's staff may do all of it, for every event of their KS
        assert (
            await client.patch(f"/api/v1/events/{other_id}", json={"title": "Nov"}, headers=staff)
        ).status_code == 200

        # the staff pages list an organiser's own events only
        page = await client.get("/events/osebje/", headers=mine)
        assert page.status_code == 200 and own_id in page.text and other_id not in page.text
        assert (await client.get(f"/events/osebje/{other_id}", headers=mine)).status_code == 403


async def test_organiser_has_no_booking_or_room_rights(services):
    async with services("booking") as booking:
        client = booking.client
        organiser = await booking.staff("organiser", ["primskovo"], label="Društvo")
        day = day_ahead(15, weekday=3)
        body = {
            "room_id": "ks-primskovo",
            "starts_at": at(day, "18:00").isoformat(),
            "ends_at": at(day, "20:00").isoformat(),
            "purpose": "Vaje",
            "name": "Mojca Kranjc",
            "email": "mojca.kranjc@example.si",
            "attendees": 8,
        }
        requested = await client.post("/api/v1/bookings", json=body)
        assert requested.status_code == 201, requested.text
        booking_id = requested.json()["id"]
        for method, path, payload in (
            ("POST", f"/api/v1/bookings/{booking_id}/approve", None),
            ("POST", f"/api/v1/bookings/{booking_id}/cancel", None),
            ("GET", "/api/v1/bookings", None),
            ("PATCH", "/api/v1/rooms/ks-primskovo", {"capacity": 500}),
        ):
            answer = await client.request(method, path, json=payload, headers=organiser)
            assert answer.status_code == 403, f"{method} {path}: {answer.status_code} {answer.text}"
        details = (await client.get(f"/api/v1/bookings/{booking_id}", headers=organiser)).json()
        assert details["email"] is None and details["name"] is None and details["purpose"] == ""


async def test_organiser_enters_no_paper_survey_answers(services):
    async with services("surveys") as surveys:
        organiser = await surveys.staff("organiser", ["primskovo"], label="Društvo")
        made = await surveys.client.post(
            "/api/v1/surveys", json={"template": "needs-assessment", "ks": "primskovo"}, headers=ADMIN
        )
        survey_id = made.json()["id"]
        assert (await surveys.client.post(f"/api/v1/surveys/{survey_id}/open", headers=ADMIN)).status_code == 200
        paper = await surveys.client.post(
            f"/api/v1/surveys/{survey_id}/responses", json={"answers": {}, "channel": "paper"}, headers=organiser
        )
        assert paper.status_code == 403, paper.text


async def test_draft_events_are_readable_only_by_staff_allowed_to(services):
    async with services("events") as events:
        huje = await events.staff("ks-staff", ["huje"], label="tajnik KS Huje")
        primskovo = await events.staff("ks-staff", ["primskovo"], label="tajnica KS Primskovo")
        draft = (await events.client.post("/api/v1/events", json=event_body(), headers=ADMIN)).json()["id"]
        assert (await events.client.get(f"/api/v1/events/{draft}")).status_code == 401
        assert (await events.client.get(f"/api/v1/events/{draft}", headers=huje)).status_code == 403
        assert (await events.client.get(f"/api/v1/events/{draft}", headers=primskovo)).status_code == 200


async def test_draft_surveys_are_readable_only_by_staff_allowed_to(services):
    async with services("surveys") as surveys:
        huje = await surveys.staff("ks-staff", ["huje"], label="tajnik KS Huje")
        primskovo = await surveys.staff("ks-staff", ["primskovo"], label="tajnica KS Primskovo")
        made = await surveys.client.post(
            "/api/v1/surveys", json={"template": "needs-assessment", "ks": "primskovo"}, headers=ADMIN
        )
        draft = made.json()["id"]
        assert (await surveys.client.get(f"/api/v1/surveys/{draft}")).status_code == 401
        refused = await surveys.client.get(f"/api/v1/surveys/{draft}", headers=huje)
        assert refused.status_code == 403 and " / " in refused.json()["detail"]
        assert (await surveys.client.get(f"/api/v1/surveys/{draft}", headers=primskovo)).status_code == 200


async def test_booking_details_only_for_its_ks_staff_or_the_signed_link(services):
    async with services("booking") as booking:
        client = booking.client
        day = day_ahead(16, weekday=3)
        body = {
            "room_id": "ks-primskovo",
            "starts_at": at(day, "18:00").isoformat(),
            "ends_at": at(day, "20:00").isoformat(),
            "purpose": "Rojstni dan hčerke Ane",
            "name": "Janez Kranjc",
            "email": EMAIL,
            "phone": "041 222 333",
            "attendees": 20,
        }
        made = await client.post("/api/v1/bookings", json=body)
        assert made.status_code == 201, made.text
        booking_id = made.json()["id"]
        huje = await booking.staff("ks-staff", ["huje"], label="tajnik KS Huje")
        primskovo = await booking.staff("ks-staff", ["primskovo"], label="tajnica KS Primskovo")

        for headers in ({}, huje):  # anyone with the id, staff of another KS
            seen = (await client.get(f"/api/v1/bookings/{booking_id}", headers=headers)).json()
            assert seen["status"] == "requested"
            assert seen["name"] is None and seen["email"] is None and seen["phone"] is None
            assert seen["purpose"] == "" and "Ane" not in str(seen)
        forged = (await client.get(f"/api/v1/bookings/{booking_id}", params={"token": "x" * 40})).json()
        assert forged["email"] is None

        token = requester_token(booking.settings, booking_id)
        own = (await client.get(f"/api/v1/bookings/{booking_id}", params={"token": token})).json()
        assert own["email"] == EMAIL and own["purpose"] == body["purpose"]
        staff = (await client.get(f"/api/v1/bookings/{booking_id}", headers=primskovo)).json()
        assert staff["email"] == EMAIL and staff["purpose"] == body["purpose"]


async def test_notify_delivery_log_and_resend_belong_to_the_notice_ks(tmp_path, amqp_url, database_url):
    from services.notify.app import create_app
    from services.notify.models import Delivery, Notice

    settings = make_settings(tmp_path, amqp_url, notify_database_url=database_url)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        ctx = app.state.ctx

        async def notice(ks: list[str]) -> str:
            row = Notice(
                source="/komunala",
                source_id=f"n-{ks[0]}",
                title="Zapora",
                body="Zapora ceste.",
                ks=ks,
                channels=["sms"],
            )
            async with ctx.db.session() as session:
                session.add(row)
                await session.flush()
                session.add(
                    Delivery(
                        notice_id=row.id,
                        channel="sms",
                        address=PHONE,
                        status="failed-permanent",
                        attempts=3,
                        next_attempt_at=None,
                        created_at=clock.now(),
                        last_error=f"gateway 400: invalid recipient {PHONE} (owner {EMAIL})",
                    )
                )
                await session.commit()
                return row.id

        primskovo_notice = await notice(["primskovo"])
        city_notice = await notice(["*"])
        tokens = {}
        for name, role, ks in (
            ("primskovo", "ks-staff", ["primskovo"]),
            ("huje", "ks-staff", ["huje"]),
            ("org", "organiser", ["primskovo"]),
        ):
            _id, value = await ctx.accounts.create_token(role=role, ks=ks, label=name)
            tokens[name] = {"Authorization": f"Bearer {value}"}

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notify.test") as client:
            log = f"/api/v1/notices/{primskovo_notice}/deliveries"
            for who in ("huje", "org"):
                assert (await client.get(log, headers=tokens[who])).status_code == 403
                assert (await client.post(f"{log}/resend", headers=tokens[who])).status_code == 403
            seen = await client.get(log, headers=tokens["primskovo"])
            assert seen.status_code == 200, seen.text
            row = seen.json()["deliveries"][0]
            assert PHONE not in seen.text and EMAIL not in seen.text
            assert row["last_error"].startswith("gateway 400: invalid recipient") and "***" in row["last_error"]
            assert row["to"] != PHONE

            city = f"/api/v1/notices/{city_notice}/deliveries"
            assert (await client.get(city, headers=tokens["primskovo"])).status_code == 403
            assert (await client.get(city, headers=ADMIN)).status_code == 200
            assert (await client.post(f"{city}/resend", headers=tokens["primskovo"])).status_code == 403

            resent = await client.post(f"{log}/resend", headers=tokens["primskovo"])
            assert resent.status_code == 200 and resent.json() == {"requeued": 1}
