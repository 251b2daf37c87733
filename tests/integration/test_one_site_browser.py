"""One site (issue 18, sections 2 and 3), in real Chromium on a phone (390 × 844), through
the local front door in front of the four real services:

- every resident page carries the one header (Dogodki · Prostori · Ankete · Oglasna deska ·
  Prejemajte obvestila) and the footer with the accessibility statement and the privacy
  notice, and those two pages open;
- forms never trap, keyboard only: after a failed submit of the SMS-only sign-up and of the
  event registration the title says "Napaka:", the error summary is at the top of the
  screen and has the focus (no JavaScript: the form posts to `#napake`), each of its links
  moves the focus to its field, everything typed is kept; fixed, the submit goes through;
- the room request's error summary is on the first screen, not thousands of pixels down;
- axe-core finds no serious or critical WCAG 2.1 A/AA violation on any of these pages,
  error states included;
- the KS picked on /events is preselected on /rooms and on the sign-up form.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from conftest import TEST_ADMIN_TOKEN, axe_serious_violations, make_settings
from staff_login import add_staff, browser_login
from support.resident import active as _active
from support.resident import front_door as _front_door
from support.resident import press_and_load as _press_and_load
from support.resident import tab_to as _tab_to
from support.resident import tab_to_link as _tab_to_link

from services.booking.app import create_app as create_booking
from services.events import service as events_service
from services.events.app import create_app as create_events
from services.events.schemas import EventIn
from services.notify import subscribers as notify_subscribers
from services.notify.app import create_app as create_notify
from services.surveys.app import create_app as create_surveys
from shared.auth import Staff
from shared.models import utcnow

pytestmark = pytest.mark.integration

PHONE = {"viewport": {"width": 390, "height": 844}, "locale": "sl-SI"}
NAV = ["/events", "/rooms", "/surveys", "/noticeboard", "/subscribe"]
NAV_LABELS = ["Dogodki", "Prostori", "Ankete", "Oglasna deska", "Prejemajte obvestila"]


@pytest.fixture
async def site(tmp_path, amqp_url) -> AsyncIterator[dict[str, Any]]:
    settings = make_settings(tmp_path, amqp_url)
    apps = {
        "events": create_events(settings),
        "booking": create_booking(settings),
        "surveys": create_surveys(settings),
        "notify": create_notify(settings),
    }
    async with _front_door(apps) as base:
        events_db = apps["events"].state.ctx.db
        start = (utcnow() + timedelta(days=9)).replace(hour=16, minute=0, second=0, microsecond=0)
        event = await events_service.create_event(
            events_db,
            Staff("t", "admin", ("*",)),
            EventIn(
                ks="huje",
                title="Medgeneracijsko druženje",
                starts_at=start,
                ends_at=start + timedelta(hours=2),
                venue="Medgeneracijski center Kranj, Cesta talcev 7",
                capacity=20,
            ),
        )
        await events_service.publish_event(events_db, settings, event.id)
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}) as api:
            made = await api.post("/api/v1/surveys", json={"template": "needs-assessment", "ks": "*"})
            survey_id = made.json()["id"]
            assert (await api.post(f"/api/v1/surveys/{survey_id}/open")).status_code == 200
        sub = await notify_subscribers.add_subscriber(
            apps["notify"].state.ctx.db,
            notify_subscribers.SubscriberIn(
                email="ana@example.si", phone="041 555 666", ks=["huje"], topics=["general"]
            ),
        )
        manage = apps["notify"].state.ctx.extra["renderer"].manage_token(sub.id)
        await add_staff(apps["events"].state.ctx.accounts, "tajnica@ks-huje.si", "ks-staff", ["huje"])
        yield {"base": base, "event": event.id, "survey": survey_id, "manage": f"/manage/{manage}"}


async def _assert_landed_on_summary(page: Any, links: list[str]) -> None:
    """After a failed submit: "Napaka:" title, the summary at the top of the screen and focused."""
    assert (await page.title()).startswith("Napaka: ")
    assert (await _active(page))["id"] == "napake", await _active(page)
    summary = page.locator("#napake")
    assert await summary.get_attribute("role") == "alert"
    assert "Prišlo je do napake" in await summary.inner_text()
    box = await summary.bounding_box()
    assert box is not None and -1 <= box["y"] < 200 and box["y"] + box["height"] <= 844, box
    assert await summary.locator("a").evaluate_all("as => as.map(a => a.getAttribute('href'))") == links
    for href in links:  # each field: aria-invalid, described by its own message above it
        field = page.locator(href)
        assert await field.get_attribute("aria-invalid") == "true", href
        described = await field.evaluate(  # its own, or (a box of a group) its fieldset's
            "e => (e.getAttribute('aria-describedby') || e.closest('fieldset').getAttribute('aria-describedby') || '')"
        )
        assert f"{href[1:]}-napaka" in described.split(), href
        message = page.locator(f"{href}-napaka")
        assert await message.is_visible()
    text = await page.locator("main").inner_text()
    for english in ("List should", "needs an email", "Field required", "value is not", "Input should"):
        assert english not in text


async def _follow_summary_link(page: Any, href: str) -> None:
    """From wherever the focus is: back to the summary link by Shift+Tab, Enter: the field has the focus."""
    await _tab_to_link(page, href, back=True)
    await page.keyboard.press("Enter")
    await page.wait_for_function(f"document.activeElement && document.activeElement.id === {href[1:]!r}")


async def test_every_page_is_one_site_with_its_header_footer_and_no_axe_violations(site, browser):
    base = site["base"]
    context = await browser.new_context(**PHONE)
    page = await context.new_page()
    pages = [
        ("/events", "/events"),
        (f"/events/{site['event']}", "/events"),
        ("/rooms", "/rooms"),
        ("/surveys", "/surveys"),
        (f"/surveys/{site['survey']}", "/surveys"),
        ("/noticeboard", "/noticeboard"),
        ("/noticeboard/huje", "/noticeboard"),
        ("/subscribe", "/subscribe"),
        (site["manage"], "/subscribe"),
        ("/dostopnost", None),
        ("/zasebnost", None),
    ]
    for path, current in pages:
        answer = await page.goto(base + path)
        assert answer is not None and answer.status == 200, path
        nav = page.locator("header nav.site-nav a")
        assert await nav.evaluate_all("as => as.map(a => a.getAttribute('href'))") == NAV, path
        assert [t.strip() for t in await nav.all_inner_texts()] == NAV_LABELS, path
        marked = await page.locator("header nav a[aria-current]").evaluate_all(
            "as => as.map(a => [a.getAttribute('href'), a.getAttribute('aria-current')])"
        )  # "page" on the section's own page, "true" below it (an event, a KS board)
        assert marked == ([[current, "page" if path == current else "true"]] if current else []), path
        for link in await nav.all():  # tap targets of at least 44 × 44 px, all on the phone's width
            box = await link.bounding_box()
            assert box and box["height"] >= 44 and box["width"] >= 44 and box["x"] + box["width"] <= 390, (path, box)
        footer = page.locator("footer.site")
        assert await footer.locator("a[href='/dostopnost']").count() == 1, path
        assert await footer.locator("a[href='/zasebnost']").count() == 1, path
        assert "Slovenski trg 1, 4000 Kranj" in await footer.inner_text()
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390, path  # nothing wider than a phone
        assert await page.locator("a:has-text('Osebje')").count() == 0  # staff only
        assert await axe_serious_violations(page) == [], path
    await page.goto(base + "/dostopnost")
    statement = await page.locator("main").inner_text()
    assert "delno skladno" in statement and "WCAG 2.1" in statement and "EN 301 549" in statement
    assert "Ministrstvo za javno upravo" in statement and "Izjava je bila pripravljena" in statement
    await page.goto(base + "/zasebnost")
    notice = await page.locator("main").inner_text()
    assert "Mestna občina Kranj" in notice and "90 dni" in notice and "Informacijskem pooblaščencu" in notice

    # The KS picked on /events: remembered, and preselected on /rooms and on the sign-up.
    await page.goto(base + "/events")
    await page.select_option("#ks", "huje")
    await page.locator("form.filters button").press("Enter")
    await page.wait_for_url("**/events?ks=huje**")
    cookie = next(c for c in await context.cookies() if c["name"] == "kranj_ks")
    assert cookie["value"] == "huje" and cookie["sameSite"] == "Lax" and cookie["expires"] > 0
    await page.goto(base + "/rooms")
    assert await page.locator("#ks").input_value() == "huje"
    assert await page.locator("h1").inner_text() == "Prostori KS Huje"
    await page.goto(base + "/subscribe")
    assert await page.locator("#ks-huje").is_checked()
    assert not await page.locator("#channel-email").is_checked()  # nothing pre-ticked that can fail
    await page.goto(base + "/events?ks=")  # "every KS" forgets it
    assert "kranj_ks" not in {c["name"] for c in await context.cookies()}
    await context.close()

    # "Osebje" in the header only for a staff member who is signed in: it leads to the staff home.
    staff = await browser.new_context(**PHONE)
    page = await staff.new_page()
    await browser_login(page, base, "tajnica@ks-huje.si")
    await page.goto(base + "/events")
    osebje = page.locator("header nav.site-nav a:has-text('Osebje')")
    assert await osebje.get_attribute("href") == "/osebje"
    async with page.expect_navigation():
        await osebje.press("Enter")
    assert page.url == base + "/osebje"
    await staff.close()


async def test_forms_never_trap_a_keyboard_user_on_a_phone(site, browser):
    base = site["base"]
    context = await browser.new_context(**PHONE)
    page = await context.new_page()

    # --- the sign-up, SMS only: phone typed, no KS and no consent ticked -------------------
    await page.goto(base + "/subscribe")
    await _tab_to(page, "phone")
    await page.keyboard.type("040 123 456")
    await _press_and_load(page)  # Enter in a field submits the form
    await _assert_landed_on_summary(page, ["#ks-all", "#consent"])
    assert await page.locator("#phone").input_value() == "040 123 456"
    assert await axe_serious_violations(page) == []
    await _follow_summary_link(page, "#ks-all")
    await page.keyboard.press("Space")  # "all of Kranj"
    await _follow_summary_link(page, "#consent")
    await page.keyboard.press("Space")
    assert await page.locator("#ks-all").is_checked() and await page.locator("#consent").is_checked()
    await page.keyboard.press("Tab")
    assert (await _active(page))["tag"] == "button"
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/subscribe/code/**")
    # A mistyped code: the same error pattern, and the code field ready for the next try.
    await page.locator("#code").fill("000000")
    await _press_and_load(page)
    await _assert_landed_on_summary(page, ["#code"])
    assert "Koda ni pravilna. Še 4 poskusi." in await page.locator("#code-napaka").inner_text()
    assert await axe_serious_violations(page) == []

    # --- the event registration: a name, no contact ------------------------------------
    await page.goto(f"{base}/events/{site['event']}")
    await _tab_to(page, "name")
    await page.keyboard.type("Ana Novak")
    await _press_and_load(page)
    await _assert_landed_on_summary(page, ["#email"])
    assert await page.locator("#name").input_value() == "Ana Novak"
    assert await axe_serious_violations(page) == []
    await _follow_summary_link(page, "#email")
    await page.keyboard.type("ana.novak@example.si")
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/events/prijava/**")
    assert not (await page.title()).startswith("Napaka")

    # --- the room request: the summary on the first screen -----------------------------
    await page.goto(base + "/rooms?ks=primskovo")
    room = await page.locator("a:has-text('Prosti termini in rezervacija')").first.get_attribute("href")
    await page.goto(base + room)
    await page.fill("#purpose", "Vaje pevskega zbora")
    await _press_and_load(page, locator=page.locator("form button:has-text('Pošlji prošnjo')"))
    assert (await page.title()).startswith("Napaka: ")
    box = await page.locator("#napake").bounding_box()
    assert box is not None and box["y"] < 844, box
    assert (await _active(page))["id"] == "napake"
    assert await page.locator("#purpose").input_value() == "Vaje pevskega zbora"
    assert await page.locator("#datum").get_attribute("aria-invalid") == "true"
    assert await axe_serious_violations(page) == []

    # --- the survey and the manage page: their error states ----------------------------
    await page.goto(f"{base}/surveys/{site['survey']}")
    await _press_and_load(page, locator=page.locator("form button[type=submit]"))
    assert (await page.title()).startswith("Napaka: ")
    assert (await _active(page))["id"] == "napake"
    assert await axe_serious_violations(page) == []

    await page.goto(base + site["manage"])
    for box_id in ("channel-email", "channel-sms", "topic-general"):
        await page.locator(f"#{box_id}").press("Space")  # untick every channel and the only topic
    await page.locator("#ks-jost").press("Space")  # and tick one more KS
    await _press_and_load(page, locator=page.locator("form button:has-text('Shrani')"))
    await _assert_landed_on_summary(page, ["#channel-email", "#topic-general"])
    assert await page.locator("#ks-jost").is_checked() and await page.locator("#ks-huje").is_checked()
    assert not await page.locator("#channel-sms").is_checked()
    assert await axe_serious_violations(page) == []
    await context.close()
