"""surveys pages beyond the form: the paper version's QR code (segno's own path for the
public form's URL, at least 3 cm on paper) and the staff page's buttons to open, close
and publish results, in real Chromium with axe-core."""

from __future__ import annotations

import re

import httpx
import pytest
import segno
from staff_login import add_staff, browser_login
from support.browser import axe_serious_violations, serve_app
from support.settings import TEST_ADMIN_TOKEN, make_settings

from services.surveys.app import create_app

pytestmark = pytest.mark.integration

STAFF = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}


def _path(svg: str, css_class: str) -> str:
    match = re.search(rf'<path class="{css_class}"[^>]* d="([^"]+)"', svg)
    assert match, svg[:500]
    return match.group(1)


async def test_print_page_has_a_qr_code_of_the_public_form(tmp_path, amqp_url):
    settings = make_settings(tmp_path, amqp_url, public_url="https://zavse.kranj.si")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://surveys.test", headers=STAFF) as client:
            sid = (await client.post("/api/v1/surveys", json={"template": "needs-assessment", "ks": "britof"})).json()["id"]
            page = (await client.get(f"/surveys/{sid}/print")).text
    url = f"https://zavse.kranj.si/surveys/{sid}"
    svg = re.search(r'<svg[^>]* class="qr".*?</svg>', page, re.S)
    assert svg, "no QR code on the print page"
    svg_text = svg.group(0)
    expected = segno.make(url, error="m").svg_inline(scale=1, lineclass="qrline")
    assert _path(svg_text, "qr-modules") == _path(expected, "qrline")  # the same modules: it encodes the URL
    assert re.search(r'width="(\d+)mm" height="\1mm"', svg_text)
    size_mm = int(re.search(r'width="(\d+)mm"', svg_text).group(1))
    assert size_mm >= 30  # readable when printed
    assert 'role="img"' in svg_text and url in page  # the address is printed too, for typing


async def test_staff_open_close_and_publish_with_buttons_in_chromium(tmp_path, amqp_url, browser):
    app = create_app(make_settings(tmp_path, amqp_url))
    async with serve_app(app) as base, httpx.AsyncClient(base_url=base, headers=STAFF) as api:
        sid = (await api.post("/api/v1/surveys", json={"template": "needs-assessment", "ks": "primskovo"})).json()["id"]
        async with httpx.AsyncClient(base_url=base) as anonymous:
            r = await anonymous.post(f"/surveys/{sid}/staff/open")
            assert r.status_code == 401
        assert (await api.get(f"/api/v1/surveys/{sid}")).json()["status"] == "draft"

        context = await browser.new_context(locale="sl-SI")
        page = await context.new_page()
        await add_staff(app.state.ctx.accounts, "osebje@kranj.si", "admin")
        await browser_login(page, base, "osebje@kranj.si")  # the staff sign-in: a session cookie
        await page.goto(f"{base}/surveys/{sid}/staff")
        assert await page.get_by_role("button", name="Zapri anketo").count() == 0
        assert await axe_serious_violations(page) == []

        await page.get_by_role("button", name="Odpri anketo").click()
        await page.wait_for_url(f"{base}/surveys/{sid}/staff?done=opened")
        assert "Anketa je odprta" in await page.locator("#potrditev").inner_text()
        assert (await api.get(f"/api/v1/surveys/{sid}")).json()["status"] == "open"
        assert await axe_serious_violations(page) == []

        # A resident whose browser asks for English gets the English form.
        english = await (await browser.new_context(locale="en-GB")).new_page()
        await english.goto(f"{base}/surveys/{sid}")
        assert await english.get_attribute("html", "lang") == "en"
        assert "Does your local community need" in await english.locator("#q-need legend").inner_text()
        assert await axe_serious_violations(english) == []
        await english.get_by_role("button", name="Send my answers").click()
        await english.wait_for_selector(".error-summary")
        assert await english.locator("#q-need-error").inner_text() == "An answer is required."
        await english.get_by_label("Yes, we need one").check()
        await english.get_by_label("A place for young people").check()
        await english.get_by_role("button", name="Send my answers").click()
        await english.wait_for_url(f"{base}/surveys/{sid}/hvala#vsebina")
        assert await english.locator("h1").inner_text() == "Thank you for your answers!"
        assert await axe_serious_violations(english) == []

        await page.get_by_role("button", name="Zapri anketo").click()
        assert "novih odgovorov na spletu ne bomo več sprejemali" in await page.locator("#posledice").inner_text()
        await page.get_by_role("button", name="Da, zapri anketo").click()
        await page.wait_for_url(f"{base}/surveys/{sid}/staff?done=closed")
        assert "Anketa je zaprta" in await page.locator("#potrditev").inner_text()
        assert await page.get_by_role("button", name="Odpri anketo").count() == 0  # a closed survey stays closed

        await page.get_by_role("button", name="Objavi rezultate").click()
        await page.wait_for_url(f"{base}/surveys/{sid}/staff?done=published")
        assert "Rezultati so objavljeni" in await page.locator("#potrditev").inner_text()
        assert await page.get_by_role("button", name="Objavi rezultate").count() == 0
        assert await axe_serious_violations(page) == []
        got = (await api.get(f"/api/v1/surveys/{sid}")).json()
        assert got["status"] == "closed" and got["results_published"] is True

        # A button pressed twice (two tabs): the service refuses, the page says why in Slovenian.
        r = await api.post(f"/surveys/{sid}/staff/open")
        assert r.status_code == 409 and "ni mogoče znova odpreti" in r.text
