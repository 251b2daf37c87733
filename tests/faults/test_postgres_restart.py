"""PostgreSQL restarted while events and booking are taking requests: requests fail
cleanly while it is down (503 with a clear message and Retry-After, never a 500),
nothing half-written remains, and everything works again when it is back."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from datetime import UTC, datetime, time, timedelta

import asyncpg
import httpx
from support.settings import TEST_ADMIN_TOKEN, wait_until

from services.booking.domain import TZ, holiday_name

ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}


def _booking(i: int) -> dict[str, object]:
    """A resident's request for KS Primskovo's room on a Tuesday evening of its own."""
    day = datetime.now(TZ).date() + timedelta(days=14 + 7 * i)
    while day.weekday() != 1 or holiday_name(day):
        day += timedelta(days=1)
    start = datetime.combine(day, time(18, 0), TZ)
    return {
        "room_id": "ks-primskovo",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=2)).isoformat(),
        "purpose": "Vaje pevskega zbora",
        "category": "culture",
        "group_kind": "association",
        "name": "Mojca Novak",
        "email": f"zbor{i}@example.si",
        "attendees": 12,
    }


def _event(i: int) -> dict[str, str]:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10, hours=i)
    return {
        "ks": "primskovo",
        "title": f"Delavnica {i}",
        "description": "Vabljeni vsi krajani.",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=1)).isoformat(),
        "venue": "Dom KS Primskovo",
    }


async def test_postgres_restart_gives_503_then_works_and_leaves_nothing_half_written(
    kranj_up, fault_amqp_url, fault_postgres
):
    events_url, booking_url = fault_postgres.new_database(), fault_postgres.new_database()
    system = kranj_up(
        {
            "KRANJ_AMQP_URL": fault_amqp_url,
            "KRANJ_EVENTS_DATABASE_URL": events_url,
            "KRANJ_BOOKING_DATABASE_URL": booking_url,
            # Staff accounts and tokens on the same server: the staff calls check them first.
            "KRANJ_ACCOUNTS_DATABASE_URL": fault_postgres.new_database(),
            "KRANJ_RATE_LIMIT_ENABLED": "false",  # every request here comes from 127.0.0.1
        }
    )
    system.start()
    await system.wait_ready()
    events, booking = system.urls["events"], system.urls["booking"]

    statuses: Counter[int] = Counter()
    published: list[str] = []
    booked: list[str] = []
    unavailable: list[httpx.Response] = []
    stop = asyncio.Event()

    async def take_requests() -> None:
        """Staff keep creating and publishing events; residents keep looking at rooms."""
        i = 0
        async with httpx.AsyncClient(timeout=20) as client:
            while not stop.is_set():
                i += 1
                try:
                    created = await client.post(f"{events}/api/v1/events", json=_event(i), headers=ADMIN)
                    statuses[created.status_code] += 1
                    if created.status_code == 201:
                        event_id = created.json()["id"]
                        answer = await client.post(f"{events}/api/v1/events/{event_id}/publish", headers=ADMIN)
                        statuses[answer.status_code] += 1
                        if answer.status_code == 200:
                            published.append(event_id)
                        elif answer.status_code == 503:
                            unavailable.append(answer)
                    elif created.status_code == 503:
                        unavailable.append(created)
                    rooms = await client.get(f"{booking}/api/v1/rooms", params={"ks": "primskovo"})
                    statuses[rooms.status_code] += 1
                    requested = await client.post(f"{booking}/api/v1/bookings", json=_booking(i))
                    statuses[requested.status_code] += 1
                    if requested.status_code == 201:
                        booked.append(requested.json()["id"])

                    for answer in (rooms, requested):
                        if answer.status_code == 503:
                            unavailable.append(answer)
                except httpx.HTTPError as exc:  # the services must answer, even while the database is down
                    statuses[type(exc).__name__] += 1  # type: ignore[index]
                await asyncio.sleep(0.05)

    worker = asyncio.create_task(take_requests())
    try:
        await wait_until(lambda: len(published) >= 3, timeout=30, message="events published before the restart")
        fault_postgres.stop("fast")
        try:
            ports = {system.ports["events"], system.ports["booking"]}
            await wait_until(
                lambda: {r.request.url.port for r in unavailable} >= ports and len(unavailable) >= 4,
                timeout=30,
                message="503 answers from events and booking while PostgreSQL is down",
            )
            async with httpx.AsyncClient(timeout=10) as client:
                ready = await client.get(f"{events}/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["database"].startswith("error")
        finally:
            fault_postgres.start()
        before = len(published)
        await wait_until(lambda: len(published) >= before + 3, timeout=60, message="events published after the restart")
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(worker, timeout=30)

    answer = unavailable[0]
    assert answer.headers["retry-after"].isdigit()
    assert "podatkovna zbirka" in answer.json()["detail"] and "database" in answer.json()["detail"]
    # Only success or a clean 503: no 500, no dropped connection.
    assert set(statuses) <= {200, 201, 503}, statuses
    await system.wait_ready()

    # Nothing half-written: every published event has exactly one outbox row, and every
    # outbox row is published once the broker relay caught up.
    conn = await asyncpg.connect(events_url)
    try:
        rows = await conn.fetch("SELECT id, status FROM events")
        outbox = await conn.fetch(
            "SELECT routing_key, body, sent_at FROM outbox WHERE routing_key = 'events.event.published'"
        )
        for _ in range(100):
            if all(r["sent_at"] is not None for r in outbox):
                break
            await asyncio.sleep(0.2)
            outbox = await conn.fetch(
                "SELECT routing_key, body, sent_at FROM outbox WHERE routing_key = 'events.event.published'"
            )
    finally:
        await conn.close()
    by_status = Counter(r["status"] for r in rows)
    assert {r["id"] for r in rows if r["status"] == "published"} >= set(published)
    assert len(outbox) == by_status["published"], (len(outbox), by_status)
    assert all(r["sent_at"] is not None for r in outbox)

    conn = await asyncpg.connect(booking_url)
    try:
        bookings = {r["id"] for r in await conn.fetch("SELECT id FROM bookings")}
        booking_messages = await conn.fetchval("SELECT count(*) FROM outbox WHERE routing_key LIKE 'booking.booking.%'")
    finally:
        await conn.close()
    assert bookings == set(booked)  # every 201 is there, nothing else is
    assert booking_messages == len(bookings)  # one message per request: none lost, none without its row
    print(
        f"\nrequests: {dict(statuses)}; events {dict(by_status)} with {len(outbox)} outbox rows; "
        f"{len(bookings)} bookings with {booking_messages} outbox rows"
    )
