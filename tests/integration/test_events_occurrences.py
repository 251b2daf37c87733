"""One date of a recurring event moved or cancelled, on SQLite and PostgreSQL: the staff API
changes only that date, every registrant gets one `events.registration.event-changed` with
the old and the new time (rendered by notify into a Slovenian message that says the other
dates stay), followers get `events.event.updated` with `moved`, the page lists the new date
and the calendar carries a RECURRENCE-ID override. Bad requests are 409/422 and change
nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from icalendar import Calendar
from sqlmodel import select
from support.settings import TEST_ADMIN_TOKEN, make_settings

from services.events import domain
from services.events.app import create_app
from services.notify.render import Renderer
from shared.contracts import parse_data, parse_envelope
from shared.contracts.events import EVENT_UPDATED, REGISTRATION_MESSAGE_TYPES
from shared.db import Database
from shared.i18n import format_span
from shared.models import OutboxMessage

pytestmark = pytest.mark.integration
ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
TZ = domain.TZ


def _next_tuesday() -> datetime:
    day = datetime.now(TZ).date() + timedelta(days=7)
    while day.weekday() != 1:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, 18, 0, tzinfo=TZ)


async def _outbox(database_url: str, routing_key: str) -> list[OutboxMessage]:
    db = Database(database_url)
    try:
        async with db.session() as session:
            rows = await session.exec(select(OutboxMessage).where(OutboxMessage.routing_key == routing_key))
            return list(rows.all())
    finally:
        await db.dispose()


async def test_move_and_cancel_one_occurrence_of_a_series(tmp_path, database_url):
    # the relay is never connected (an unreachable broker): the outbox rows stay to be read
    settings = make_settings(tmp_path, "amqp://guest:guest@127.0.0.1:9/", events_database_url=database_url)
    app = create_app(settings, start_bus=False)
    first = _next_tuesday()
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://events.test")
        async with client:
            created = await client.post(
                "/api/v1/events",
                json={
                    "ks": "primskovo",
                    "title": "Pevske vaje",
                    "starts_at": first.isoformat(),
                    "ends_at": (first + timedelta(hours=2)).isoformat(),
                    "venue": "Dom KS Primskovo",
                    "rrule": "FREQ=WEEKLY;COUNT=6",
                },
                headers=ADMIN,
            )
            assert created.status_code == 201, created.text
            event_id = created.json()["id"]
            # a series cannot hold a KS room by message (one slot per request): a clear 422, and a
            # PATCH that would make a room's event recurring is refused too
            in_a_room = {**created.json(), "room_id": "ks-primskovo"}
            body = {k: in_a_room[k] for k in ("ks", "title", "starts_at", "ends_at", "venue", "rrule", "room_id")}
            refused = await client.post("/api/v1/events", json=body, headers=ADMIN)
            assert refused.status_code == 422 and "rezervirajte serijo terminov" in refused.json()["detail"], (body, refused.text)
            single = await client.post("/api/v1/events", json={**body, "rrule": None}, headers=ADMIN)
            assert single.status_code == 201, single.text
            made_series = await client.patch(
                f"/api/v1/events/{single.json()['id']}", json={"rrule": "FREQ=WEEKLY;COUNT=3"}, headers=ADMIN
            )
            assert made_series.status_code == 409 and "rezervirajte serijo terminov" in made_series.json()["detail"]
            assert (await client.post(f"/api/v1/events/{event_id}/publish", headers=ADMIN)).status_code == 200
            registered = await client.post(
                f"/api/v1/events/{event_id}/registrations", json={"name": "Marta Kos", "email": "marta@example.si"}
            )
            assert registered.status_code == 201, registered.text

            third = first + timedelta(weeks=2)
            to = datetime(third.year, third.month, third.day, 17, 0, tzinfo=TZ) + timedelta(days=2)  # Thursday 17.00
            moved = await client.post(
                f"/api/v1/events/{event_id}/occurrences/move",
                json={
                    "occurrence": third.isoformat(),
                    "starts_at": to.isoformat(),
                    "ends_at": (to + timedelta(hours=2)).isoformat(),
                },
                headers=ADMIN,
            )
            assert moved.status_code == 200, moved.text
            [override] = moved.json()["moved"]
            assert datetime.fromisoformat(override["original"]) == third
            assert datetime.fromisoformat(override["starts_at"]) == to
            assert datetime.fromisoformat(override["ends_at"]) == to + timedelta(hours=2)

            fifth = first + timedelta(weeks=4)
            dropped = await client.post(
                f"/api/v1/events/{event_id}/occurrences/cancel",
                json={"occurrence": fifth.isoformat(), "reason": "Praznik."},
                headers=ADMIN,
            )
            assert dropped.status_code == 200, dropped.text

            # Bad requests change nothing: a date the series does not have, a date already cancelled.
            for body in (
                {"occurrence": (first + timedelta(days=1)).isoformat(), "reason": ""},
                {"occurrence": fifth.isoformat(), "reason": ""},
            ):
                wrong = await client.post(f"/api/v1/events/{event_id}/occurrences/cancel", json=body, headers=ADMIN)
                assert wrong.status_code == 409, wrong.text
                assert "nima termina" in wrong.json()["detail"]
            backwards = await client.post(
                f"/api/v1/events/{event_id}/occurrences/move",
                json={"occurrence": third.isoformat(), "starts_at": to.isoformat(), "ends_at": to.isoformat()},
                headers=ADMIN,
            )
            assert backwards.status_code == 422
            unauthenticated = await client.post(
                f"/api/v1/events/{event_id}/occurrences/cancel", json={"occurrence": first.isoformat()}
            )
            assert unauthenticated.status_code == 401

            # The page lists Thursday 17.00 instead of the third Tuesday, and not the fifth.
            page = await client.get(f"/events/{event_id}")
            assert page.status_code == 200
            for moment in [first + timedelta(weeks=w) for w in (0, 1, 3, 5)] + [to]:
                assert format_span(moment, moment + timedelta(hours=2)) in page.text
            for gone in (third, fifth):
                assert format_span(gone, gone + timedelta(hours=2)) not in page.text
            ics = (await client.get(f"/events/{event_id}/event.ics")).content
            cal = Calendar.from_ical(ics)
            overrides = [v for v in cal.walk("VEVENT") if "RECURRENCE-ID" in v]
            assert len(overrides) == 1
            assert overrides[0].decoded("recurrence-id") == third
            assert overrides[0].decoded("dtstart") == to
            [series] = [v for v in cal.walk("VEVENT") if "RRULE" in v]
            exdates = series["EXDATE"] if isinstance(series["EXDATE"], list) else [series["EXDATE"]]
            assert fifth in [d.dt for prop in exdates for d in prop.dts]

    # The registrant is told twice: one date moved, one date cancelled.
    rows = await _outbox(database_url, REGISTRATION_MESSAGE_TYPES["event-changed"].routing_key)
    notices = [parse_data(parse_envelope(r.body.encode()), REGISTRATION_MESSAGE_TYPES["event-changed"]) for r in rows]
    assert sorted(n.changes[0] for n in notices) == ["occurrence-cancelled", "occurrence-moved"]
    move = next(n for n in notices if n.changes == ["occurrence-moved"])
    assert move.previous_starts_at == third.astimezone(UTC) and move.starts_at == to.astimezone(UTC)
    assert move.registrant.email == "marta@example.si"
    title, body = Renderer(settings).personal("registration", "sl", r=move, kind="event-changed")
    assert title == "Termin prestavljen: Pevske vaje"
    assert "Ostali termini ostanejo" in body and "17.00–19.00" in body and "18.00–20.00" in body
    cancel = next(n for n in notices if n.changes == ["occurrence-cancelled"])
    title, body = Renderer(settings).personal("registration", "sl", r=cancel, kind="event-changed")
    assert title.startswith("Termin odpade: Pevske vaje") and "Praznik." in body

    updates = [
        parse_data(parse_envelope(r.body.encode()), EVENT_UPDATED)
        for r in await _outbox(database_url, "events.event.updated")
    ]
    assert [u.changes for u in updates] == [["moved"], ["exdates"]]
    assert updates[-1].moved[0].starts_at == to.astimezone(UTC)
    assert fifth.astimezone(UTC) in updates[-1].exdates
