"""Finding 2: the platform as a relay for anyone's words.

An anonymous room request (and likewise an event registration) sent SMS and email to any
number or address it was given, with the requester's own name and purpose text, under the
KS's name, one message per date of a series (one request: 23 SMS to one number); premium-rate
(+386 90, 89), toll-free (80) and landline numbers were accepted and sent SMS.

The rules, tested through the real path (booking's and events' HTTP APIs, the real broker,
notify's real consumer and delivery worker, a real SMTP server and HTTP SMS gateway):
- a contact nobody confirmed gets fixed wording only: none of the requester's words;
- a series is one request: one message per channel, however many dates;
- at most `unconfirmed_per_contact_daily` (3) such messages a day per contact and
  `unconfirmed_daily_cap` (500) across the platform; the rest are recorded as skipped and
  counted (`kranj_unconfirmed_messages_total`), logged without contact data;
- SMS only to mobile numbers: the APIs answer 422, and notify's delivery skips any other;
- a confirmed subscriber (or staff's own booking) still gets the full personal message.

Times come from the platform clock (tests/support/times.py), never literal dates."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from urllib.parse import urlsplit

import aio_pika
import pytest
from staff_login import form_token
from support.settings import TEST_ADMIN_TOKEN, wait_until
from support.times import iso, local_day, weekday_ahead

from security.helpers import (
    PHISHING,
    ROOM,
    VICTIM_EMAIL,
    VICTIM_PHONE,
    at,
    day_ahead,
    room_request,
    texts_to,
)
from shared.contracts.booking import BOOKING_REQUESTED

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
NOT_MOBILE = "Na to številko ne moremo pošiljati SMS: vpišite številko mobilnega telefona."
REFUSED_NUMBERS = {
    "premium-rate 090": "+38690123456",
    "premium-rate 089": "+38689123456",
    "toll-free 080": "+38680123456",
    "landline (Kranj)": "+38642012345",
}


def assert_no_words_of_the_requester(text: str) -> None:
    for words in ("zaklenjen", "Odklenite", "evil.example", "https://evil", "Banka", "NLB", "varnostna"):
        assert words not in text, f"the requester's words {words!r} reached the contact: {text!r}"


async def test_an_anonymous_request_gives_a_victim_one_fixed_message_without_the_requesters_words(
    platform, smtp_server, sms_gateway
):
    async with platform() as p:
        # The attack of the report as a series: refused for a resident (finding 3), nothing sent.
        series = room_request(15, recurrence={"weekly_until": (day_ahead(15) + timedelta(weeks=22)).isoformat()})
        refused = await p.booking.post("/api/v1/bookings", json=series)
        assert refused.status_code == 403, refused.text
        # A single anonymous request with the victim's number and address and a phishing purpose.
        made = await p.booking.post("/api/v1/bookings", json=room_request(16))
        assert made.status_code == 201, made.text
        assert made.json()["status"] == "requested"

        await p.settled(VICTIM_PHONE, 1)
        await p.settled(VICTIM_EMAIL, 1)
        await asyncio.sleep(1.0)  # nothing more is on its way
        mails, sms = texts_to(smtp_server, sms_gateway, VICTIM_EMAIL, VICTIM_PHONE)
        assert len(sms) == 1 and len(mails) == 1, (sms, mails)
        for text in (*sms, *mails):
            assert_no_words_of_the_requester(text)
        # Fixed wording: the room, the KS, that a request names this contact, "ignore it if not you",
        # and the cancel link (short and signed in the SMS) that lets the victim free the slot.
        assert "Dom KS Primskovo" in mails[0] and "KS Primskovo" in mails[0]
        assert "niste oddali vi, sporočila prezrite" in mails[0]
        assert "/k/" in sms[0]
        short = next(word for word in sms[0].split() if "/k/" in word)
        followed = await p.notify.get(urlsplit(short).path)
        assert followed.status_code == 303 and "/preklic" in followed.headers["location"]


async def test_a_staff_series_of_many_dates_is_one_message_per_channel(platform, smtp_server, sms_gateway):
    async with platform() as p:
        first = at(day_ahead(14, weekday=3), "18:00")
        series = room_request(
            0,
            starts_at=iso(first),
            ends_at=iso(first + timedelta(hours=2)),
            purpose="Vaje pevskega zbora",
            name="Pevski zbor Primskovo",
            email="zbor@example.si",
            phone="+38640555111",
            recurrence={"weekly_until": (day_ahead(14, weekday=3) + timedelta(weeks=8)).isoformat()},
            on_conflict="skip",  # a holiday among the dates is left out
        )
        made = await p.booking.post("/api/v1/bookings", json=series, headers=ADMIN)
        assert made.status_code == 201, made.text
        assert len(made.json()["bookings"]) >= 6  # one request, many dates, one series_id

        await wait_until(lambda: len(sms_gateway.requests) >= 1, timeout=30, message="the series' SMS")
        await smtp_server.wait_for(1, timeout=30)
        await asyncio.sleep(2.0)  # the other dates' messages have been consumed by now
        mails, sms = texts_to(smtp_server, sms_gateway, "zbor@example.si", "+38640555111")
        assert len(sms) == 1 and len(mails) == 1, (len(sms), len(mails))
        # Staff made it: told in full (their own words were seen by staff), saying it is a series.
        assert "Vaje pevskega zbora" in mails[0] and "ponavljajoča se rezervacija" in mails[0].lower()


@pytest.mark.parametrize("kind", sorted(REFUSED_NUMBERS))
async def test_numbers_that_are_not_mobile_are_refused_and_never_texted(platform, sms_gateway, kind):
    number = REFUSED_NUMBERS[kind]
    async with platform() as p:
        booked = await p.booking.post("/api/v1/bookings", json=room_request(17, phone=number, purpose="Sestanek"))
        assert booked.status_code == 422, booked.text
        assert NOT_MOBILE in booked.json()["detail"] and "mobile phone number" in booked.json()["detail"]

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
        registered = await p.events.post(
            f"/api/v1/events/{event.json()['id']}/registrations", json={"name": "Ana", "phone": number}
        )
        assert registered.status_code == 422, registered.text
        assert NOT_MOBILE in registered.json()["detail"]

        added = await p.notify.post(
            "/api/v1/subscribers", headers=ADMIN, json={"phone": number, "ks": ["primskovo"], "topics": ["general"]}
        )
        assert added.status_code == 422, added.text
        assert NOT_MOBILE in added.json()["detail"]
        form = {"phone": number, "ks": ["primskovo"], "topics": ["general"], "channels": ["sms"], "consent": "yes"}
        signup = await p.notify.post(
            "/subscribe", data={**form, "csrf_token": await form_token(p.notify, "/subscribe")}
        )
        assert signup.status_code == 422 and "Vpišite slovensko mobilno številko" in signup.text

        # Defence in depth: a booking fact with that number straight on the bus (as booking
        # publishes, with the broker-checked user_id) still gets no SMS from notify's delivery.
        data = {
            "booking_id": "relay-landline",
            "room_id": ROOM,
            "room_name": "Dom KS Primskovo",
            "ks": "primskovo",
            "starts_at": iso(local_day(18)),
            "ends_at": iso(local_day(18, 20)),
            "purpose": "Sestanek",
            "attendees": 3,
            "status": "requested",
            "requester": {"name": "Ana", "phone": number},
        }
        connection = await aio_pika.connect(p.apps["notify"].state.ctx.settings.amqp_url)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange("kranj")
            envelope = BOOKING_REQUESTED.envelope(data, source="/kranj/booking")
            await exchange.publish(
                aio_pika.Message(json.dumps(envelope, ensure_ascii=False).encode(), user_id="guest"),
                routing_key=BOOKING_REQUESTED.routing_key,
            )
        [(channel_name, status, error)] = await p.settled(number, 1)
        assert channel_name == "sms" and status == "skipped" and "mobile" in (error or "")
        assert sms_gateway.requests == []


async def test_the_daily_cap_stops_the_fourth_message_to_one_unconfirmed_contact(
    platform, smtp_server, sms_gateway, caplog
):
    caplog.set_level(logging.INFO)
    async with platform(booking_pending_per_contact=10) as p:
        for n in range(4):  # four requests naming one phone, each with a different email
            made = await p.booking.post(
                "/api/v1/bookings",
                json=room_request(14 + 7 * n, purpose="Sestanek", name="Krajan", email=f"krajan{n}@example.si"),
            )
            assert made.status_code == 201, made.text
        rows = await p.settled(VICTIM_PHONE, 4)
        statuses = sorted(status for _, status, _ in rows)
        assert statuses == ["sent", "sent", "sent", "skipped"], rows
        [skipped] = [error for _, status, error in rows if status == "skipped"]
        assert "KRANJ_UNCONFIRMED_PER_CONTACT_DAILY" in (skipped or "")
        assert len([r for r in sms_gateway.requests if r.json["to"] == VICTIM_PHONE]) == 3
        for n in range(4):  # each email address was told once: under its own cap
            assert [s for _, s, _ in await p.settled(f"krajan{n}@example.si", 1)] == ["sent"]

        metrics = (await p.notify.get("/metrics")).text
        assert 'kranj_unconfirmed_messages_total{channel="sms",outcome="contact-cap"}' in metrics
        logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
        assert "not sent" in logged
        assert VICTIM_PHONE not in logged and VICTIM_PHONE[1:] not in logged  # contact data never in logs


async def test_the_platform_wide_daily_cap(platform, sms_gateway):
    async with platform(unconfirmed_daily_cap=2) as p:
        phones = ["+38640700001", "+38640700002", "+38640700003"]
        for n, phone in enumerate(phones):
            made = await p.booking.post(
                "/api/v1/bookings", json=room_request(14 + 7 * n, purpose="Sestanek", email=None, phone=phone)
            )
            assert made.status_code == 201, made.text
        outcomes = [(await p.settled(phone, 1))[0] for phone in phones]
        # the three requests may reach notify in any order: whichever comes third is stopped
        assert sorted(status for _, status, _ in outcomes) == ["sent", "sent", "skipped"], outcomes
        [skipped] = [error for _, status, error in outcomes if status == "skipped"]
        assert "KRANJ_UNCONFIRMED_DAILY_CAP" in (skipped or "")
        assert len(sms_gateway.requests) == 2


async def test_a_confirmed_subscriber_still_gets_the_full_personal_message(platform, smtp_server, sms_gateway):
    async with platform() as p:
        phone, email = "+38651222333", "mojca@example.si"
        added = await p.notify.post(  # staff-entered consent: confirmed
            "/api/v1/subscribers",
            headers=ADMIN,
            json={"email": email, "phone": phone, "ks": ["primskovo"], "topics": ["general"]},
        )
        assert added.status_code in (200, 201), added.text
        made = await p.booking.post(
            "/api/v1/bookings",
            json=room_request(16, purpose="Vaje folklorne skupine", name="Mojca Novak", email=email, phone=phone),
        )
        assert made.status_code == 201, made.text
        await p.settled(phone, 1)
        await p.settled(email, 1)
        mails, sms = texts_to(smtp_server, sms_gateway, email, phone)
        assert len(mails) == 1 and len(sms) == 1
        assert "Mojca Novak" in mails[0] and "Vaje folklorne skupine" in mails[0]
        assert "Mojca Novak" in sms[0] or "Vaje folklorne skupine" in sms[0]
        assert "/k/" in sms[0]  # the short cancel link still there


async def test_an_anonymous_registration_tells_a_victim_only_fixed_words(platform, smtp_server, sms_gateway):
    async with platform() as p:
        thursday = weekday_ahead(3, weeks=2)
        event = await p.events.post(
            "/api/v1/events",
            headers=ADMIN,
            json={"ks": "primskovo", "title": "Delavnica: skupni prostor", "description": "Za vse.",
                  "starts_at": iso(thursday), "ends_at": iso(thursday + timedelta(hours=2)),
                  "venue": "Dom KS Primskovo", "capacity": 20},
        )  # fmt: skip
        assert event.status_code == 201, event.text
        assert (await p.events.post(f"/api/v1/events/{event.json()['id']}/publish", headers=ADMIN)).status_code == 200
        registered = await p.events.post(
            f"/api/v1/events/{event.json()['id']}/registrations",
            json={"name": PHISHING, "email": VICTIM_EMAIL, "phone": VICTIM_PHONE},
        )
        assert registered.status_code == 201, registered.text
        await p.settled(VICTIM_PHONE, 1)
        await p.settled(VICTIM_EMAIL, 1)
        mails, sms = texts_to(smtp_server, sms_gateway, VICTIM_EMAIL, VICTIM_PHONE)
        assert len(mails) == 1 and len(sms) == 1
        for text in (*mails, *sms):
            assert_no_words_of_the_requester(text)
        assert "Delavnica: skupni prostor" in mails[0] and "niste prijavili vi" in mails[0]
        assert "/k/" in sms[0]
