"""The room round trip, by message only: an event held in a KS room asks booking for the
room (`booking.room.requested`), waits in `pending-room`, and is published when booking
confirms it; a second event at the same time in the same room is refused by booking's
rules (`booking.booking.rejected` with `event_id`) and stays unpublished (`room-refused`).

Events on both databases (`database_url`), booking on SQLite, one real broker vhost."""

from __future__ import annotations

import asyncio
import json

import aio_pika
import httpx
import pytest
from booking_helpers import future_day, local
from support.settings import TEST_ADMIN_TOKEN, make_settings, wait_until

from services.booking.app import create_app as create_booking
from services.events.app import create_app as create_events

pytestmark = pytest.mark.integration
ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}


def event_body(title: str, day, start: str = "10:00", end: str = "12:00") -> dict:
    return {
        "ks": "primskovo",
        "title": title,
        "starts_at": local(day, start).isoformat(),
        "ends_at": local(day, end).isoformat(),
        "venue": "Dom KS Primskovo",
        "capacity": 15,
        "organiser": "Društvo upokojencev Primskovo",
        "room_id": "ks-primskovo",
    }


async def test_event_in_a_room_waits_for_booking_and_a_refused_one_is_not_published(
    tmp_path, amqp_url, database_url
):
    settings = make_settings(tmp_path, amqp_url, events_database_url=database_url)
    events, booking = create_events(settings), create_booking(settings)
    async with events.router.lifespan_context(events), booking.router.lifespan_context(booking):
        connection = await aio_pika.connect_robust(amqp_url)
        published: list[dict] = []
        try:
            channel = await connection.channel()
            queue = await channel.declare_queue(exclusive=True)
            await queue.bind("kranj", routing_key="events.event.published")

            async def keep(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                async with message.process():
                    published.append(json.loads(message.body))

            await queue.consume(keep)

            ev = httpx.AsyncClient(transport=httpx.ASGITransport(app=events), base_url="http://events.test")
            bk = httpx.AsyncClient(transport=httpx.ASGITransport(app=booking), base_url="http://booking.test")
            async with ev, bk:

                async def event(event_id: str) -> dict:
                    response = await ev.get(f"/api/v1/events/{event_id}", headers=ADMIN)
                    assert response.status_code == 200, response.text
                    return response.json()

                day = future_day(3)
                first = await ev.post("/api/v1/events", json=event_body("Delavnica: kaj potrebuje naša KS", day),
                                      headers=ADMIN)  # fmt: skip
                assert first.status_code == 201, first.text
                first_id = first.json()["id"]
                answer = await ev.post(f"/api/v1/events/{first_id}/publish", headers=ADMIN)
                assert answer.status_code == 200, answer.text
                assert answer.json()["status"] == "pending-room"

                # The room needs KS approval: booking answers `requested`; events remembers the booking.
                waiting = await wait_until(
                    lambda: _booking_of(event, first_id), timeout=30, message="booking.booking.requested back in events"
                )
                assert (await event(first_id))["status"] == "pending-room"
                page = await ev.get(f"/events/{first_id}")
                assert page.status_code == 200
                assert "V čakanju na potrditev prostora" in page.text
                assert not [m for m in published if m["data"]["event_id"] == first_id]

                approved = await bk.post(f"/api/v1/bookings/{waiting}/approve", headers=ADMIN)
                assert approved.status_code == 200, approved.text
                await wait_until(lambda: _status_is(event, first_id, "published"), timeout=30,
                                 message="the event published once the room is confirmed")  # fmt: skip
                await wait_until(lambda: [m for m in published if m["data"]["event_id"] == first_id], timeout=30,
                                 message="events.event.published on the bus")  # fmt: skip

                # The same room at the same time: booking's rules refuse, by message.
                second = await ev.post("/api/v1/events", json=event_body("Tečaj računalništva", day, "11:00", "13:00"),
                                       headers=ADMIN)  # fmt: skip
                second_id = second.json()["id"]
                answer = await ev.post(f"/api/v1/events/{second_id}/publish", headers=ADMIN)
                assert answer.json()["status"] == "pending-room"
                await wait_until(lambda: _status_is(event, second_id, "room-refused"), timeout=30,
                                 message="the second event refused its room")  # fmt: skip
                refused = await event(second_id)
                assert refused["room_note"] and "zaseden" in refused["room_note"]
                assert refused["published_at"] is None and refused["booking_id"] is None
                assert (await ev.get(f"/events/{second_id}")).status_code == 404
                await asyncio.sleep(1.0)
                assert not [m for m in published if m["data"]["event_id"] == second_id]
                assert len([m for m in published if m["data"]["event_id"] == first_id]) == 1

                # Booking holds exactly one booking of the slot, the first event's, confirmed.
                rows = await bk.get("/api/v1/bookings", params={"room_id": "ks-primskovo"}, headers=ADMIN)
                assert rows.status_code == 200, rows.text
                mine = [b for b in rows.json() if b["status"] in ("requested", "confirmed")]
                assert [b["id"] for b in mine] == [waiting] and mine[0]["status"] == "confirmed"
        finally:
            await connection.close()


async def _booking_of(event, event_id: str) -> str | None:
    return (await event(event_id)).get("booking_id")


async def _status_is(event, event_id: str, status: str) -> bool:
    return (await event(event_id))["status"] == status


async def test_an_event_gets_no_room_of_another_ks_and_a_mistyped_room_is_answered(tmp_path, amqp_url):
    """Security (issue 15): a primskovo event asking for Huje's room is refused by booking, by
    message, with the reason — never booked as primskovo's own request. A room code that does
    not exist is refused the same way (not dead-lettered, leaving the event pending for ever)."""
    settings = make_settings(tmp_path, amqp_url)
    events, booking = create_events(settings), create_booking(settings)
    async with events.router.lifespan_context(events), booking.router.lifespan_context(booking):
        ev = httpx.AsyncClient(transport=httpx.ASGITransport(app=events), base_url="http://events.test")
        bk = httpx.AsyncClient(transport=httpx.ASGITransport(app=booking), base_url="http://booking.test")
        async with ev, bk:

            async def event(event_id: str) -> dict:
                response = await ev.get(f"/api/v1/events/{event_id}", headers=ADMIN)
                assert response.status_code == 200, response.text
                return response.json()

            day = future_day(4)
            notes = {}
            for room_id in ("ks-huje", "ks-primskovoo"):
                body = event_body("Delavnica", day) | {"room_id": room_id}
                created = await ev.post("/api/v1/events", json=body, headers=ADMIN)
                assert created.status_code == 201, created.text
                event_id = created.json()["id"]
                published = await ev.post(f"/api/v1/events/{event_id}/publish", headers=ADMIN)
                assert published.json()["status"] == "pending-room"
                await wait_until(lambda event_id=event_id: _status_is(event, event_id, "room-refused"), timeout=30,
                                 message=f"booking refused {room_id}")  # fmt: skip
                notes[room_id] = (await event(event_id))["room_note"]
            assert "ni prostor KS dogodka" in notes["ks-huje"]
            assert "»ks-primskovoo« ne obstaja" in notes["ks-primskovoo"]
            held = await bk.get("/api/v1/bookings", params={"room_id": "ks-huje"}, headers=ADMIN)
            assert held.status_code == 200, held.text
            assert held.json() == []
