"""Finding 1 (blocker): room takeover across KS.

The attack as it was done: a primskovo staff token (and an organiser token of primskovo)
imports `ks-huje;primskovo;…` into `POST /api/v1/rooms/import`, which used to move Huje's
room to Primskovo, open its bookings with names, emails and phones to Primskovo, and lock
Huje's own staff out. Every write that changes an existing record must check the KS the
record belongs to now as well as the one it is moved to; the refused row is reported by
line number, the good rows still load. The same check guards room rules, closures and
the decisions on bookings, and the events service's staff writes."""

from __future__ import annotations

import pytest

from security.helpers import ADMIN, at, day_ahead

pytestmark = pytest.mark.integration

HUJE_ROOM = "ks-huje"
TAKEOVER_CSV = (
    "id;ks;name;address;capacity\r\n"
    "ks-huje;primskovo;Prevzeta dvorana;Jezerska cesta 41, 4000 Kranj;30\r\n"
    "ks-primskovo;primskovo;Dom KS Primskovo (prenovljen);Jezerska cesta 41, 4000 Kranj;55\r\n"
    "primskovo-mala;primskovo;Mala sejna soba;Jezerska cesta 41, 4000 Kranj;12\r\n"
)


async def _huje_booking(client) -> str:
    """A confirmed booking in Huje's room with a resident's contact data (booked by staff)."""
    day = day_ahead(12, weekday=3)
    body = {
        "room_id": HUJE_ROOM,
        "starts_at": at(day, "18:00").isoformat(),
        "ends_at": at(day, "20:00").isoformat(),
        "purpose": "Vaje folklorne skupine",
        "name": "Janez Hujevec",
        "email": "janez.hujevec@example.si",
        "phone": "041 222 333",
        "attendees": 15,
    }
    made = await client.post("/api/v1/bookings", json=body, headers=ADMIN)
    assert made.status_code == 201, made.text
    assert made.json()["status"] == "confirmed"
    return str(made.json()["id"])


@pytest.mark.parametrize("role", ["ks-staff", "organiser"])
async def test_primskovo_token_cannot_take_over_huje_room_by_import(services, role):
    async with services("booking") as booking:
        client = booking.client
        booking_id = await _huje_booking(client)
        attacker = await booking.staff(role, ["primskovo"], label=f"{role} Primskovo")
        huje_staff = await booking.staff("ks-staff", ["huje"], label="tajnica KS Huje")

        response = await client.post(
            "/api/v1/rooms/import",
            content=TAKEOVER_CSV.encode("utf-8"),
            headers={**attacker, "Content-Type": "text/csv"},
        )
        if role == "organiser":
            # finding 5: organisers have no room rights at all (shared/permissions.py `rooms.edit`)
            assert response.status_code == 403, response.text
            assert "rooms.edit" in response.json()["detail"]
            assert (await client.get(f"/api/v1/rooms/{HUJE_ROOM}")).json()["ks"] == "huje"
            assert (await client.get("/api/v1/rooms/ks-primskovo")).json()["name"] != "Dom KS Primskovo (prenovljen)"
            assert (await client.get("/api/v1/rooms/primskovo-mala")).status_code == 404
            return
        assert response.status_code == 200, response.text
        result = response.json()
        # the foreign room's row is refused, with its line number and a Slovenian reason
        assert len(result["errors"]) == 1, result
        assert result["errors"][0].startswith("vrstica 2: ")
        assert "KS huje" in result["errors"][0] and "nimate pravic" in result["errors"][0]
        # the legitimate rows of the same file still load
        assert (result["created"], result["updated"]) == (1, 1)

        room = (await client.get(f"/api/v1/rooms/{HUJE_ROOM}")).json()
        assert room["ks"] == "huje" and room["name"] != "Prevzeta dvorana"
        assert (await client.get("/api/v1/rooms/ks-primskovo")).json()["name"] == "Dom KS Primskovo (prenovljen)"
        assert (await client.get("/api/v1/rooms/primskovo-mala")).json()["ks"] == "primskovo"

        # Primskovo still cannot read Huje's bookings or their contact data
        listed = await client.get("/api/v1/bookings", params={"room_id": HUJE_ROOM}, headers=attacker)
        assert listed.status_code == 200 and listed.json() == []
        one = (await client.get(f"/api/v1/bookings/{booking_id}", headers=attacker)).json()
        assert one["email"] is None and one["phone"] is None and one["name"] is None

        # ... nor change anything of Huje's room or its bookings
        assert (
            await client.patch(f"/api/v1/rooms/{HUJE_ROOM}", json={"capacity": 5}, headers=attacker)
        ).status_code == 403
        closure = {
            "starts_at": at(day_ahead(20), "08:00").isoformat(),
            "ends_at": at(day_ahead(20), "22:00").isoformat(),
            "reason": "prevzem",
        }
        closed = await client.post(f"/api/v1/rooms/{HUJE_ROOM}/closures", json=closure, headers=attacker)
        assert closed.status_code == 403
        assert "huje" in closed.json()["detail"] and " / " in closed.json()["detail"]
        cancelled = await client.post(f"/api/v1/bookings/{booking_id}/cancel", json={}, headers=attacker)
        assert cancelled.status_code == 403

        # Huje's own staff are not locked out: they see the booking with its contact data
        # and keep managing their room
        theirs = await client.get("/api/v1/bookings", params={"room_id": HUJE_ROOM}, headers=huje_staff)
        assert theirs.status_code == 200
        assert [(b["id"], b["email"], b["status"]) for b in theirs.json()] == [
            (booking_id, "janez.hujevec@example.si", "confirmed")
        ]
        patched = await client.patch(f"/api/v1/rooms/{HUJE_ROOM}", json={"capacity": 32}, headers=huje_staff)
        assert patched.status_code == 200 and patched.json()["ks"] == "huje"


async def test_huje_staff_import_of_their_own_room_still_works_and_admin_may_move_a_room(services):
    async with services("booking") as booking:
        client = booking.client
        huje_staff = await booking.staff("ks-staff", ["huje"])
        semicolons = "id;ks;name;address;capacity\nks-huje;huje;Dom KS Huje;Kebetova ulica 11, 4000 Kranj;35\n"
        response = await client.post(
            "/api/v1/rooms/import", content=semicolons.encode(), headers={**huje_staff, "Content-Type": "text/csv"}
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"created": 0, "updated": 1, "errors": []}
        assert (await client.get(f"/api/v1/rooms/{HUJE_ROOM}")).json()["capacity"] == 35

        # moving a room between KS needs rights for both: staff of both KS (or admin) may
        both = await booking.staff("ks-staff", ["huje", "primskovo"])
        move = "id;ks;name;address;capacity\nks-huje;primskovo;Dom KS Huje;Kebetova ulica 11, 4000 Kranj;35\n"
        moved = await client.post(
            "/api/v1/rooms/import", content=move.encode(), headers={**both, "Content-Type": "text/csv"}
        )
        assert moved.json() == {"created": 0, "updated": 1, "errors": []}
        assert (await client.get(f"/api/v1/rooms/{HUJE_ROOM}")).json()["ks"] == "primskovo"


async def test_staff_of_another_ks_cannot_change_an_event(services):
    """The events service: publish, edit (PATCH and PUT, also naming their own KS) and cancel
    check the KS the event belongs to now."""
    async with services("events") as events:
        client = events.client
        day = day_ahead(15)
        body = {
            "ks": "huje",
            "title": "Krajevni praznik",
            "starts_at": at(day, "17:00").isoformat(),
            "ends_at": at(day, "19:00").isoformat(),
            "venue": "Dom KS Huje",
        }
        created = await client.post("/api/v1/events", json=body, headers=ADMIN)
        assert created.status_code == 201, created.text
        event_id = created.json()["id"]
        for role in ("ks-staff", "organiser"):
            attacker = await events.staff(role, ["primskovo"])
            put = await client.put(
                f"/api/v1/events/{event_id}", json={**body, "ks": "primskovo", "title": "Naš"}, headers=attacker
            )
            assert put.status_code == 403, put.text
            patch = await client.patch(f"/api/v1/events/{event_id}", json={"title": "Naš"}, headers=attacker)
            assert patch.status_code == 403
            assert (await client.post(f"/api/v1/events/{event_id}/publish", headers=attacker)).status_code == 403
            assert (
                await client.post(f"/api/v1/events/{event_id}/cancel", json={}, headers=attacker)
            ).status_code == 403
        event = (await client.get(f"/api/v1/events/{event_id}", headers=ADMIN)).json()
        assert (event["ks"], event["title"], event["status"]) == ("huje", "Krajevni praznik", "draft")
