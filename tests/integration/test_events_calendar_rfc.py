"""iCalendar that calendar apps accept and keep current, through the real HTTP API on SQLite
and PostgreSQL, read back with the `icalendar` parser:

- a KS without events still gets a VCALENDAR with a component (the VTIMEZONE of
  Europe/Ljubljana), as RFC 5545 3.6 requires;
- every change of time, place or title, a moved or cancelled date of a series and cancelling
  the event raise SEQUENCE (also on the RECURRENCE-ID override); a change of the description
  alone does not;
- a title with a line break is refused with 422, and one already stored never breaks the
  event's .ics, the KS calendar or the page;
- the event page lists the first 12 dates of a series, says how many more (Slovenian plural
  forms) and links to all of them (`?vsi=1`).

No literal dates: every time is relative to `shared.clock.now()`."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import pytest
from icalendar import Calendar
from support.settings import TEST_ADMIN_TOKEN, make_settings
from support.times import local_day

from services.events import domain
from services.events.app import create_app
from services.events.models import Event
from shared.i18n import format_span

pytestmark = pytest.mark.integration
ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
TZ = domain.TZ
NOWHERE = "amqp://guest:guest@127.0.0.1:9/"  # the relay never connects; nothing here needs the bus



@pytest.fixture
async def events(tmp_path, database_url):
    app = create_app(make_settings(tmp_path, NOWHERE, events_database_url=database_url), start_bus=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://events.test") as client:
            yield client, app


async def _publish(client: httpx.AsyncClient, starts: datetime, **extra) -> str:
    created = await client.post(
        "/api/v1/events",
        json={
            "ks": "kokrica",
            "title": "Pevske vaje",
            "starts_at": starts.isoformat(),
            "ends_at": (starts + timedelta(hours=2)).isoformat(),
            "venue": "Dom KS Kokrica",
            **extra,
        },
        headers=ADMIN,
    )
    assert created.status_code == 201, created.text
    event_id = created.json()["id"]
    assert (await client.post(f"/api/v1/events/{event_id}/publish", headers=ADMIN)).status_code == 200
    return event_id


async def _calendar(client: httpx.AsyncClient, url: str) -> Calendar:
    answer = await client.get(url)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/calendar")
    return Calendar.from_ical(answer.content)


def _sequences(cal: Calendar) -> dict[str, int]:
    """SEQUENCE per VEVENT: "main", or the RECURRENCE-ID of an override."""
    out = {}
    for item in cal.walk("VEVENT"):
        key = item.decoded("recurrence-id").isoformat() if "RECURRENCE-ID" in item else "main"
        out[key] = int(item.decoded("sequence"))
    return out


async def test_a_ks_without_events_gets_a_calendar_with_its_time_zone(events):
    client, _ = events
    cal = await _calendar(client, "/events/ks/besnica/calendar.ics")
    assert cal.name == "VCALENDAR" and cal.subcomponents, "RFC 5545: at least one component"
    assert [c.name for c in cal.subcomponents] == ["VTIMEZONE"]
    assert str(cal.walk("VTIMEZONE")[0]["TZID"]) == "Europe/Ljubljana"
    assert cal.walk("VEVENT") == []
    # the city-wide one too, and with an event the VTIMEZONE is still there exactly once
    assert (await _calendar(client, "/events/calendar.ics")).walk("VTIMEZONE")
    await _publish(client, local_day(3))
    cal = await _calendar(client, "/events/ks/kokrica/calendar.ics")
    assert [c.name for c in cal.subcomponents] == ["VTIMEZONE", "VEVENT"]


async def test_sequence_grows_with_every_change_calendar_apps_must_see(events):
    client, _ = events
    starts = local_day(3)
    event_id = await _publish(client, starts)
    own = f"/events/{event_id}/event.ics"
    ks = "/events/ks/kokrica/calendar.ics"
    assert _sequences(await _calendar(client, own)) == {"main": 0}

    # moved a day later: SEQUENCE 1, the new time in the calendar, the API says so too
    moved = starts + timedelta(days=1)
    r = await client.patch(
        f"/api/v1/events/{event_id}",
        json={"starts_at": moved.isoformat(), "ends_at": (moved + timedelta(hours=2)).isoformat()},
        headers=ADMIN,
    )
    assert r.status_code == 200 and r.json()["sequence"] == 1
    cal = await _calendar(client, own)
    assert _sequences(cal) == {"main": 1}
    assert cal.walk("VEVENT")[0].decoded("dtstart") == moved
    assert _sequences(await _calendar(client, ks)) == {"main": 1}

    # the description alone: no new sequence; the venue, then the title: one each
    r = await client.patch(f"/api/v1/events/{event_id}", json={"description": "Prinesite note."}, headers=ADMIN)
    assert r.json()["sequence"] == 1
    r = await client.patch(f"/api/v1/events/{event_id}", json={"venue": "Gasilski dom Kokrica"}, headers=ADMIN)
    assert r.json()["sequence"] == 2
    r = await client.patch(f"/api/v1/events/{event_id}", json={"title": "Pevske vaje zbora"}, headers=ADMIN)
    assert r.json()["sequence"] == 3
    [item] = (await _calendar(client, own)).walk("VEVENT")
    assert (int(item.decoded("sequence")), str(item["location"]), str(item["summary"])) == (
        3,
        "Gasilski dom Kokrica",
        "Pevske vaje zbora",
    )

    # cancelled: SEQUENCE 4 and STATUS:CANCELLED, so the apps strike it out
    r = await client.post(f"/api/v1/events/{event_id}/cancel", json={"reason": "Bolezen"}, headers=ADMIN)
    assert r.json()["sequence"] == 4
    [item] = (await _calendar(client, own)).walk("VEVENT")
    assert int(item.decoded("sequence")) == 4 and str(item["status"]) == "CANCELLED"


async def test_a_moved_date_of_a_series_carries_the_sequence_on_its_override(events):
    client, _ = events
    first = local_day(2)
    event_id = await _publish(client, first, rrule="FREQ=WEEKLY;COUNT=4")
    second = first + timedelta(weeks=1)
    to = second + timedelta(days=2)
    r = await client.post(
        f"/api/v1/events/{event_id}/occurrences/move",
        json={
            "occurrence": second.isoformat(),
            "starts_at": to.isoformat(),
            "ends_at": (to + timedelta(hours=2)).isoformat(),
        },
        headers=ADMIN,
    )
    assert r.status_code == 200 and r.json()["sequence"] == 1
    cal = await _calendar(client, f"/events/{event_id}/event.ics")
    assert _sequences(cal) == {"main": 1, second.isoformat(): 1}
    [override] = [v for v in cal.walk("VEVENT") if "RECURRENCE-ID" in v]
    assert override.decoded("dtstart") == to and override["uid"] == cal.walk("VEVENT")[0]["uid"]

    # a second date cancelled: both the series and its override move on to 2
    third = first + timedelta(weeks=2)
    r = await client.post(
        f"/api/v1/events/{event_id}/occurrences/cancel", json={"occurrence": third.isoformat()}, headers=ADMIN
    )
    assert r.status_code == 200 and r.json()["sequence"] == 2
    cal = await _calendar(client, f"/events/{event_id}/event.ics")
    assert _sequences(cal) == {"main": 2, second.isoformat(): 2}
    [main] = [v for v in cal.walk("VEVENT") if "RECURRENCE-ID" not in v]
    assert [d.dt for d in main["exdate"].dts] == [third]


async def test_a_title_with_a_line_break_never_breaks_the_calendar(events):
    client, app = events
    starts = local_day(4)
    body = {
        "ks": "kokrica",
        "title": "Pevske vaje\nin druženje",
        "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(hours=2)).isoformat(),
        "venue": "Dom KS Kokrica",
    }
    refused = await client.post("/api/v1/events", json=body, headers=ADMIN)
    assert refused.status_code == 422 and "eni vrstici" in refused.text, refused.text
    assert (await client.post("/api/v1/events", json={**body, "venue": "Dom\tKS"}, headers=ADMIN)).status_code == 422
    event_id = await _publish(client, starts)
    patched = await client.patch(f"/api/v1/events/{event_id}", json={"title": "A\r\nB"}, headers=ADMIN)
    assert patched.status_code == 422

    # one stored before titles were checked (or written by other means): still served
    async with app.state.ctx.db.session() as session:
        event = await session.get(Event, event_id)
        event.title = "Pevske vaje\r\nin druženje\x0b"
        event.venue = "Dom KS\nKokrica"
        event.description = "Prva vrstica\nDruga vrstica"
        session.add(event)
        await session.commit()
    cal = await _calendar(client, f"/events/{event_id}/event.ics")
    [item] = cal.walk("VEVENT")
    assert str(item["summary"]) == "Pevske vaje in druženje"
    assert str(item["location"]) == "Dom KS Kokrica"
    assert "Prva vrstica\nDruga vrstica" in str(item["description"])
    assert str(cal["x-wr-calname"]) == "Pevske vaje in druženje"
    assert (await _calendar(client, "/events/ks/kokrica/calendar.ics")).walk("VEVENT")
    assert (await client.get(f"/events/{event_id}")).status_code == 200


@pytest.mark.parametrize(
    ("dates", "more"),
    [(13, "1 termin"), (14, "2 termina"), (15, "3 termini"), (16, "4 termini"), (17, "5 terminov")],
)
async def test_the_page_says_how_many_more_dates_and_lists_them_all(tmp_path, dates, more):
    app = create_app(make_settings(tmp_path, NOWHERE), start_bus=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://events.test") as client:
            first = local_day(1)
            event_id = await _publish(client, first, rrule=f"FREQ=WEEKLY;COUNT={dates}")
            spans = [format_span(first + timedelta(weeks=i), first + timedelta(weeks=i, hours=2)) for i in range(dates)]
            page = (await client.get(f"/events/{event_id}")).text
            assert all(s in page for s in spans[:12]) and not any(s in page for s in spans[12:])
            assert f"… in še {more}." in page
            assert f'href="/events/{event_id}?vsi=1#termini"' in page
            every = (await client.get(f"/events/{event_id}?vsi=1")).text
            assert all(s in every for s in spans) and "in še" not in every
