"""Requesting a room on a phone (issue 18, section 4), in real Chromium at 390 × 844 with
the platform clock frozen on a Sunday morning:

- the room page opens on the coming days (Monday to Sunday ahead, not the week that just
  ended), each day one line with its free time ("prosto 10.00–17.00 in 19.00–22.00"); the
  whole list fits on one screen, and nothing pushes the page sideways;
- keyboard only, the form's first field (the day) is at most 10 Tab presses from page load;
  the resident chooses Saturday, a start and a duration, and the request goes through;
- asking for an overlapping time, and for a time that has passed (the clock moved on
  while the form was open), lands on the GOV.UK error summary with the focus, everything
  chosen kept; axe-core finds nothing serious on any of these states.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import select
from support.browser import axe_serious_violations, serve_app
from support.settings import make_settings
from support.times import local_day

from services.booking import domain
from services.booking.app import create_app
from services.booking.models import Booking
from shared import clock

pytestmark = pytest.mark.integration

PHONE = {"viewport": {"width": 390, "height": 844}, "locale": "sl-SI"}
ROOM = "ks-primskovo"  # open 8.00–22.00 Monday to Saturday, KS office hours 17.00–19.00 Monday and Wednesday


def _quiet_sunday() -> Any:
    """10.00 on the first Sunday ahead whose following week has no public holiday."""
    days = (6 - clock.local_now().weekday()) % 7
    while any(domain.holiday_name((local_day(days + n)).date()) for n in range(8)):
        days += 7
    return local_day(days, hour=10)


async def _active(page: Any) -> dict[str, Any]:
    return await page.evaluate(
        "() => { const e = document.activeElement;"
        " return {id: e.id, tag: e.tagName.toLowerCase(), value: e.value || ''}; }"
    )


async def _assert_fits_the_phone(page: Any) -> None:
    width = await page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways: {width} px"
    assert await axe_serious_violations(page) == []


@pytest.fixture
async def phone(browser: Any) -> AsyncIterator[Any]:
    context = await browser.new_context(**PHONE)
    yield await context.new_page()
    await context.close()


async def _choose(page: Any, day: str, start_key: str, duration_label: str) -> None:
    """Keyboard only, from the day radios: arrow to `day`, type the start, pick the duration.
    Arrowing to a radio selects it; when `day` is the first, the one Tab landed on, a resident
    presses Space (focus alone selects nothing: this failed when `day` opened the days shown)."""
    for _ in range(8):
        if (await _active(page))["value"] == day:
            break
        await page.keyboard.press("ArrowDown")
    if not await page.locator(f"input[name=datum][value='{day}']").is_checked():
        await page.keyboard.press("Space")
    assert await page.locator(f"input[name=datum][value='{day}']").is_checked()
    for _ in range(3):  # past the "next days" link
        await page.keyboard.press("Tab")
        if (await _active(page))["id"] == "od":
            break
    assert (await _active(page))["id"] == "od"
    await page.keyboard.type(start_key)
    await page.keyboard.press("Tab")
    assert (await _active(page))["id"] == "trajanje"
    for _ in range(12):
        if await page.locator("#trajanje option:checked").inner_text() == duration_label:
            break
        await page.keyboard.press("ArrowDown")
    assert await page.locator("#trajanje option:checked").inner_text() == duration_label


async def _tab_to_first_field(page: Any) -> int:
    for presses in range(1, 31):
        await page.keyboard.press("Tab")
        if (await _active(page))["id"] == "datum":
            return presses
    raise AssertionError("the day never got the focus by keyboard")


async def test_a_sunday_on_a_phone_shows_the_coming_days_and_takes_a_request_for_saturday(
    tmp_path, amqp_url, phone
) -> None:
    sunday = _quiet_sunday()
    monday, saturday = (sunday + timedelta(days=1)).date(), (sunday + timedelta(days=6)).date()
    with clock.frozen(sunday) as advance:
        app = create_app(make_settings(tmp_path, amqp_url))
        async with serve_app(app) as base:
            page = phone
            await page.goto(f"{base}/rooms/{ROOM}")

            # --- the coming days, one line each, all on one screen ---------------------
            days = page.locator("ul.days > li")
            assert await days.count() == 7
            first = await days.nth(0).inner_text()
            assert "ponedeljek" in first and f"{monday.day}." in first, first
            assert "prosto 10.00–17.00 in 19.00–22.00" in first  # 24 h notice, office hours 17–19
            saturday_line = await days.nth(5).inner_text()
            assert "sobota" in saturday_line and "prosto 8.00–22.00" in saturday_line, saturday_line
            assert "ni na voljo" not in await page.content()
            box = await page.locator("ul.days").bounding_box()
            assert box is not None and box["height"] <= 844, box  # the week on one screen, not 9.5
            await _assert_fits_the_phone(page)

            # --- keyboard only: the form's first field within 10 Tab presses ----------
            presses = await _tab_to_first_field(page)
            assert presses <= 10, presses
            await _choose(page, saturday.isoformat(), "18", "2 uri")
            assert await page.input_value("#od") == "18:00"
            for field, text in (("purpose", "Vaje pevskega zbora"), ("category", None), ("group_kind", None),
                                ("attendees", "12"), ("name", "Mojca Novak"), ("email", "mojca@example.si")):  # fmt: skip
                await page.keyboard.press("Tab")
                assert (await _active(page))["id"] == field
                if text:
                    await page.keyboard.type(text)
            async with page.expect_navigation():
                await page.keyboard.press("Enter")
            assert await page.locator("h1").inner_text() == "Prošnja je oddana"
            async with app.state.ctx.db.session() as session:
                [booking] = (await session.exec(select(Booking).where(Booking.room_id == ROOM))).all()
            starts = booking.starts_at.astimezone(clock.TZ)
            assert (starts.date(), starts.hour, starts.minute) == (saturday, 18, 0)
            assert booking.ends_at - booking.starts_at == timedelta(hours=2)

            # --- an overlapping time: the error summary, focused, the choice kept -----
            await page.goto(f"{base}/rooms/{ROOM}")
            assert "prosto 8.00–18.00 in 20.00–22.00" in await days.nth(5).inner_text()
            await _tab_to_first_field(page)
            await _choose(page, saturday.isoformat(), "19", "1 ura")
            await page.locator("#purpose").fill("Sestanek društva")
            await page.locator("#attendees").fill("5")
            await page.locator("#name").fill("Janez Kranjc")
            await page.locator("#email").fill("janez@example.si")
            async with page.expect_navigation():
                await page.locator("#email").press("Enter")
            assert (await page.title()).startswith("Napaka: ")
            assert (await _active(page))["id"] == "napake"
            assert "Termin je že zaseden." in await page.locator("#napake").inner_text()
            assert await page.locator("#od").get_attribute("aria-invalid") == "true"
            assert await page.input_value("#od") == "19:00"
            assert await page.locator(f"input[name=datum][value='{saturday.isoformat()}']").is_checked()
            assert await page.input_value("#name") == "Janez Kranjc"
            await _assert_fits_the_phone(page)

            # --- the clock moves past Saturday while the form is open: "že mimo" ------
            await page.locator("#od").select_option("09:00")
            advance(timedelta(days=7))
            async with page.expect_navigation():
                await page.locator("#email").press("Enter")
            assert (await _active(page))["id"] == "napake"
            assert "Termin je že mimo." in await page.locator("#napake").inner_text()
            await page.locator("#napake a[href='#od']").first.press("Enter")
            assert (await _active(page))["id"] == "od"
            assert await page.locator(f"input[name=datum][value='{saturday.isoformat()}']").is_checked()
            await _assert_fits_the_phone(page)
