"""The room round trip when things change, by message only, with notify on a real SMTP
server and a real SMS gateway:

- an event waiting for its room is moved: booking releases the old slot by itself and books
  the new one; the event follows the new booking only (answers about the old time are stale);
- the event is cancelled: `booking.room.released` frees the room (booking.booking.cancelled);
- a refused room is told to the organiser by email and SMS, with the reason and that the
  event is not published.

Events on both databases (`database_url`); booking and notify on SQLite; one broker vhost."""

from __future__ import annotations

import httpx
import pytest
from booking_helpers import booking_body, future_day, local
from support.settings import TEST_ADMIN_TOKEN, make_settings, wait_until

from services.booking.app import create_app as create_booking
from services.events import privacy as events_privacy
from services.events.app import create_app as create_events
from services.notify.app import create_app as create_notify
from shared.db import Database
from shared.privacy import Person

pytestmark = pytest.mark.integration
ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
ORGANISER = "vodja@drustvo-primskovo.si"


def event_body(title: str, day, start: str = "10:00", end: str = "12:00") -> dict:
    return {
        "ks": "primskovo",
        "title": title,
        "description": "Pogovor o tem, **kaj potrebuje** naša KS.",
        "starts_at": local(day, start).isoformat(),
        "ends_at": local(day, end).isoformat(),
        "venue": "Dom KS Primskovo",
        "capacity": 15,
        "organiser": "Društvo upokojencev Primskovo",
        "organiser_email": ORGANISER,
        "organiser_phone": "041 555 111",
        "room_id": "ks-primskovo",
    }


async def test_moving_and_cancelling_an_event_moves_and_frees_its_room_and_a_refusal_reaches_the_organiser(
    tmp_path, amqp_url, database_url, smtp_server, sms_gateway
):
    settings = make_settings(
        tmp_path, amqp_url, events_database_url=database_url, **smtp_server.settings(), **sms_gateway.settings()
    )
    events, booking, notify = create_events(settings), create_booking(settings), create_notify(settings)
    async with (
        notify.router.lifespan_context(notify),
        events.router.lifespan_context(events),
        booking.router.lifespan_context(booking),
    ):
        ev = httpx.AsyncClient(transport=httpx.ASGITransport(app=events), base_url="http://events.test")
        bk = httpx.AsyncClient(transport=httpx.ASGITransport(app=booking), base_url="http://booking.test")
        async with ev, bk:

            async def event(event_id: str) -> dict:
                response = await ev.get(f"/api/v1/events/{event_id}", headers=ADMIN)
                assert response.status_code == 200, response.text
                return response.json()

            async def bookings_of(event_id: str) -> list[dict]:
                rows = await bk.get("/api/v1/bookings", params={"room_id": "ks-primskovo"}, headers=ADMIN)
                assert rows.status_code == 200, rows.text
                return [b for b in rows.json() if b.get("event_id") == event_id]

            day = future_day(3)
            created = await ev.post("/api/v1/events", json=event_body("Delavnica: prostor za vse", day), headers=ADMIN)
            assert created.status_code == 201, created.text
            assert (
                created.json()["organiser_email"] == ORGANISER and created.json()["organiser_phone"] == "+38641555111"
            )
            event_id = created.json()["id"]
            public = await ev.get(f"/api/v1/events/{event_id}")  # drafts need staff; the contact never shows publicly
            assert public.status_code == 401
            assert (await ev.post(f"/api/v1/events/{event_id}/publish", headers=ADMIN)).json()[
                "status"
            ] == "pending-room"
            first_booking = await wait_until(
                lambda: _field(event, event_id, "booking_id"), timeout=30, message="booking.booking.requested back"
            )

            # Move the event while it waits: the old slot is released, the new one requested.
            moved = await ev.patch(
                f"/api/v1/events/{event_id}",
                json={"starts_at": local(day, "16:00").isoformat(), "ends_at": local(day, "18:00").isoformat()},
                headers=ADMIN,
            )
            assert moved.status_code == 200, moved.text
            assert moved.json()["status"] == "pending-room"

            async def moved_in_booking() -> list[dict] | None:
                rows = await bookings_of(event_id)
                by_status = {b["id"]: b["status"] for b in rows}
                holding = [b for b in rows if b["status"] in ("requested", "confirmed")]
                if by_status.get(first_booking) == "cancelled" and len(holding) == 1:
                    return holding
                return None

            [holding] = await wait_until(moved_in_booking, timeout=30, message="old slot released, new one booked")
            assert holding["starts_at"].startswith(local(day, "16:00").isoformat()[:16])
            second_booking = await wait_until(
                lambda: _field(event, event_id, "booking_id", not_=first_booking),
                timeout=30,
                message="events follows the new booking",
            )
            assert second_booking == holding["id"]
            assert (await event(event_id))["status"] == "pending-room"  # the old booking's cancellation is stale

            # Cancel the event: the room is released by message.
            cancelled = await ev.post(f"/api/v1/events/{event_id}/cancel", json={"reason": "Bolezen."}, headers=ADMIN)
            assert cancelled.json()["status"] == "cancelled"

            async def all_released() -> bool:
                rows = await bookings_of(event_id)
                return bool(rows) and all(b["status"] == "cancelled" for b in rows)

            await wait_until(all_released, timeout=30, message="booking.room.released frees the room")

            # A refused room: the slot is taken by a resident's confirmed booking first.
            taken = await bk.post("/api/v1/bookings", json=booking_body(day, "10:00", "12:00"))
            assert taken.status_code == 201, taken.text
            assert (await bk.post(f"/api/v1/bookings/{taken.json()['id']}/approve", headers=ADMIN)).status_code == 200
            refused = await ev.post("/api/v1/events", json=event_body("Tečaj računalništva", day), headers=ADMIN)
            refused_id = refused.json()["id"]
            await ev.post(f"/api/v1/events/{refused_id}/publish", headers=ADMIN)
            await wait_until(lambda: _field(event, refused_id, "status", equals="room-refused"), timeout=30,
                             message="the event refused its room")  # fmt: skip

            def organiser_mail() -> list[str]:
                return [
                    m.part("text/plain") or ""
                    for m in smtp_server.messages
                    if ORGANISER in m.rcpt_tos and "ni objavljen" in m.subject
                ]

            [text] = await wait_until(organiser_mail, timeout=30, message="the organiser told by email")
            assert "Tečaj računalništva" in text and "dogodek ni objavljen" in text and "zaseden" in text
            sms = await wait_until(
                lambda: [r for r in sms_gateway.accepted if r.json.get("to") == "+38641555111"
                         and "ni objavljen" in r.json.get("text", "")],
                timeout=30,
                message="the organiser told by SMS",
            )  # fmt: skip
            assert sms

            # Erasure (`kranj subscriber erase`) removes the organiser's contact from the events too.
            database = Database(database_url)
            try:
                organiser = Person.of(email=ORGANISER.upper(), phone="041 555 111")
                counts = await events_privacy.erase(database, organiser)
            finally:
                await database.dispose()
            assert counts["organisers"] == 4  # two events, email and phone each
            for gone in (event_id, refused_id):
                kept = await event(gone)
                assert kept["organiser_email"] is None and kept["organiser_phone"] is None
                assert kept["organiser"] == "Društvo upokojencev Primskovo"


async def _field(event, event_id: str, name: str, *, equals=None, not_=None):
    value = (await event(event_id)).get(name)
    if equals is not None:
        return value == equals
    if value is None or value == not_:
        return None
    return value
