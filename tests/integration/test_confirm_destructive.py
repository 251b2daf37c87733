"""Destructive actions ask once and say what will follow (issue #19 item 7): cancelling an
event, cancelling a registration (staff in the editor, a resident through the signed link)
and closing a survey. The first post changes nothing and shows the question with the
numbers from the database; only the confirmation's "Da, …" (`potrdi=da`) does it. The
cancelled event's registrants get the cancellation at a real SMTP server. A resident on a
phone (390 × 844) cancels through the confirmation page in Chromium; axe-core finds no
serious violations on it. The JSON API is unchanged (scripts do not confirm)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from staff_login import add_staff, form_token, login, post_form
from support.browser import axe_serious_violations, serve_app
from support.settings import TEST_ADMIN_TOKEN, make_settings, wait_until

from services.events import repository
from services.events.app import create_app as create_events
from services.events.messages import registration_token
from services.notify.app import create_app as create_notify
from services.surveys.app import create_app as create_surveys

pytestmark = pytest.mark.integration
ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
HTML = {"Accept": "text/html"}
TITLE = "Pohod na Šmarjetno goro"


async def _event(client: httpx.AsyncClient, *, capacity: int) -> str:
    starts = datetime.now(UTC).replace(microsecond=0, second=0) + timedelta(days=6)
    created = await client.post(
        "/api/v1/events",
        headers=ADMIN,
        json={
            "ks": "primskovo",
            "title": TITLE,
            "description": "Zbor pred domom KS.",
            "starts_at": starts.isoformat(),
            "ends_at": (starts + timedelta(hours=3)).isoformat(),
            "venue": "Dom KS Primskovo",
            "capacity": capacity,
        },
    )
    assert created.status_code == 201, created.text
    event_id = created.json()["id"]
    assert (await client.post(f"/api/v1/events/{event_id}/publish", headers=ADMIN)).status_code == 200
    return str(event_id)


async def _register(client: httpx.AsyncClient, event_id: str, name: str, email: str) -> dict[str, Any]:
    answer = await client.post(f"/api/v1/events/{event_id}/registrations", json={"name": name, "email": email})
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def _statuses(app: Any, event_id: str) -> dict[str, str]:
    rows = await repository.list_registrations(app.state.ctx.db, event_id)
    return {reg.name: reg.status for reg, _ in rows}


async def test_cancelling_an_event_asks_first_and_then_tells_the_registrants(tmp_path, amqp_url, smtp_server):
    settings = make_settings(tmp_path, amqp_url, **smtp_server.settings())
    events, notify = create_events(settings), create_notify(settings)
    async with notify.router.lifespan_context(notify), events.router.lifespan_context(events):
        transport = httpx.ASGITransport(app=events)
        async with httpx.AsyncClient(transport=transport, base_url="http://events.test") as client:
            event_id = await _event(client, capacity=1)
            await _register(client, event_id, "Ana Kovač", "ana@example.si")  # confirmed
            await _register(client, event_id, "Bojan Zupan", "bojan@example.si")  # waitlisted
            third = await _register(client, event_id, "Cvetka Novak", "cvetka@example.si")
            assert (await client.post(f"/api/v1/registrations/{third['id']}/cancel", headers=ADMIN)).status_code == 200

            await add_staff(events.state.ctx.accounts, "tajnica@kranj.si", "ks-staff", ["primskovo"])
            await login(client, "tajnica@kranj.si")
            editor = f"/events/osebje/{event_id}"
            data = {"reason": "Napovedano je neurje."}

            # The button: the question, with the two active registrants (not the cancelled one).
            asked = await post_form(client, editor, f"{editor}/odpovej", data)
            assert asked.status_code == 200, asked.text
            assert "Ali res želite odpovedati dogodek »Pohod na Šmarjetno goro«?" in asked.text
            assert f"Dogodek »{TITLE}« bo odpovedan." in asked.text
            assert "Obvestilo o odpovedi (po e-pošti ali SMS) pošljemo 2 prijavljenima." in asked.text
            assert "Prosta mesta se ne bodo več ponujala" in asked.text
            assert "Odpovedi ni mogoče preklicati." in asked.text
            assert 'value="Napovedano je neurje."' in asked.text  # the reason is kept
            assert 'name="potrdi" value="da"' in asked.text
            assert f'href="{editor}">Ne, nazaj</a>' in asked.text
            assert (await repository.get_event(events.state.ctx.db, event_id)).status == "published"
            assert await _statuses(events, event_id) == {
                "Ana Kovač": "confirmed", "Bojan Zupan": "waitlisted", "Cvetka Novak": "cancelled",
            }  # fmt: skip
            shown = await client.get(f"{editor}/odpovej", headers=HTML)  # the same question by GET
            assert shown.status_code == 200 and "pošljemo 2 prijavljenima" in shown.text

            done = await post_form(client, editor, f"{editor}/odpovej", {**data, "potrdi": "da"})
            assert done.status_code == 303 and done.headers["location"] == editor
            event = await repository.get_event(events.state.ctx.db, event_id)
            assert event.status == "cancelled" and event.cancel_reason == "Napovedano je neurje."
            assert set((await _statuses(events, event_id)).values()) == {"cancelled"}

        def cancellations() -> dict[str, Any]:
            return {
                to: mail
                for mail in smtp_server.messages
                if mail.subject.startswith("Dogodek odpovedan")
                for to in mail.rcpt_tos
            }

        await wait_until(lambda: len(cancellations()) >= 2, timeout=30, message="two cancellation emails")
        found = cancellations()
        assert set(found) == {"ana@example.si", "bojan@example.si"}  # not Cvetka, who had cancelled
        for mail in found.values():
            assert TITLE in mail.subject
            assert f"Dogodek „{TITLE}“" in (body := mail.part("text/plain") or "") and "je odpovedan." in body


async def test_cancelling_a_registration_asks_first_for_staff_and_for_the_resident(tmp_path, amqp_url):
    settings = make_settings(tmp_path, amqp_url)
    app = create_events(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://events.test") as client:
            event_id = await _event(client, capacity=1)
            ana = await _register(client, event_id, "Ana Kovač", "ana@example.si")
            bojan = await _register(client, event_id, "Bojan Zupan", "bojan@example.si")

            # Staff in the editor: "Prekliči" asks, says the first on the waiting list gets the seat.
            await add_staff(app.state.ctx.accounts, "tajnica@kranj.si", "ks-staff", ["primskovo"])
            await login(client, "tajnica@kranj.si")
            editor = f"/events/osebje/{event_id}"
            action = f"{editor}/preklici-{ana['id']}"
            asked = await post_form(client, editor, action, {})
            assert asked.status_code == 200, asked.text
            assert "Ali res želite preklicati prijavo: Ana Kovač?" in asked.text
            assert (
                f"Prijava osebe Ana Kovač na dogodek »{TITLE}« bo preklicana in njeno mesto se sprosti." in asked.text
            )
            assert "Mesto dobi prvi na čakalni listi (na njej je 1 oseba); o tem ga obvestimo." in asked.text
            assert "Dokler so mesta prosta, se lahko znova prijavi." in asked.text
            assert await _statuses(app, event_id) == {"Ana Kovač": "confirmed", "Bojan Zupan": "waitlisted"}
            assert (await client.get(action, headers=HTML)).status_code == 200  # the same question by GET

            done = await post_form(client, editor, action, {"potrdi": "da"})
            assert done.status_code == 303 and done.headers["location"] == editor
            assert await _statuses(app, event_id) == {"Ana Kovač": "cancelled", "Bojan Zupan": "confirmed"}
            other = await client.post(f"/events/osebje/{event_id}/preklici-ni-je", data={"potrdi": "da"}, headers=ADMIN)
            assert other.status_code == 404

        # The resident, through the signed link (no staff session): asks, then cancels.
        async with httpx.AsyncClient(transport=transport, base_url="http://events.test") as resident:
            mine = f"/events/prijava/{registration_token(settings, bojan['id'])}"
            asked = await post_form(resident, mine, f"{mine}/preklic", {})
            assert asked.status_code == 200, asked.text
            assert "Ali res želite preklicati prijavo?" in asked.text
            assert f"Vaša prijava na dogodek »{TITLE}« bo preklicana in njeno mesto se sprosti." in asked.text
            assert "Na čakalni listi ni nikogar, zato mesto ostane prosto za nove prijave." in asked.text
            assert "Dokler so mesta prosta, se lahko znova prijavite." in asked.text
            assert f'href="{mine}">Ne, nazaj</a>' in asked.text
            assert (await _statuses(app, event_id))["Bojan Zupan"] == "confirmed"

            done = await post_form(resident, mine, f"{mine}/preklic", {"potrdi": "da"})
            assert done.status_code == 303 and done.headers["location"] == mine
            assert (await _statuses(app, event_id))["Bojan Zupan"] == "cancelled"
            again = await resident.get(f"{mine}/preklic", headers=HTML, follow_redirects=False)
            assert again.status_code == 303 and again.headers["location"] == mine  # nothing left to ask


async def test_closing_a_survey_asks_first_with_the_number_of_answers(tmp_path, amqp_url):
    app = create_surveys(make_settings(tmp_path, amqp_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://surveys.test") as client:
            created = await client.post(
                "/api/v1/surveys", json={"template": "needs-assessment", "ks": "primskovo"}, headers=ADMIN
            )
            sid = created.json()["id"]
            assert (await client.post(f"/api/v1/surveys/{sid}/open", headers=ADMIN)).status_code == 200
            for band in ("30-49", "65+"):
                async with httpx.AsyncClient(transport=transport, base_url="http://surveys.test") as browser:
                    answer = {"answers": {"need": "yes", "what": ["youth"]}, "age_band": band}
                    sent = await browser.post(f"/api/v1/surveys/{sid}/responses", json=answer)
                    assert sent.status_code == 201, sent.text

            await add_staff(app.state.ctx.accounts, "tajnica@kranj.si", "ks-staff", ["primskovo"])
            await login(client, "tajnica@kranj.si")
            staff_page = f"/surveys/{sid}/staff"
            asked = await post_form(client, staff_page, f"{staff_page}/close", {})
            assert asked.status_code == 200, asked.text
            assert "Ali res želite zapreti anketo" in asked.text
            assert "novih odgovorov na spletu ne bomo več sprejemali (do zdaj ste prejeli 2 odgovora)" in asked.text
            assert "Nato lahko objavite rezultate." in asked.text
            assert (await client.get(f"/api/v1/surveys/{sid}", headers=ADMIN)).json()["status"] == "open"
            shown = await client.get(f"{staff_page}/close", headers=HTML)
            assert shown.status_code == 200 and "2 odgovora" in shown.text

            done = await post_form(client, staff_page, f"{staff_page}/close", {"potrdi": "da"})
            assert done.status_code == 303 and done.headers["location"] == f"{staff_page}?done=closed"
            assert (await client.get(f"/api/v1/surveys/{sid}", headers=ADMIN)).json()["status"] == "closed"
            token = await form_token(client, staff_page)
            gone = await client.post(f"{staff_page}/close", data={"csrf_token": token})
            assert gone.status_code == 303 and gone.headers["location"] == staff_page  # closed: nothing to ask


async def test_a_resident_cancels_on_a_phone_through_the_confirmation_in_chromium(tmp_path, amqp_url, browser):
    settings = make_settings(tmp_path, amqp_url)
    app = create_events(settings)
    async with serve_app(app) as base:
        async with httpx.AsyncClient(base_url=base) as client:
            event_id = await _event(client, capacity=1)
            marija = await _register(client, event_id, "Marija Kovač", "marija@example.si")
            await _register(client, event_id, "Janez Novak", "janez@example.si")

        context = await browser.new_context(viewport={"width": 390, "height": 844}, locale="sl-SI")
        page = await context.new_page()
        mine = f"{base}/events/prijava/{registration_token(settings, marija['id'])}"
        await page.goto(mine)
        assert await page.locator("h1").inner_text() == "Prijava je potrjena"
        await page.get_by_role("button", name="Prekliči prijavo").click()

        assert await page.locator("h1").inner_text() == "Ali res želite preklicati prijavo?"
        follows = await page.locator("#posledice").inner_text()
        assert "Mesto dobi prvi na čakalni listi (na njej je 1 oseba)" in follows
        assert await page.get_by_role("link", name="Ne, nazaj").get_attribute("href") == mine.removeprefix(base)
        assert await axe_serious_violations(page) == []
        assert (await _statuses(app, event_id))["Marija Kovač"] == "confirmed"  # asking changed nothing
        yes = page.get_by_role("button", name="Da, prekliči prijavo")
        box = await yes.bounding_box()
        assert box is not None and box["height"] >= 44 and box["x"] + box["width"] <= 390  # a tap target, on screen

        await yes.click()
        await page.wait_for_url(mine)
        assert await page.locator("h1").inner_text() == "Prijava je preklicana"
        assert "Hvala, da ste sprostili mesto" in await page.locator("[role=status]").inner_text()
        assert await _statuses(app, event_id) == {"Marija Kovač": "cancelled", "Janez Novak": "confirmed"}
        await context.close()
