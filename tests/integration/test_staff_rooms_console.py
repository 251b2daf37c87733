"""Issue 19, item 5: a KS volunteer runs the rooms of her KS through pages only.

Booking and notify, each on its own port behind the local front door (as `kranj up` serves
them), on the real broker (the test's vhost) and a real SMTP server; Chromium on a phone
(390 × 844). A ks-staff member of Primskovo logs in, opens "Prostori" from the staff header
and:

- books a weekly series for a choir: the date already taken (booked beforehand through the
  API) is skipped, the others are confirmed; the page says which, in Slovenian plurals;
- closes the room for a week: the one question before it says that the series' date in that
  week will be cancelled and its group told; afterwards a resident's request for that week
  is refused on the room page, and the choir receives the cancellation with the reason;
- gets the rules form wrong (the GOV.UK error summary), then saves it;
- rejects a resident's request — first without a reason (an error), then with one — and the
  requester receives that reason by email;
- opens the room-use figures.

axe-core finds nothing on any of these pages, error states included, and none is wider
than the phone. An organiser of the same KS has no "Prostori" in the header and gets 403 on
every one of these pages.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import select
from staff_login import add_staff, browser_login
from support.browser import axe_serious_violations
from support.resident import front_door
from support.settings import TEST_ADMIN_TOKEN, make_settings, wait_until
from support.times import iso, weekday_ahead

from services.booking import domain
from services.booking.app import create_app as create_booking
from services.booking.models import Booking, Room
from services.booking.staff_rooms import TERMS
from services.notify.app import create_app as create_notify
from shared.i18n import plural

pytestmark = pytest.mark.integration

PHONE = {"viewport": {"width": 390, "height": 844}, "locale": "sl-SI"}
VOLUNTEER = "tajnica@ks-primskovo.si"
ORGANISER = "drustvo@example.si"
ROOM = "ks-primskovo"
HOME = "/rooms/osebje/prostori"
CHOIR = "zbor@example.si"
RESIDENT = "bor.kranjc@example.si"
REASON = "Ta večer ima prostor občni zbor KS."
THURSDAY = 3


async def fits_and_passes(page: Any, what: str) -> None:
    """axe-core finds nothing and nothing pushes the page sideways on the phone."""
    assert await axe_serious_violations(page) == [], what
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"{what}: {width} px wide on a 390 px phone"


async def submit(page: Any, button: str) -> None:
    await page.get_by_role("button", name=button).click()
    await page.wait_for_load_state()


def mails_to(smtp: Any, address: str) -> list[str]:
    return [m.part("text/plain") or "" for m in smtp.messages if address in m.rcpt_tos]


async def test_a_volunteer_runs_her_rooms_on_a_phone(tmp_path, amqp_url, smtp_server, browser):
    started = time.monotonic()
    settings = make_settings(tmp_path, amqp_url, **smtp_server.settings())
    apps = {"booking": create_booking(settings), "notify": create_notify(settings)}
    booking_db = apps["booking"].state.ctx.db
    # The choir's Thursdays: four weeks from the week after next; the second is taken already.
    series = [weekday_ahead(THURSDAY, weeks=w, hour=18) for w in range(2, 6)]
    taken = series[1]
    closed_week = (weekday_ahead(0, weeks=5), weekday_ahead(6, weeks=5))  # Monday to Sunday of the last one
    free = [d for d in series if d != taken and not domain.holiday_name(d.date())]
    async with front_door(apps) as base:
        accounts = apps["booking"].state.ctx.accounts
        await add_staff(accounts, VOLUNTEER, "ks-staff", ["primskovo"])
        await add_staff(accounts, ORGANISER, "organiser", ["primskovo"])
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}) as api:
            first = await api.post(
                "/api/v1/bookings",
                json={
                    "room_id": ROOM,
                    "starts_at": iso(taken + timedelta(minutes=30)),
                    "ends_at": iso(taken + timedelta(hours=1, minutes=30)),
                    "purpose": "Sestanek sveta KS",
                    "name": "Svet KS Primskovo",
                    "email": "svet@ks-primskovo.si",
                    "attendees": 9,
                },
            )
            assert first.status_code == 201 and first.json()["status"] == "confirmed", first.text

        staff = await (await browser.new_context(**PHONE)).new_page()
        resident = await (await browser.new_context(**PHONE)).new_page()
        for page in (staff, resident):
            page.set_default_timeout(10_000)

        # --- login, then "Prostori" from the staff header ------------------------------------
        await browser_login(staff, base, VOLUNTEER)  # lands on the staff home (notify)
        await staff.get_by_role("navigation", name="Osebje").get_by_role("link", name="Prostori").click()
        await staff.wait_for_load_state()
        assert staff.url.endswith(HOME)
        assert await staff.locator("h2", has_text="Dom KS Primskovo").count() == 1
        assert await staff.locator("h2", has_text="Huje").count() == 0  # only her KS's rooms
        await fits_and_passes(staff, "rooms")

        # --- a weekly series for a group: the taken date is skipped --------------------------
        await staff.get_by_role("link", name="Redni termini za skupino (Dom KS Primskovo)").click()
        await staff.wait_for_load_state()
        await fits_and_passes(staff, "series form")
        await staff.get_by_label("Ime skupine ali organizatorja").fill("Pevski zbor Primskovo")
        await staff.get_by_label("Namen").fill("Vaje pevskega zbora")
        await staff.get_by_label("Pričakovano število udeležencev").fill("18")
        await staff.get_by_label("Dan v tednu").select_option(label="četrtek")
        await staff.get_by_label("Ura začetka").fill("18:00")
        await staff.get_by_label("Trajanje").select_option(label="2 h")
        await staff.get_by_label("Od datuma").fill(series[0].date().isoformat())
        await staff.get_by_label("Do datuma (zadnji termin)").fill(series[-1].date().isoformat())
        await submit(staff, "Rezerviraj redne termine")  # no contact yet: the error summary
        assert (await staff.title()).startswith("Napaka: Redni termini")
        assert await staff.get_by_role("link", name="Vpišite e-poštni naslov ali telefon skupine").count() == 1
        assert await staff.get_by_label("Namen").input_value() == "Vaje pevskega zbora"  # kept
        await fits_and_passes(staff, "series form with an error")
        await staff.get_by_label("E-pošta skupine").fill(CHOIR)
        await submit(staff, "Rezerviraj redne termine")
        status = await staff.get_by_role("status").inner_text()
        skipped = len(series) - len(free)
        assert f"Rezervirali smo {plural(len(free), TERMS)}." in status
        assert f"Izpustili smo {plural(skipped, TERMS)}." in status
        assert "Termin je že zaseden." in await staff.locator("#rezultat").inner_text()
        await fits_and_passes(staff, "series result")
        async with booking_db.session() as session:
            rows = list((await session.exec(select(Booking).where(Booking.email == CHOIR))).all())
        assert len(rows) == len(free) and {r.status for r in rows} == {"confirmed"}

        # --- close the room for the series' last week: asks once, says what follows ------------
        await staff.goto(f"{base}{HOME}")
        await staff.get_by_role("link", name="Zapri prostor za nekaj dni (Dom KS Primskovo)").click()
        await staff.wait_for_load_state()
        await staff.get_by_label("Prvi dan zaprtja").fill(closed_week[0].date().isoformat())
        await staff.get_by_label("Zadnji dan zaprtja").fill(closed_week[0].date().isoformat())
        await submit(staff, "Naprej")  # no reason: an error first
        assert await staff.get_by_role("heading", name="Prišlo je do napake").count() == 1
        await fits_and_passes(staff, "closure form with an error")
        await staff.get_by_label("Zadnji dan zaprtja").fill(closed_week[1].date().isoformat())
        await staff.get_by_label("Razlog").fill("obnova")
        await submit(staff, "Naprej")
        question = await staff.locator("#posledice").inner_text()
        cancelled = 1 if series[-1] in free else 0
        if cancelled:
            assert "1 potrjeno rezervacijo: vse bodo preklicane" in question and "Pevski zbor Primskovo" in question
        async with booking_db.session() as session:
            assert (await session.exec(select(Booking).where(Booking.status == "cancelled"))).all() == []
        await fits_and_passes(staff, "closure question")
        await submit(staff, "Da, zapri prostor")
        assert "Prostor je zaprt za izbrano obdobje" in await staff.get_by_role("status").inner_text()
        await fits_and_passes(staff, "closure done")

        # a resident's request for that week is refused, with the reason
        tuesday = closed_week[0].date() + timedelta(days=1)
        await resident.goto(f"{base}/rooms/{ROOM}?datum={tuesday.isoformat()}&od=10:00&do=12:00")
        await resident.fill("#purpose", "Rojstni dan")
        await resident.fill("#attendees", "10")
        await resident.fill("#name", "Bor Kranjc")
        await resident.fill("#email", RESIDENT)
        await submit(resident, "Pošlji prošnjo")
        assert "Prostor je takrat zaprt: obnova." in await resident.locator("[role=alert]").inner_text()
        if cancelled:
            await wait_until(
                lambda: any("obnova" in text for text in mails_to(smtp_server, CHOIR)),
                timeout=30,
                message="the choir's cancellation with the closure's reason",
            )

        # --- the room's rules: an error, then saved -----------------------------------------
        await staff.goto(f"{base}{HOME}")
        await staff.get_by_role("link", name="Pravila prostora (Dom KS Primskovo)").click()
        await staff.wait_for_load_state()
        await fits_and_passes(staff, "rules form")
        await staff.get_by_label("Število mest").fill("0")
        await staff.locator("#open_sat").fill("9 do 13")
        await submit(staff, "Shrani pravila")
        assert (await staff.title()).startswith("Napaka: Pravila prostora")
        summary = await staff.locator("#napake").inner_text()
        assert "Vpišite število mest v prostoru" in summary and "Vpišite ure kot 8.00–22.00" in summary
        assert await staff.locator("#open_sat").get_attribute("aria-invalid") == "true"
        await fits_and_passes(staff, "rules form with errors")
        await staff.get_by_label("Število mest").fill("40")
        await staff.locator("#open_sat").fill("9.00–13.00")
        await submit(staff, "Shrani pravila")
        assert "Pravila so shranjena" in await staff.get_by_role("status").inner_text()
        async with booking_db.session() as session:
            room = await session.get(Room, ROOM)
        assert room is not None and room.capacity == 40 and room.opening_hours["sat"] == [["09:00", "13:00"]]

        # --- reject a resident's request, with a reason that reaches the requester -------------
        workday = next(d for d in (weekday_ahead(i, weeks=2).date() for i in range(5)) if not domain.holiday_name(d))
        await resident.goto(f"{base}/rooms/{ROOM}?datum={workday.isoformat()}&od=10:00&do=12:00")
        await resident.fill("#purpose", "Rojstni dan")
        await resident.fill("#attendees", "10")
        await resident.fill("#name", "Bor Kranjc")
        await resident.fill("#email", RESIDENT)
        await submit(resident, "Pošlji prošnjo")
        assert await resident.locator("h1").inner_text() == "Prošnja je oddana"

        await staff.goto(f"{base}{HOME}")
        await staff.get_by_role("link", name="Prošnje, ki čakajo na odločitev (1)").click()
        await staff.wait_for_load_state()
        assert "Bor Kranjc" in await staff.locator("main").inner_text()
        await fits_and_passes(staff, "requests")
        await submit(staff, "Zavrni prošnjo: Bor Kranjc")  # no reason: the error, nothing sent
        assert await staff.get_by_role("link", name="Napišite razlog zavrnitve").count() == 1
        await fits_and_passes(staff, "requests with an error")
        await staff.get_by_label("Razlog zavrnitve (prosilec ga dobi v obvestilu)").fill(REASON)
        await submit(staff, "Zavrni prošnjo: Bor Kranjc")
        assert "Prošnja je zavrnjena" in await staff.get_by_role("status").inner_text()
        await fits_and_passes(staff, "requests after the decision")
        await wait_until(
            lambda: any(REASON in text for text in mails_to(smtp_server, RESIDENT)),
            timeout=30,
            message="the rejected requester's email with the reason",
        )

        # --- room-use figures --------------------------------------------------------------
        await staff.goto(f"{base}{HOME}")
        await staff.get_by_role("link", name="Uporaba prostorov (številke in graf)").click()
        await staff.wait_for_load_state()
        assert await staff.locator("svg[role=img]").count() == 1
        assert "Dom KS Primskovo" in await staff.locator("table").inner_text()
        await fits_and_passes(staff, "figures")

        # --- an organiser of the same KS: no section, and 403 on every page -------------------
        organiser = await (await browser.new_context(**PHONE)).new_page()
        await browser_login(organiser, base, ORGANISER)
        nav = organiser.get_by_role("navigation", name="Osebje")
        assert await nav.get_by_role("link", name="Prostori").count() == 0
        for path in (
            HOME,
            "/rooms/osebje/prosnje",
            "/rooms/osebje/uporaba",
            f"{HOME}/{ROOM}/serija",
            f"{HOME}/{ROOM}/zapora",
            f"{HOME}/{ROOM}/pravila",
        ):
            answer = await organiser.goto(f"{base}{path}")
            assert answer is not None and answer.status == 403, path
        await fits_and_passes(organiser, "the organiser's refusal")
    print(f"journey took {time.monotonic() - started:.1f} s")
