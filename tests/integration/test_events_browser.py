"""A resident signs up for an event in real Chromium: /events → the event page → the form
(no JavaScript needed; errors in Slovenian) → the confirmation with the cancel button.
axe-core finds no serious or critical WCAG 2.1 AA violations on any page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from conftest import TEST_ADMIN_TOKEN, axe_serious_violations, make_settings, serve_app, wait_until
from sqlmodel import col, select
from staff_login import add_staff, browser_login

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
        await page.fill("#a-starejsi", "12")
        await page.click("button:has-text('Shrani udeležbo')")
        assert "Skupaj: 12" in await page.content()
