"""Issue 19, item 4, in Chromium on a phone (390 × 844): a KS volunteer (ks-staff of
Primskovo) who has never seen an API does all her survey work in pages.

She logs in from the survey list, builds a survey of three questions (a mistake first: the
error summary), moves the third one up, opens it; a resident answers it on the public page
and she enters a paper answer; she closes it (the page asks once), publishes the results,
reads them with the charts — of everyone and of one age band — and downloads the CSV.
axe-core finds nothing on any staff page, the error state included, and no page scrolls
sideways. The needs-assessment template is one form. An organiser of the same KS gets no survey console.
"""

from __future__ import annotations

from typing import Any

import pytest
from staff_login import PASSWORD, add_staff
from support.browser import axe_serious_violations, serve_app
from support.settings import make_settings
from support.times import local_day

from services.surveys.app import create_app
from services.surveys.staff_forms import input_value

pytestmark = pytest.mark.integration

VOLUNTEER = "tajnica@ks-primskovo.si"
ORGANISER = "drustvo@example.si"
PHONE = {"viewport": {"width": 390, "height": 844}, "locale": "sl-SI"}
TITLE = "Kaj bi radi v domu krajanov?"
Q1, Q2, Q3 = "Kako pogosto bi prišli v dom krajanov?", "Katere dejavnosti pogrešate?", "Kaj bi še povedali?"


async def check(page: Any, what: str) -> None:
    """axe-core finds nothing, and the page does not scroll sideways on the phone."""
    assert await axe_serious_violations(page) == [], what
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"{what}: {width} px wide on a 390 px phone"


async def log_in(page: Any, base: str, start: str, email: str) -> Any:
    """Open a staff page, get sent to the login, come back to it signed in."""
    await page.goto(f"{base}{start}")
    assert "/login?next=" in page.url
    await page.get_by_label("E-naslov").fill(email)
    await page.get_by_label("Geslo").fill(PASSWORD)
    async with page.expect_navigation():
        await page.get_by_role("button", name="Prijava").click()
    return page


async def click(page: Any, role: str, name: str, **kwargs: Any) -> None:
    async with page.expect_navigation():
        await page.get_by_role(role, name=name, **kwargs).click()


async def test_a_volunteer_runs_a_survey_in_pages_on_a_phone(tmp_path, amqp_url, browser):
    app = create_app(make_settings(tmp_path, amqp_url))
    async with serve_app(app) as base:
        await add_staff(app.state.ctx.accounts, VOLUNTEER, "ks-staff", ["primskovo"])
        await add_staff(app.state.ctx.accounts, ORGANISER, "organiser", ["primskovo"])
        context = await browser.new_context(**PHONE, accept_downloads=True)
        page = await log_in(await context.new_page(), base, "/surveys/osebje", VOLUNTEER)
        assert page.url == f"{base}/surveys/osebje"
        nav = page.get_by_role("navigation", name="Osebje")
        assert await nav.get_by_role("link", name="Ankete").get_attribute("aria-current") == "page"
        await check(page, "the list, empty")

        # The builder's first page: a mistake first, then the details and the first question.
        await click(page, "link", "Sestavite svojo anketo")
        await click(page, "button", "Shrani osnutek in nadaljuj")
        assert await page.title() == "Napaka: Sestavite svojo anketo · Kranj ZA vse"
        summary = page.get_by_role("alert")
        assert "Vpišite naslov ankete" in await summary.inner_text()
        assert "Izberite, kako krajani odgovorijo" in await summary.inner_text()
        await check(page, "the builder with errors")
        await page.get_by_label("Naslov ankete").fill(TITLE)
        await page.get_by_label("Do (datum in ura)").fill(input_value(local_day(14, hour=20)))
        await page.get_by_label("Besedilo vprašanja").fill(Q1)
        await page.get_by_label("En odgovor izmed možnosti").check()
        await page.get_by_label("Možnosti, vsaka v svoji vrstici").fill("Vsak teden\nVsak mesec\nRedko")
        await page.get_by_label("Odgovor na vprašanje je obvezen").check()
        await click(page, "button", "Shrani osnutek in nadaljuj")
        assert "/staff/uredi" in page.url
        assert "Osnutek ankete je shranjen" in await page.get_by_role("status").inner_text()
        await check(page, "the draft's page")

        for text, kind, options in (
            (Q2, "Več odgovorov izmed možnosti", "Telovadba\nDelavnice"),
            (Q3, "Odgovor s svojimi besedami", ""),
        ):
            await page.get_by_label("Besedilo vprašanja").fill(text)
            await page.get_by_label(kind).check()
            await page.get_by_label("Možnosti, vsaka v svoji vrstici").fill(options)
            await click(page, "button", "Dodaj vprašanje")
            assert "Vprašanje je dodano" in await page.get_by_role("status").inner_text()
        await click(page, "button", "Premakni gor vprašanje 3")
        order = [t.split(". ", 1)[1] for t in await page.locator(".q-list .q-text").all_inner_texts()]
        assert order == [Q1, Q3, Q2]
        await check(page, "the draft after a move")

        # Open it from its page.
        await click(page, "link", "Na stran ankete: pregled in odpiranje")
        await check(page, "the survey's staff page, a draft")
        await click(page, "button", "Odpri anketo")
        assert "Anketa je odprta" in await page.locator("#potrditev").inner_text()
        survey_page = page.url.split("?")[0]
        sid = survey_page.split("/")[-2]

        # A resident answers on the public page.
        resident = await (await browser.new_context(**PHONE)).new_page()
        await resident.goto(f"{base}/surveys/{sid}")
        await resident.get_by_label("Vsak teden").check()
        await resident.get_by_label("Delavnice").check()
        await resident.get_by_label("65 let in več").check()
        await click(resident, "button", "Oddaj anketo")
        assert await resident.locator("h1").inner_text() == "Hvala za vaše odgovore!"

        # She enters a paper answer.
        await click(page, "link", "Vnesi papirnato anketo")
        await check(page, "the paper form")
        await page.get_by_label("Redko").check()
        await page.get_by_label("Telovadba").check()
        await page.get_by_label("30–49 let").check()
        await click(page, "button", "Shrani papirnato anketo")
        assert "Prejšnja anketa je shranjena" in await page.content()
        await click(page, "link", "Nazaj na stran ankete")

        # Close (asked once), publish.
        await click(page, "button", "Zapri anketo")
        assert "do zdaj ste prejeli 2 odgovora" in await page.locator("#posledice").inner_text()
        await check(page, "the closing question")
        await click(page, "button", "Da, zapri anketo")
        assert "Anketa je zaprta" in await page.locator("#potrditev").inner_text()
        await click(page, "button", "Objavi rezultate")
        assert "Rezultati so objavljeni" in await page.locator("#potrditev").inner_text()
        await check(page, "the results")

        # The charts: everyone, then the over-65s only.
        chart = page.locator("#chart-q1 rect.bar")
        assert await chart.count() == 3
        widths = [float(await bar.get_attribute("width")) for bar in await chart.all()]
        assert widths[0] == widths[2] > 0 and widths[1] == 0  # once weekly (web), once rarely (paper)
        await click(page, "link", "65 let in več")
        assert "65 let in več" in await page.locator("#chart-q1 title").first.text_content()
        widths = [float(await bar.get_attribute("width")) for bar in await page.locator("#chart-q1 rect.bar").all()]
        assert widths[0] > 0 and widths[1] == widths[2] == 0
        await check(page, "the results of one age band")

        async with page.expect_download() as download_info:
            await page.get_by_role("link", name="Prenesi rezultate (CSV za Excel)").click()
        download = await download_info.value
        csv = (await download.path()).read_bytes().decode("utf-8-sig")
        assert Q1 in csv and "Vsak teden;1;50,0" in csv and "Skupaj odgovorov;;;2" in csv

        await click(page, "link", "Vse ankete")
        closed = await page.locator("#seznam-closed").inner_text()
        assert TITLE in closed and "2 odgovora" in closed and "Rezultati so objavljeni" in closed
        await check(page, "the list with a closed survey")

        # The needs-assessment template: one form (a closing time already past first).
        await click(page, "link", "Nova anketa iz predloge o potrebah")
        await check(page, "the template form")
        await page.get_by_label("Do (datum in ura)").fill(input_value(local_day(-1, hour=8)))
        await click(page, "button", "Shrani osnutek ankete")
        assert "Konec mora biti v prihodnosti." in await page.get_by_role("alert").inner_text()
        await check(page, "the template form with an error")
        await page.get_by_label("Do (datum in ura)").fill(input_value(local_day(21, hour=20)))
        await click(page, "button", "Shrani osnutek ankete")
        assert "Osnutek ankete je shranjen" in await page.locator("#potrditev").inner_text()
        assert await page.locator("h1").inner_text() == "Osnutek: Skupnostni prostor v KS Primskovo: kaj potrebujemo?"
        await click(page, "link", "Vse ankete")
        assert "Skupnostni prostor v KS Primskovo" in await page.locator("#seznam-draft").inner_text()

        # An organiser of the same KS: no console.
        organiser = await (await browser.new_context(**PHONE)).new_page()
        await log_in(organiser, base, "/surveys/osebje/nova", ORGANISER)
        refused = await organiser.goto(f"{base}/surveys/osebje")
        assert refused is not None and refused.status == 403
        assert (await organiser.goto(f"{base}/surveys/{sid}/staff")).status == 403
