"""A resident books a room in real Chromium: /rooms → the room's coming days → a day, a
start and a duration in the request form (no JavaScript needed) → the pending state. axe-core finds no serious or
critical WCAG 2.1 AA violations on any page; staff approve on their page."""

from __future__ import annotations

import re

import pytest
from sqlmodel import col, select
from staff_login import add_staff, browser_login
from support.browser import axe_serious_violations, serve_app
from support.settings import make_settings, wait_until

from services.booking.app import create_app
from shared.models import OutboxMessage

pytestmark = pytest.mark.integration


async def test_request_a_free_slot_in_chromium(tmp_path, amqp_url, browser):
    app = create_app(make_settings(tmp_path, amqp_url))
    async with serve_app(app) as base:
        page = await browser.new_page()
        await page.goto(f"{base}/rooms?ks=primskovo")
        assert await page.get_attribute("html", "lang") == "sl"
        assert await axe_serious_violations(page) == []
        await page.click("text=Prosti termini in rezervacija")
        assert await page.locator("h1").inner_text() == "Dom KS Primskovo"
        assert await axe_serious_violations(page) == []

        # the last of the coming days with free time, from the start of its first free range
        day = page.locator("ul.days label").last
        start = re.search(r"prosto (\d+)\.(\d\d)", await day.inner_text())
        await day.click()
        await page.select_option("#od", f"{int(start[1]):02d}:{start[2]}")
        await page.select_option("#trajanje", "60")

        # forgetting the contact is explained in Slovenian, and nothing typed is lost
        await page.fill("#purpose", "Vaje pevskega zbora")
        await page.fill("#attendees", "12")
        await page.fill("#name", "Mojca Novak")
        await page.click("button:has-text('Pošlji prošnjo')")
        alert = page.locator("[role=alert]")
        assert "Vpišite e-poštni naslov ali telefonsko številko" in await alert.inner_text()
        assert await page.input_value("#name") == "Mojca Novak"
        assert await axe_serious_violations(page) == []

        await page.fill("#email", "mojca@example.si")
        await page.click("button:has-text('Pošlji prošnjo')")
        assert await page.locator("h1").inner_text() == "Prošnja je oddana"
        assert "čaka na potrditev" in await page.locator("[role=status]").inner_text()
        assert await axe_serious_violations(page) == []
        status_url = page.url

        # the booking.booking.requested message left through the real broker
        ctx = app.state.ctx

        async def sent() -> bool:
            async with ctx.db.session() as session:
                rows = (await session.exec(select(OutboxMessage).where(col(OutboxMessage.sent_at).is_not(None)))).all()
            return any(r.routing_key == "booking.booking.requested" for r in rows)

        await wait_until(sent, timeout=15, message="the requested message to be confirmed by RabbitMQ")

        # staff log in and approve it on their page
        await add_staff(app.state.ctx.accounts, "tajnica@kranj.si", "admin")
        await browser_login(page, base, "tajnica@kranj.si")
        await page.goto(f"{base}/rooms/osebje/prosnje")
        assert "Mojca Novak" in await page.content()
        assert await axe_serious_violations(page) == []
        await page.click("button:has-text('Odobri')")
        assert "Prošnja je odobrena." in await page.locator("[role=status]").inner_text()
        await page.goto(f"{base}/rooms/osebje/uporaba")
        assert await page.locator("svg[role=img]").count() == 1
        assert await axe_serious_violations(page) == []

        # the requester's link shows the confirmation and lets them cancel
        await page.goto(status_url)
        assert await page.locator("h1").inner_text() == "Rezervacija je potrjena"
        await page.click("button:has-text('Prekliči rezervacijo')")
        assert await page.locator("h1").inner_text() == "Rezervacija je preklicana"
        assert await axe_serious_violations(page) == []
