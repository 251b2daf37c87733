"""Finding 3: one anonymous client blocked a room for months (ten series requests in under a
minute held about 212 four-hour slots of Dom KS Primskovo).

What an unconfirmed request may hold is limited:
- a series (recurring request) from a resident without a staff token is refused (403), with
  a Slovenian detail saying how to do it (the KS's staff book a series); nothing is held;
- pending requests are capped per contact: `booking_pending_per_contact` (3) per email
  address or phone number; a decided (or expired) one frees its place;
- a pending request expires after at most `booking_pending_max_hours` (7 days), even where
  the room's own `request_ttl_hours` is longer (up to 30 days), and never holds past its
  start: availability ignores the expired hold at once and the booking service's periodic
  expiry job marks it expired."""

from __future__ import annotations

from datetime import timedelta

import pytest
from support.settings import wait_until

from security.helpers import ADMIN, at, day_ahead
from shared import clock

pytestmark = pytest.mark.integration

ROOM = "ks-primskovo"
THURSDAY = 3


def request(day, start="18:00", end="20:00", **overrides):
    body = {
        "room_id": ROOM,
        "starts_at": at(day, start).isoformat(),
        "ends_at": at(day, end).isoformat(),
        "purpose": "Zasedba",
        "name": "Neznanec",
        "email": "neznanec@example.si",
        "phone": "040 999 888",
        "attendees": 5,
    }
    body.update(overrides)
    return body


async def taken(client, day) -> list[str]:
    window = {"from": at(day, "00:00").isoformat(), "to": at(day, "23:59").isoformat()}
    response = await client.get(f"/api/v1/rooms/{ROOM}/availability", params=window)
    assert response.status_code == 200, response.text
    return [t["status"] for t in response.json()["taken"]]


async def test_an_anonymous_series_is_refused_and_holds_nothing(services):
    async with services("booking") as booking:
        client = booking.client
        first = day_ahead(14, THURSDAY)
        for n in range(10):  # the attack: ten series requests in a row
            series = request(first, recurrence={"weekly_until": (first + timedelta(weeks=20)).isoformat()})
            series["email"] = f"neznanec{n}@example.si"
            refused = await client.post("/api/v1/bookings", json=series)
            assert refused.status_code == 403, refused.text
            body = refused.json()
            assert body["rules"] == ["series-needs-staff"]
            assert "krajevno skupnost" in body["detail"] and "osebje KS" in body["detail"]
            assert " / " in body["detail"] and "ask your KS" in body["detail"]
        for week in range(20):
            assert await taken(client, first + timedelta(weeks=week)) == []
        listed = await client.get("/api/v1/bookings", params={"room_id": ROOM}, headers=ADMIN)
        assert listed.json() == []

        # staff of the room's KS book a series for a resident (confirmed at once)
        staff = await booking.staff("ks-staff", ["primskovo"])
        weekly = request(first, recurrence={"rrule": "FREQ=WEEKLY;COUNT=4"}, name="Pevski zbor Primskovo")
        made = await client.post("/api/v1/bookings", json=weekly, headers=staff)
        assert made.status_code == 201, made.text
        assert [b["status"] for b in made.json()["bookings"]] == ["confirmed"] * 4
        # staff of another KS ask like any resident: refused
        other = await booking.staff("ks-staff", ["huje"])
        again = request(first + timedelta(weeks=8), recurrence={"rrule": "FREQ=WEEKLY;COUNT=2"})
        assert (await client.post("/api/v1/bookings", json=again, headers=other)).status_code == 403


async def test_pending_requests_are_capped_per_email_and_per_phone(services):
    async with services("booking") as booking:
        client = booking.client
        limit = booking.settings.booking_pending_per_contact
        assert limit == 3
        days = [day_ahead(10 + 7 * n, THURSDAY) for n in range(limit + 3)]
        ids = []
        for day in days[:limit]:
            made = await client.post("/api/v1/bookings", json=request(day))
            assert made.status_code == 201, made.text
            assert made.json()["status"] == "requested"
            ids.append(made.json()["id"])

        over = await client.post("/api/v1/bookings", json=request(days[limit]))
        assert over.status_code == 409, over.text
        assert over.json()["rules"] == ["pending-limit"]
        assert over.json()["detail"].startswith("Na odločitev že čakajo 3 vaše prošnje")
        # the same person with another email (same phone), or another phone (same email, other case)
        same_phone = request(days[limit], email="drug.naslov@example.si")
        assert (await client.post("/api/v1/bookings", json=same_phone)).json()["rules"] == ["pending-limit"]
        same_email = request(days[limit], email="NEZNANEC@example.si", phone="031 111 222")
        assert (await client.post("/api/v1/bookings", json=same_email)).json()["rules"] == ["pending-limit"]
        assert await taken(client, days[limit]) == []
        # someone else is not affected
        neighbour = request(days[limit], name="Soseda", email="soseda@example.si", phone="041 777 666")
        assert (await client.post("/api/v1/bookings", json=neighbour)).status_code == 201

        # a decision frees a place
        rejected = await client.post(f"/api/v1/bookings/{ids[0]}/reject", json={"reason": "Zasedeno."}, headers=ADMIN)
        assert rejected.status_code == 200
        assert (await client.post("/api/v1/bookings", json=request(days[limit + 1]))).status_code == 201
        assert (await client.post("/api/v1/bookings", json=request(days[limit + 2]))).status_code == 409


async def test_a_pending_request_stops_holding_its_slot_after_seven_days(services):
    async with services("booking", expiry_interval=0.2) as booking:
        client = booking.client
        # the room's own time to decide is the longest staff may set (30 days)
        ttl = await client.patch(f"/api/v1/rooms/{ROOM}", json={"request_ttl_hours": 24 * 30}, headers=ADMIN)
        assert ttl.status_code == 200, ttl.text
        day = day_ahead(25, THURSDAY)
        made = await client.post("/api/v1/bookings", json=request(day))
        assert made.status_code == 201, made.text
        booking_id = made.json()["id"]
        max_hours = booking.settings.booking_pending_max_hours
        assert max_hours == 7 * 24
        expires = made.json()["expires_at"]
        assert expires is not None
        assert await taken(client, day) == ["requested"]

        with clock.frozen(clock.now() + timedelta(hours=max_hours, minutes=1)):
            # availability ignores the lapsed hold at once (before the job runs) ...
            assert await taken(client, day) == []

            # ... and the periodic expiry job marks it expired
            async def status() -> str | None:
                response = await client.get(f"/api/v1/bookings/{booking_id}", headers=ADMIN)
                return response.json()["status"] if response.json()["status"] == "expired" else None

            await wait_until(status, timeout=15, message="the expiry job expires the 7-day-old request")
            # it no longer counts against the contact, and the slot can be requested again
            again = await client.post("/api/v1/bookings", json=request(day, name="Drugi", email="drugi@example.si"))
            assert again.status_code == 201, again.text
            approve = await client.post(f"/api/v1/bookings/{booking_id}/approve", headers=ADMIN)
            assert approve.status_code == 409
