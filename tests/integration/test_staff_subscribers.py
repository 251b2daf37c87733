"""Issue 19, item 3: a KS volunteer keeps the list of subscribers through pages only.

The real notify app on the real broker (the test's vhost) and a real SMTP server: a ks-staff
member of Primskovo adds a resident from a paper sign-up form on `/osebje/narocniki` (consent
recorded as entered by her), and a notice she then sends to Primskovo reaches that resident
by email. A sign-up sheet uploaded in the browser loads its good rows and names the bad ones
by line. An organiser cannot open these pages; a volunteer cannot add a resident to another
KS, nor load one from a sheet. Finding a person masks their contacts for a volunteer; the
admin may export them and erase them after a confirmation. The add form passes axe-core at
390 × 844 in Chromium, from the login to the success message.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlmodel import select
from staff_login import add_staff, browser_login, login, post_form
from support.browser import axe_serious_violations, serve_app
from support.settings import make_settings

from services.notify.app import create_app
from services.notify.consent import records
from services.notify.models import Subscriber
from services.notify.subscribers import SubscriberIn, add_subscriber

pytestmark = pytest.mark.integration

VOLUNTEER = "tajnica@ks-primskovo.si"
ORGANISER = "drustvo@example.si"
ADMIN = "admin@kranj.si"
PAGE = "/osebje/narocniki"
RESIDENT = "marija.kovac@example.si"


def add_form(**values: Any) -> dict[str, Any]:
    return {
        "ks": "primskovo",
        "email": RESIDENT,
        "phone": "",
        "channels": ["email"],
        "topics": ["general", "events"],
        "language": "sl",
        **values,
    }


async def seed(app: Any) -> None:
    ctx = app.state.ctx
    await add_staff(ctx.accounts, VOLUNTEER, "ks-staff", ["primskovo"])
    await add_staff(ctx.accounts, ORGANISER, "organiser", ["primskovo"])
    await add_staff(ctx.accounts, ADMIN, "admin")


def client_of(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t")


async def subscribers_of(app: Any) -> list[Subscriber]:
    async with app.state.ctx.db.session() as session:
        return list((await session.exec(select(Subscriber))).all())


@pytest.fixture
async def notify_app(tmp_path, amqp_url, database_url, smtp_server):
    settings = make_settings(tmp_path, amqp_url, notify_database_url=database_url, **smtp_server.settings())
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await seed(app)
        yield app


@pytest.fixture
async def sqlite_app(tmp_path, amqp_url):
    app = create_app(make_settings(tmp_path, amqp_url))
    async with app.router.lifespan_context(app):
        await seed(app)
        yield app


async def test_a_resident_added_from_paper_gets_the_next_notice_by_email(notify_app, smtp_server):
    async with client_of(notify_app) as client:
        await login(client, VOLUNTEER)
        home = await client.get("/osebje")
        assert f'href="{PAGE}"' in home.text and "Naročniki" in home.text
        page = await client.get(PAGE)
        assert page.status_code == 200 and 'aria-current="page"' in page.text
        assert 'type="file"' in page.text and 'value="huje"' not in page.text

        # A form error first: SMS ticked without a phone — the GOV.UK summary, in Slovenian.
        wrong = await post_form(client, PAGE, None, add_form(channels=["email", "sms"]))
        assert wrong.status_code == 422
        assert "<title>Napaka: Naročniki · Kranj ZA vse</title>" in wrong.text  # "Napaka:" once
        assert 'id="napake"' in wrong.text and "Vpišite mobilno številko ali odstranite kljukico" in wrong.text
        assert await subscribers_of(notify_app) == []

        added = await post_form(client, PAGE, None, add_form())
        assert added.status_code == 303 and added.headers["location"] == f"{PAGE}?done=dodan"
        done = await client.get(added.headers["location"])
        assert "Krajan je prijavljen na obvestila" in done.text

        # The same contact again: the API's neutral answer, nothing doubled.
        again = await post_form(client, PAGE, None, add_form(email=RESIDENT.upper()))
        assert again.status_code == 422 and "je že prijavljena" in again.text
        [resident] = await subscribers_of(notify_app)
        assert resident.email == RESIDENT and resident.status == "active" and resident.consent_source == "staff"
        async with notify_app.state.ctx.db.session() as session:
            [consent] = await records(session, [resident.id])
        assert consent.proof == f"staff:{VOLUNTEER}"

        # A notice to Primskovo, written on the notices page, reaches her at the SMTP server.
        notice = {
            "ks": "primskovo",
            "title": "Zapora ceste v soboto",
            "body": "Cesta skozi Primskovo bo v soboto zaprta od 8. do 12. ure.",
            "topic": "general",
            "channels": ["email"],
            "urgency": "normal",
            "korak": "zdaj",
        }
        sent = await post_form(client, "/osebje/obvestila", None, notice)
        assert sent.status_code == 303, sent.text[:500]
    [mail] = await smtp_server.wait_for(1, timeout=20)
    assert mail.rcpt_tos == [RESIDENT] and "Zapora ceste v soboto" in mail.subject


SHEET = (
    "email;phone;ks;topics;channels;language\r\n"
    "ana@example.si;;primskovo;general|events;email;sl\r\n"  # line 2
    "ni-naslov;;primskovo;general;email;sl\r\n"  # line 3: not an email address
    ";040 111 222;Primskovo;general;sms;\r\n"  # line 4
    "huje.krajan@example.si;;huje;general;email;sl\r\n"  # line 5: another KS
    "cene@example.si;;primskovo;;;en\r\n"  # line 6
)


async def test_an_uploaded_sheet_loads_the_good_rows_and_names_the_bad_lines(sqlite_app):
    async with client_of(sqlite_app) as client:
        await login(client, VOLUNTEER)
        template = await client.get(f"{PAGE}/predloga.csv")
        assert template.status_code == 200 and template.headers["content-type"].startswith("text/csv")
        assert template.content.decode("utf-8-sig").strip() == "email;phone;ks;topics;channels;language"

        files = {"datoteka": ("prijavnice.csv", SHEET.encode("utf-8"), "text/csv")}
        result = await post_form(client, PAGE, f"{PAGE}/uvoz", {}, files=files)
        assert result.status_code == 200, result.text[:500]
        assert "Naloženih: 3. Vrstic z napako: 2." in result.text
        assert "Vrstica 3:" in result.text and "Vrstica 5:" in result.text
        assert "Vrstica 2:" not in result.text and "Vrstica 4:" not in result.text
        # The volunteer reads why in Slovenian, never the validator's English.
        assert "Vrstica 3: email: e-naslov ni pravilen (oblika ime@primer.si)" in result.text
        assert "Vrstica 5: ks: " in result.text and "value is not a valid" not in result.text

        empty = await post_form(client, PAGE, f"{PAGE}/uvoz", {})
        assert empty.status_code == 422 and "Izberite datoteko CSV" in empty.text
    loaded = {s.email or s.phone: s for s in await subscribers_of(sqlite_app)}
    assert set(loaded) == {"ana@example.si", "+38640111222", "cene@example.si"}
    assert loaded["cene@example.si"].language == "en" and loaded["+38640111222"].channels == ["sms"]
    assert all(s.consent_source == "import" for s in loaded.values())


async def test_who_may_not_touch_the_subscribers(sqlite_app):
    async with client_of(sqlite_app) as organiser:
        await login(organiser, ORGANISER)
        for path in (PAGE, f"{PAGE}/predloga.csv"):
            assert (await organiser.get(path, headers={"accept": "text/html"})).status_code == 403, path
        assert f'href="{PAGE}"' not in (await organiser.get("/osebje")).text
    async with client_of(sqlite_app) as client:
        await login(client, VOLUNTEER)
        other = await post_form(client, PAGE, None, add_form(ks="huje"))
        assert other.status_code == 403
        # Privacy (export, erase) is the admin's: refused, and not offered.
        erase = await post_form(client, PAGE, f"{PAGE}/izbris", {"email": RESIDENT, "korak": "izbrisi"})
        assert erase.status_code == 403
    assert await subscribers_of(sqlite_app) == []


async def test_find_masks_for_a_volunteer_and_the_admin_exports_and_erases(sqlite_app):
    db = sqlite_app.state.ctx.db
    await add_subscriber(db, SubscriberIn(email=RESIDENT, phone="041 555 666", ks=["primskovo"]), entered_by="t")
    await add_subscriber(db, SubscriberIn(email="drugje@example.si", ks=["huje"]), entered_by="t")
    async with client_of(sqlite_app) as client:
        await login(client, VOLUNTEER)
        found = await post_form(client, PAGE, f"{PAGE}/iskanje", {"email": RESIDENT, "phone": ""})
        assert found.status_code == 200 and "Najdene prijave" in found.text
        assert "m***@example.si" in found.text and "+386***66" in found.text
        assert "041 555 666" not in found.text and "+38641555666" not in found.text
        assert "/osebje/narocniki/izbris" not in found.text
        elsewhere = await post_form(client, PAGE, f"{PAGE}/iskanje", {"email": "drugje@example.si"})
        assert "ni prijave v vaši krajevni skupnosti" in elsewhere.text and "d***@" not in elsewhere.text
        blank = await post_form(client, PAGE, f"{PAGE}/iskanje", {"email": "", "phone": ""})
        assert blank.status_code == 422 and 'href="#find-email"' in blank.text

    async with client_of(sqlite_app) as admin:
        await login(admin, ADMIN)
        found = await post_form(admin, PAGE, f"{PAGE}/iskanje", {"phone": "041 555 666"})
        assert RESIDENT in found.text and "Izbriši osebo" in found.text
        exported = await post_form(admin, PAGE, f"{PAGE}/izvoz", {"email": RESIDENT})
        assert exported.status_code == 200 and "attachment" in exported.headers["content-disposition"]
        assert json.loads(exported.text)["subscriptions"][0]["email"] == RESIDENT
        confirm = await post_form(admin, PAGE, f"{PAGE}/izbris", {"email": RESIDENT, "korak": "potrdi"})
        assert confirm.status_code == 200 and "kranj subscriber erase" in confirm.text
        assert len(await subscribers_of(sqlite_app)) == 2  # asking writes nothing
        erased = await post_form(admin, PAGE, f"{PAGE}/izbris", {"email": RESIDENT, "korak": "izbrisi"})
        assert erased.status_code == 303 and erased.headers["location"] == f"{PAGE}?done=izbrisan"
    assert [s.email for s in await subscribers_of(sqlite_app)] == ["drugje@example.si"]


async def test_the_add_form_on_a_phone_passes_axe(tmp_path, amqp_url, browser):
    app = create_app(make_settings(tmp_path, amqp_url))
    async with serve_app(app) as base:
        await add_staff(app.state.ctx.accounts, VOLUNTEER, "ks-staff", ["primskovo"])
        context = await browser.new_context(viewport={"width": 390, "height": 844}, locale="sl-SI")
        page = await context.new_page()
        await page.goto(f"{base}{PAGE}")
        assert "/login" in page.url
        await browser_login(page, base, VOLUNTEER)  # lands on the staff home
        await page.get_by_role("navigation", name="Osebje").get_by_role("link", name="Naročniki").click()
        await page.wait_for_load_state()
        assert page.url.endswith(PAGE)
        assert await axe_serious_violations(page) == []
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width} px wide on a 390 px phone"
        # A mistake first: the error summary, then the corrected form.
        await page.get_by_role("button", name="Prijavi krajana").click()
        await page.wait_for_load_state()
        assert await page.get_by_role("heading", name="Prišlo je do napake").count() == 1
        assert await axe_serious_violations(page) == []
        await page.get_by_label("E-pošta").first.fill(RESIDENT)
        await page.get_by_role("button", name="Prijavi krajana").click()
        await page.wait_for_load_state()
        assert await page.get_by_role("status").filter(has_text="Krajan je prijavljen").count() == 1
        assert await axe_serious_violations(page) == []
        await context.close()
