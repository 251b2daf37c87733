"""Finding 2, the last rule: SMS only to mobile numbers *of the allowed countries*.

A foreign mobile number (+43 664…, +49 151…) used to pass every API and was only skipped at
notify's delivery (SMS pumping to foreign ranges costs the city money). Now every API that
takes a phone answers 422 with the reason in Slovenian then English, through the one check
`shared.contact.sms_refusal(phone, settings)`, while `KRANJ_SMS_COUNTRY_CODES` (default
`386`) leaves the country out; widened to include it, the same number is accepted.

Through the real HTTP APIs of booking, events and notify (the `platform` of test_relay.py:
the real broker and notify's database)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from staff_login import form_token
from support.times import iso, weekday_ahead

from security.helpers import ADMIN, at, day_ahead, room_request

pytestmark = pytest.mark.integration

AUSTRIAN_MOBILE = "+436641234567"
REFUSED_SL = "Na to številko ne moremo pošiljati SMS: pošiljamo le na mobilne številke s kodo države +386."
REFUSED_EN = "We cannot send SMS to this number"


async def _published_event(p) -> str:
    thursday = weekday_ahead(3, weeks=2)
    event = await p.events.post(
        "/api/v1/events",
        headers=ADMIN,
        json={"ks": "primskovo", "title": "Delavnica", "description": "Za vse.", "starts_at": iso(thursday),
              "ends_at": iso(thursday + timedelta(hours=2)), "venue": "Dom KS Primskovo", "capacity": 20},
    )  # fmt: skip
    assert event.status_code == 201, event.text
    published = await p.events.post(f"/api/v1/events/{event.json()['id']}/publish", headers=ADMIN)
    assert published.status_code == 200, published.text
    return event.json()["id"]


async def _four_ways(p, phone: str):
    """The room request, the event registration, staff's subscriber add and the sign-up form
    (and a KS's contacts for booking requests, answered by `_ks_contacts`)."""
    event_id = await _published_event(p)
    thursday = day_ahead(15, weekday=3)  # a Thursday evening: no KS office hours in the room
    request = room_request(
        15, starts_at=iso(at(thursday, "18:00")), ends_at=iso(at(thursday, "20:00")), phone=phone, email=None
    )
    booked = await p.booking.post("/api/v1/bookings", json={**request, "purpose": "Sestanek", "name": "Ana"})
    registered = await p.events.post(f"/api/v1/events/{event_id}/registrations", json={"name": "Ana", "phone": phone})
    added = await p.notify.post(
        "/api/v1/subscribers", headers=ADMIN, json={"phone": phone, "ks": ["primskovo"], "topics": ["general"]}
    )
    # The sign-up form with another number of the same country (the staff add took this one).
    other = phone[:-1] + ("8" if phone[-1] != "8" else "7")
    form = {"phone": other, "ks": ["primskovo"], "topics": ["general"], "channels": ["sms"], "consent": "yes"}
    signup = await p.notify.post("/subscribe", data={**form, "csrf_token": await form_token(p.notify, "/subscribe")})
    return booked, registered, added, signup


async def test_a_foreign_mobile_is_refused_by_every_api_with_the_default_countries(platform):
    async with platform() as p:
        booked, registered, added, signup = await _four_ways(p, AUSTRIAN_MOBILE)
        for answer in (booked, registered, added):
            assert answer.status_code == 422, answer.text
            detail = answer.json()["detail"]
            assert detail.startswith(REFUSED_SL) and REFUSED_EN in detail, detail
        assert booked.json()["rules"] == ["sms-country"]
        assert signup.status_code == 422, signup.text
        assert "kodo države +386" in signup.text
        contacts = await _ks_contacts(p, AUSTRIAN_MOBILE)
        assert contacts.status_code == 422, contacts.text
        assert contacts.json()["detail"].startswith("2. kontakt / contact 2: " + REFUSED_SL)
        kept = await p.notify.get("/api/v1/ks/primskovo/contacts", headers=ADMIN)
        assert kept.json()["contacts"] == []  # nothing of the refused list was stored


async def _ks_contacts(p, phone: str):
    return await p.notify.put(
        "/api/v1/ks/primskovo/contacts",
        headers=ADMIN,
        json={"contacts": [{"name": "Tajnica", "email": "tajnica@example.si"}, {"name": "Predsednik", "phone": phone}]},
    )


async def test_a_foreign_mobile_is_accepted_where_its_country_is_allowed(platform):
    async with platform(sms_country_codes="386,43") as p:
        booked, registered, added, signup = await _four_ways(p, AUSTRIAN_MOBILE)
        assert booked.status_code == 201, booked.text
        assert registered.status_code == 201, registered.text
        assert added.status_code == 201, added.text
        assert added.json()["phone"] == AUSTRIAN_MOBILE
        assert signup.status_code in (200, 303), signup.text
        assert "kodo države" not in signup.text
        contacts = await _ks_contacts(p, AUSTRIAN_MOBILE)
        assert contacts.status_code == 200, contacts.text
        assert contacts.json()["contacts"][1]["phone"] == AUSTRIAN_MOBILE
