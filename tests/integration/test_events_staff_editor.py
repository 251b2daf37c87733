"""Issue 19, item 6: a KS volunteer runs events through pages only, in Chromium at 390 × 844.

The real events and booking services on the real broker (the test's vhost). Booking announces
its rooms (`booking.room.updated`) and events keeps its own copy; a room the KS office imports
in booking appears in the event editor's list, and so does its closure. The volunteer of
Primskovo logs in and:

- makes a weekly series with the repeat picker — Tuesdays until a date, one Tuesday ticked
  "ta dan odpade" — never typing an RRULE; asking for a KS room as well is refused in words at
  the room field (an error state axe checks), the values and the ticked day kept; the saved
  series shows its dates right (the picker filled again, the dropped day ticked, the "one
  date" list without it), and its topics "Družabništvo, šport" are kept as typed;
- makes a one-off event in the new room chosen from the list, publishes it, and booking
  refuses the room (it is closed then): the event page and the list say so in plain
  Slovenian, with booking's reason — not "pending" for ever.

An organiser of the same KS sees none of her events and may not open them (403). Every page
has no serious axe finding and no sideways scroll on a phone.

A second test: a room request booking never answers (the events service alone) is told to
staff as unanswered after the wait, and "Pošlji zahtevo za prostor znova" asks again.
"""

from __future__ import annotations

from datetime import UTC, timedelta

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import col, select
from staff_login import add_staff, browser_login, login, post_form
from support.browser import axe_serious_violations, serve_app
from support.settings import TEST_ADMIN_TOKEN, make_settings, wait_until
from support.times import iso, weekday_ahead

from services.booking.app import create_app as create_booking
from services.events.app import create_app as create_events
from services.events.domain import ROOM_ANSWER_WAIT
from services.events.models import Event, KsRoom
from shared.i18n import format_span
from shared.models import OutboxMessage, utcnow

pytestmark = pytest.mark.integration
ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
VOLUNTEER = "tajnica@ks-primskovo.si"
ORGANISER = "drustvo@example.si"
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "locale": "sl-SI"}
NEW_ROOM = "ks-primskovo-mala"
ROOMS_CSV = f"id;ks;name;address;capacity\n{NEW_ROOM};primskovo;Mala dvorana Doma KS Primskovo;Jezerska cesta 41;20\n"


def local_input(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M")


async def fits_a_phone(page) -> None:
    assert await axe_serious_violations(page) == []
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), page.url


async def rooms_known(events, *room_ids: str) -> bool:
    async with events.state.ctx.db.session() as session:
        found = (await session.exec(select(KsRoom.id).where(col(KsRoom.id).in_(room_ids)))).all()
    return set(found) == set(room_ids)


async def test_volunteer_repeats_picks_a_room_and_is_told_of_its_refusal(tmp_path, amqp_url, browser):
    settings = make_settings(tmp_path, amqp_url)
    events, booking = create_events(settings), create_booking(settings)
    first = weekday_ahead(1, weeks=2)  # a Tuesday at 18.00, 8 to 14 days ahead
    until = (first + timedelta(weeks=5)).date()  # six Tuesdays
    dropped = first + timedelta(weeks=2)  # the third
    thursday = weekday_ahead(3, weeks=2)
    async with booking.router.lifespan_context(booking), serve_app(events) as base:
        await add_staff(events.state.ctx.accounts, VOLUNTEER, "ks-staff", ["primskovo"])
        await add_staff(events.state.ctx.accounts, ORGANISER, "organiser", ["primskovo"])
        # The KS office imports a second room and closes it on that Thursday (booking's own API).
        async with httpx.AsyncClient(transport=httpx.ASGITransport(booking), base_url="http://b") as bk:
            imported = await bk.post("/api/v1/rooms/import", content=ROOMS_CSV.encode(), headers=ADMIN)
            assert imported.status_code == 200, imported.text
            closure = {"starts_at": iso(thursday.replace(hour=0)), "ends_at": iso(thursday.replace(hour=23)),
                       "reason": "prenova"}  # fmt: skip
            closed = await bk.post(f"/api/v1/rooms/{NEW_ROOM}/closures", json=closure, headers=ADMIN)
            assert closed.status_code == 201, closed.text
        await wait_until(lambda: rooms_known(events, "ks-primskovo", NEW_ROOM), timeout=30,
                         message="booking's rooms in events' copy")  # fmt: skip

        context = await browser.new_context(**PHONE)
        page = await context.new_page()
        await browser_login(page, base, VOLUNTEER)
        await page.goto(f"{base}/events/osebje/nov")
        await fits_a_phone(page)
        assert await page.locator("#ks option").all_inner_texts() == ["Primskovo"]
        rooms = await page.locator("#room_id option").all_inner_texts()
        assert rooms == ["Dogodek ni v prostoru KS", "Dom KS Primskovo (sprejme 50 oseb)",
                         "Mala dvorana Doma KS Primskovo (sprejme 20 oseb)"]  # fmt: skip
        assert "zaprt" in await page.locator("ul.rooms li", has_text="Mala dvorana").inner_text()
        assert "rrule" not in (await page.content()).lower()

        # A weekly series with the picker: Tuesdays until a date, the dates shown, one dropped.
        await page.fill("#title", "Pevske vaje")
        await page.fill("#starts_at", local_input(first))
        await page.fill("#ends_at", local_input(first + timedelta(hours=2)))
        await page.check("#ponavljanje-tedensko")
        await page.check("#dan-TU")
        await page.fill("#do", until.isoformat())
        await page.fill("#topics", "Družabništvo, šport")
        await page.click("button:has-text('Pokaži termine')")
        assert await page.locator("#termini legend").inner_text() == (
            f"6 terminov: vsak teden ob torkih do {until.day}. {until.month}. {until.year}"
        )
        await page.check(f"#termini label:has-text('{format_span(dropped, dropped + timedelta(hours=2))}') input")
        # A series in a KS room cannot be booked by message: said at the room field, all kept.
        await page.select_option("#room_id", "ks-primskovo")
        await page.click("button:has-text('Shrani osnutek')")
        summary = page.locator("#napake")
        assert "Ponavljajočega se dogodka ni mogoče vezati na prostor KS" in await summary.inner_text()
        assert await page.title() == "Napaka: Nov dogodek — urejanje · Kranj ZA vse"
        assert await page.get_attribute("#room_id", "aria-invalid") == "true"
        assert await page.input_value("#title") == "Pevske vaje"
        assert await page.locator("#termini input:checked").count() == 1
        await fits_a_phone(page)  # the error state too

        await page.select_option("#room_id", "")
        await page.fill("#venue", "Dom KS Primskovo")
        await page.click("button:has-text('Shrani osnutek')")
        await page.wait_for_url(f"{base}/events/osebje/*")
        series_url = page.url
        assert await page.locator("h1").inner_text() == "Pevske vaje"
        assert await page.input_value("#topics") == "družabništvo, šport"
        assert await page.is_checked("#ponavljanje-tedensko") and await page.is_checked("#dan-TU")
        assert await page.input_value("#do") == until.isoformat()
        ticked = page.locator("#termini input:checked")
        assert await ticked.count() == 1
        assert await ticked.get_attribute("value") == dropped.astimezone(UTC).isoformat()
        ticked_label = page.locator("#termini label", has=page.locator("input:checked"))
        assert format_span(dropped, dropped + timedelta(hours=2)) in await ticked_label.inner_text()
        dates = await page.locator("#occurrence option").all_inner_texts()
        expected = [first + timedelta(weeks=n) for n in (0, 1, 3, 4, 5)]
        assert dates == [format_span(d, d + timedelta(hours=2)) for d in expected]
        await fits_a_phone(page)

        # A one-off event in the new room, chosen from the list: booking refuses it (closed then).
        await page.goto(f"{base}/events/osebje/nov")
        await page.fill("#title", "Družabno srečanje")
        await page.fill("#starts_at", local_input(thursday))
        await page.fill("#ends_at", local_input(thursday + timedelta(hours=2)))
        await page.select_option("#room_id", NEW_ROOM)
        await page.click("button:has-text('Shrani osnutek')")
        await page.wait_for_url(f"{base}/events/osebje/*")
        assert "Prostor KS" in await page.content() and "Mala dvorana" in await page.input_value("#venue")
        await page.click("button:has-text('Objavi dogodek')")
        await page.wait_for_url(f"{base}/events/osebje/*")

        async def told() -> bool:
            await page.reload()
            return await page.locator("#prostor.room-problem").count() == 1

        await wait_until(told, timeout=30, interval=0.5, message="the refusal on the event's page")
        notice = await page.locator("#prostor").inner_text()
        assert "Prostor Mala dvorana Doma KS Primskovo za ta dogodek ni odobren." in notice
        assert "Razlog: Prostor je takrat zaprt: prenova." in notice and " / " not in notice
        assert await page.locator("p", has_text="Stanje:").inner_text() == "Stanje: prostor zavrnjen"
        await fits_a_phone(page)
        await page.goto(f"{base}/events/osebje/")
        row = page.locator("tr", has_text="Družabno srečanje")
        assert "Pozor: prostor ni odobren: Prostor je takrat zaprt: prenova" in await row.inner_text()
        await fits_a_phone(page)

        # The organiser of the same KS: none of these are hers.
        other = await browser.new_context(**PHONE)
        theirs = await other.new_page()
        await browser_login(theirs, base, ORGANISER)
        await theirs.goto(f"{base}/events/osebje/")
        assert "Še ni dogodkov." in await theirs.locator("table").inner_text()
        refused = await theirs.goto(series_url)
        assert refused is not None and refused.status == 403
        await other.close()
        await context.close()


async def test_a_room_request_nobody_answers_is_told_and_asked_again(tmp_path, amqp_url):
    """The events service alone (booking does not run): after the wait the event's page says
    the request was not answered, and asking again sends `booking.room.requested` once more."""
    events = create_events(make_settings(tmp_path, amqp_url), start_bus=False)
    async with events.router.lifespan_context(events):
        await add_staff(events.state.ctx.accounts, VOLUNTEER, "ks-staff", ["primskovo"])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(events), base_url="http://e") as client:
            starts = weekday_ahead(2, weeks=3)
            body = {"ks": "primskovo", "title": "Zbor krajanov", "starts_at": iso(starts),
                    "ends_at": iso(starts + timedelta(hours=2)), "venue": "Dom KS", "room_id": "ks-primskovo"}  # fmt: skip
            created = await client.post("/api/v1/events", json=body, headers=ADMIN)
            event_id = created.json()["id"]
            assert (await client.post(f"/api/v1/events/{event_id}/publish", headers=ADMIN)).json()["status"] == (
                "pending-room"
            )
            await login(client, VOLUNTEER)
            page = f"/events/osebje/{event_id}"
            assert "odgovor pričakujemo v nekaj minutah" in (await client.get(page)).text

            async with events.state.ctx.db.session() as session:  # the request was sent long ago
                await session.exec(
                    sa.update(Event)
                    .where(col(Event.id) == event_id)
                    .values(  # type: ignore[call-overload]
                        room_requested_at=utcnow() - ROOM_ANSWER_WAIT - timedelta(minutes=1)
                    )
                )
                await session.commit()
            shown = (await client.get(page)).text
            assert "Rezervacija prostorov se na zahtevo za prostor ks-primskovo ni odzvala" in shown
            assert "Pošlji zahtevo za prostor znova" in shown
            listed = (await client.get("/events/osebje/")).text
            assert "Pozor: rezervacija prostorov se ni odzvala" in listed

            again = await post_form(client, page, f"{page}/prostor-znova", {}, follow_redirects=False)
            assert again.status_code == 303, again.text
            async with events.state.ctx.db.session() as session:
                asked = (
                    await session.exec(
                        select(OutboxMessage).where(OutboxMessage.routing_key == "booking.room.requested")
                    )
                ).all()
            assert len(asked) == 2
            assert "odgovor pričakujemo v nekaj minutah" in (await client.get(page)).text


async def test_saving_a_published_series_unchanged_changes_nothing(tmp_path, amqp_url):
    """A weekly series made by the JSON API (COUNT, one date dropped), published: the editor
    shows it in the picker; saving the page as it is keeps the rule, the dropped date and the
    SEQUENCE, and announces nothing (no registrant is told of a change that is none)."""
    events = create_events(make_settings(tmp_path, amqp_url), start_bus=False)
    async with events.router.lifespan_context(events):
        await add_staff(events.state.ctx.accounts, VOLUNTEER, "ks-staff", ["primskovo"])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(events), base_url="http://e") as client:
            first = weekday_ahead(1, weeks=2)
            dropped = first + timedelta(weeks=1)
            body = {"ks": "primskovo", "title": "Telovadba za starejše", "starts_at": iso(first),
                    "ends_at": iso(first + timedelta(hours=1)), "venue": "Dom KS", "rrule": "FREQ=WEEKLY;COUNT=4",
                    "exdates": [iso(dropped)], "topics": ["šport"]}  # fmt: skip
            event_id = (await client.post("/api/v1/events", json=body, headers=ADMIN)).json()["id"]
            assert (await client.post(f"/api/v1/events/{event_id}/publish", headers=ADMIN)).status_code == 200
            await login(client, VOLUNTEER)
            page = f"/events/osebje/{event_id}"
            shown = (await client.get(page)).text
            assert 'id="ponavljanje-tedensko" name="ponavljanje" value="tedensko" checked' in shown
            last = (first + timedelta(weeks=3)).date()
            assert f'name="do" type="date" value="{last.isoformat()}"' in shown
            assert f"{format_span(dropped, dropped + timedelta(hours=1))} — odpade" in shown
            form = {"title": body["title"], "starts_at": local_input(first), "venue": "Dom KS",
                    "ends_at": local_input(first + timedelta(hours=1)), "ponavljanje": "tedensko", "dan": "TU",
                    "do": last.isoformat(), "topics": "šport", "audience": "vsi"}  # fmt: skip
            saved = await post_form(client, page, None, form, follow_redirects=False)
            assert saved.status_code == 303, saved.text
            after = (await client.get(f"/api/v1/events/{event_id}", headers=ADMIN)).json()
            assert (after["rrule"], after["sequence"]) == ("FREQ=WEEKLY;COUNT=4", 0)
            assert [e.replace("+00:00", "Z") for e in after["exdates"]] == [iso(dropped.astimezone(UTC))]
            async with events.state.ctx.db.session() as session:
                keys = (await session.exec(select(OutboxMessage.routing_key))).all()
            assert "events.event.updated" not in keys
