"""A resident signs up for an event in real Chromium: /events → the event page → the form
(no JavaScript needed; errors in Slovenian) → the confirmation with the cancel button.
axe-core finds no serious or critical WCAG 2.1 AA violations on any page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlmodel import col, select
from staff_login import add_staff, browser_login
from support.browser import axe_serious_violations, serve_app
from support.settings import TEST_ADMIN_TOKEN, make_settings, wait_until

from services.events.app import create_app
from shared.models import OutboxMessage

pytestmark = pytest.mark.integration
ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}


async def test_sign_up_in_chromium(tmp_path, amqp_url, browser):
    app = create_app(make_settings(tmp_path, amqp_url))
    async with serve_app(app) as base:
        starts = datetime.now(UTC).replace(microsecond=0, second=0) + timedelta(days=7)
        async with httpx.AsyncClient(base_url=base, headers=ADMIN) as client:
            created = await client.post(
                "/api/v1/events",
                json={
                    "ks": "huje",
                    "title": "Kaj potrebuje naša KS? Delavnica za vse generacije",
                    "description": "Pridite povedat, kaj bi radi v skupnem prostoru.\n\nPogostitev zagotovljena.",
                    "starts_at": starts.isoformat(),
                    "ends_at": (starts + timedelta(hours=2)).isoformat(),
                    "venue": "Medgeneracijski center Kranj, Cesta talcev 7",
                    "capacity": 1,
                    "audience": ["mladi", "starejsi"],
                    "topics": ["delavnica"],
                    "accessibility": "Dostop brez stopnic.",
                },
            )
            assert created.status_code == 201, created.text
            event_id = created.json()["id"]
            assert (await client.post(f"/api/v1/events/{event_id}/publish")).status_code == 200

        page = await browser.new_page()
        await page.goto(f"{base}/events?ks=huje&starost=starejsi")
        assert await page.get_attribute("html", "lang") == "sl"
        assert await axe_serious_violations(page) == []
        await page.click("text=Kaj potrebuje naša KS?")
        assert "Dostop brez stopnic." in await page.content()
        assert await axe_serious_violations(page) == []

        # no contact: explained in Slovenian, the name stays
        await page.fill("#name", "Marija Kovač")
        await page.click("button:has-text('Prijavi me')")
        assert "Vpišite e-poštni naslov ali telefonsko številko" in await page.locator("[role=alert]").inner_text()
        assert await page.input_value("#name") == "Marija Kovač"
        assert await axe_serious_violations(page) == []

        await page.fill("#phone", "040 123 456")
        await page.click("button:has-text('Prijavi me')")
        assert await page.locator("h1").inner_text() == "Prijava je potrjena"
        assert "Mesto na dogodku je vaše" in await page.locator("[role=status]").inner_text()
        assert await axe_serious_violations(page) == []
        mine = page.url

        # the seat is taken: the next resident is offered the waitlist
        other = await browser.new_page()
        await other.goto(f"{base}/events/{event_id}")
        await other.fill("#name", "Janez Novak")
        await other.fill("#email", "janez@example.si")
        await other.click("button:has-text('Prijava na čakalno listo')")
        assert await other.locator("h1").inner_text() == "Ste na čakalni listi"

        # cancelling with the signed link promotes Janez
        await page.goto(mine)
        await page.click("button:has-text('Prekliči prijavo')")
        assert await page.locator("h1").inner_text() == "Ali res želite preklicati prijavo?"  # asks once
        await page.click("button:has-text('Da, prekliči prijavo')")
        assert await page.locator("h1").inner_text() == "Prijava je preklicana"
        assert await axe_serious_violations(page) == []
        await other.reload()
        assert await other.locator("h1").inner_text() == "Prijava je potrjena"

        ctx = app.state.ctx

        async def sent() -> set[str]:
            async with ctx.db.session() as session:
                rows = (await session.exec(select(OutboxMessage).where(col(OutboxMessage.sent_at).is_not(None)))).all()
            keys = {r.routing_key for r in rows}
            return keys if {"events.registration.confirmed", "events.registration.promoted"} <= keys else set()

        await wait_until(sent, timeout=15, message="registration messages confirmed by RabbitMQ")

        # staff: the editor with the registrations and the attendance form
        await add_staff(app.state.ctx.accounts, "osebje@kranj.si", "admin")
        await browser_login(page, base, "osebje@kranj.si")
        await page.goto(f"{base}/events/osebje/{event_id}")
        assert "Janez Novak" in await page.content()
        assert await axe_serious_violations(page) == []
        # attendance only once the event has started (issue 14; recorded in test_events_attendance.py)
        assert "Udeležbo lahko vpišete, ko se dogodek začne" in await page.content()


async def test_staff_move_one_date_of_a_series_in_chromium(tmp_path, amqp_url, browser):
    """KS staff of Primskovo log in, open a weekly series, move its third Tuesday to Thursday
    17.00 and cancel the fourth with the "Posamezen termin" form; the public page then lists
    Thursday and not the two Tuesdays. The staff page has no serious axe findings."""
    from services.events.domain import TZ
    from shared.i18n import format_span

    app = create_app(make_settings(tmp_path, amqp_url))
    day = datetime.now(TZ).date() + timedelta(days=7)
    while day.weekday() != 1:
        day += timedelta(days=1)
    first = datetime(day.year, day.month, day.day, 18, 0, tzinfo=TZ)
    third, fourth = first + timedelta(weeks=2), first + timedelta(weeks=3)
    thursday = (third + timedelta(days=2)).replace(hour=17)
    async with serve_app(app) as base:
        async with httpx.AsyncClient(base_url=base, headers=ADMIN) as client:
            created = await client.post(
                "/api/v1/events",
                json={
                    "ks": "primskovo",
                    "title": "Pevske vaje",
                    "description": "Vaje **mešanega** pevskega zbora.\n\n- prinesite note\n- <script>x()</script>",
                    "starts_at": first.isoformat(),
                    "ends_at": (first + timedelta(hours=2)).isoformat(),
                    "venue": "Dom KS Primskovo",
                    "rrule": "FREQ=WEEKLY;COUNT=5",
                },
            )
            assert created.status_code == 201, created.text
            event_id = created.json()["id"]
            assert (await client.post(f"/api/v1/events/{event_id}/publish")).status_code == 200

        await add_staff(app.state.ctx.accounts, "primskovo@kranj.si", "ks-staff", ["primskovo"])
        page = await browser.new_page()
        await browser_login(page, base, "primskovo@kranj.si")
        await page.goto(f"{base}/events/osebje/{event_id}")
        assert await axe_serious_violations(page) == []
        await page.select_option("#occurrence", third.astimezone(UTC).isoformat())
        await page.fill("#new_starts_at", thursday.strftime("%Y-%m-%dT%H:%M"))
        await page.fill("#new_ends_at", (thursday + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"))
        await page.fill("#occurrence_reason", "Dvorana je zasedena.")
        await page.click("button:has-text('Shrani termin')")
        assert "prestavljen na" in await page.locator("#occurrence").inner_text()

        await page.select_option("#occurrence", fourth.astimezone(UTC).isoformat())
        await page.check("input[name=what][value=cancel]")
        await page.click("button:has-text('Shrani termin')")
        fourth_span = format_span(fourth, fourth + timedelta(hours=2))
        assert await page.locator("h1").inner_text() == f"Ali res želite odpovedati termin {fourth_span}?"  # asks once
        await page.click("button:has-text('Da, odpovej termin')")
        assert fourth_span not in await page.locator("#occurrence").inner_text()

        await page.goto(f"{base}/events/{event_id}")
        dates = await page.locator("h2:has-text('Termini') + ul").inner_text()
        assert format_span(thursday, thursday + timedelta(hours=2)) in dates
        for gone in (third, fourth):
            assert format_span(gone, gone + timedelta(hours=2)) not in dates
        description = page.locator(".description")
        assert await description.locator("strong").inner_text() == "mešanega"
        assert await description.locator("li").count() == 2
        assert "<script>x()</script>" in await description.inner_text()  # shown as text, never run
        assert await description.locator("script").count() == 0
