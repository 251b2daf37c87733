"""The surveys pages in real Chromium: a resident fills in and submits the public form
(errors shown next to the questions first), the thank-you page, the staff results page
with its SVG charts, and the public results; axe-core finds no serious or critical
WCAG 2.1 AA violations on any of them."""

from __future__ import annotations

import httpx
import pytest
from staff_login import add_staff, browser_login
from support.browser import axe_serious_violations, serve_app
from support.settings import TEST_ADMIN_TOKEN, make_settings

from services.surveys.app import create_app

pytestmark = pytest.mark.integration

STAFF = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}


async def test_resident_answers_in_chromium_and_staff_read_the_charts(tmp_path, amqp_url, browser):
    app = create_app(make_settings(tmp_path, amqp_url))
    async with serve_app(app) as base, httpx.AsyncClient(base_url=base, headers=STAFF) as api:
        sid = (await api.post("/api/v1/surveys", json={"template": "needs-assessment", "ks": "primskovo"})).json()["id"]
        assert (await api.post(f"/api/v1/surveys/{sid}/open")).status_code == 200

        context = await browser.new_context(viewport={"width": 390, "height": 844}, locale="sl-SI")  # a phone
        page = await context.new_page()
        await page.goto(f"{base}/surveys/{sid}")
        assert await page.get_attribute("html", "lang") == "sl"
        assert "Primskovo" in await page.locator("h1").inner_text()
        assert await axe_serious_violations(page) == []

        # Submitting without the required answers: Slovenian errors next to the questions.
        await page.get_by_role("button", name="Oddaj anketo").click()
        await page.wait_for_selector(".error-summary")
        assert await page.locator("#q-need-error").inner_text() == "Odgovor je obvezen."
        assert await page.locator("#q-what-error").is_visible()
        assert await axe_serious_violations(page) == []

        await page.get_by_label("Da, potrebujemo ga").check()
        await page.get_by_label("Prostor za mlade").check()
        await page.get_by_label("Kulturni dogodki", exact=False).check()
        await page.locator("#q-existing-input").fill("Pevski zbor išče prostor za vaje.")
        await page.get_by_label("15–29 let").check()
        await page.get_by_role("button", name="Oddaj anketo").click()
        # the form posts to `#napake` (its error summary); a redirect keeps that fragment, harmless
        await page.wait_for_url(f"{base}/surveys/{sid}/hvala#vsebina")  # its own anchor, not the form's #napake
        assert await page.locator("h1").inner_text() == "Hvala za vaše odgovore!"
        assert await axe_serious_violations(page) == []
        await page.goto(f"{base}/surveys/{sid}")  # the cookie: this browser has answered
        assert "že odgovorili" in await page.content()

        # A second resident, elsewhere, on the API.
        r = await api.post(
            f"/api/v1/surveys/{sid}/responses",
            json={"answers": {"need": "maybe", "what": ["youth"]}, "age_band": "65+"},
            headers={"Authorization": ""},
        )
        assert r.status_code == 201, r.text

        staff = await browser.new_context()
        page = await staff.new_page()
        await add_staff(app.state.ctx.accounts, "osebje@kranj.si", "admin")
        await browser_login(page, base, "osebje@kranj.si")
        await page.goto(f"{base}/surveys/{sid}/staff")
        assert (await page.locator("h1").inner_text()).startswith("Rezultati")
        assert await page.locator("#chart-need rect.bar").count() == 4
        assert await page.locator("#chart-what rect.bar").count() == 10
        assert await page.locator("#chart-reach rect.bar").count() == 6  # five age bands and "not given"
        widths = [float(await bar.get_attribute("width")) for bar in await page.locator("#chart-reach rect.bar").all()]
        # bars: 0-14, 15-29, 30-49, 50-64, 65+, not given; one answer each in 15-29 and 65+
        assert widths[1] == widths[4] > 0 and widths[0] == widths[2] == widths[3] == widths[5] == 0
        box = await page.locator("#chart-need").bounding_box()
        assert box and box["width"] > 100 and box["height"] > 100  # it really renders
        assert "Pevski zbor išče prostor za vaje." in await page.content()
        assert await axe_serious_violations(page) == []

        await page.goto(f"{base}/surveys/{sid}/print")
        assert await page.locator("section.print-q").count() >= 7
        assert await axe_serious_violations(page) == []

        assert (await api.post(f"/api/v1/surveys/{sid}/results/publish")).status_code == 200
        public = await (await browser.new_context()).new_page()
        await public.goto(f"{base}/surveys/{sid}/results")
        assert await public.locator("#chart-need rect.bar").count() == 4
        assert "Pevski zbor" not in await public.content()
        assert await axe_serious_violations(public) == []
