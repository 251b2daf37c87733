"""Double opt-in on the public sign-up page: nothing but the confirmation is sent before
the resident confirms, by an emailed link (real SMTP) or an SMS code (real HTTP gateway)."""

from __future__ import annotations

import re

import httpx
import pytest
from conftest import axe_serious_violations, make_settings, serve_app, wait_until
from sqlmodel import select
from staff_login import form_token

from services.notify import notices
from services.notify.app import create_app
from services.notify.models import Subscriber

pytestmark = pytest.mark.integration


@pytest.fixture
async def notify_app(tmp_path, amqp_url, database_url, smtp_server, sms_gateway):
    settings = make_settings(
        tmp_path, amqp_url, notify_database_url=database_url, **smtp_server.settings(), **sms_gateway.settings()
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


async def _status(app, **where) -> str | None:
    async with app.state.ctx.db.session() as s:
        (key, value), = where.items()
        row = (await s.exec(select(Subscriber.status).where(getattr(Subscriber, key) == value))).first()
    return row


async def test_email_sign_up_is_confirmed_by_link_before_anything_else_is_sent(notify_app, smtp_server):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(notify_app), base_url="http://t") as client:
        token = await form_token(client, "/subscribe")
        form = {"email": "nova@example.si", "ks": ["planina"], "topics": ["general"], "channels": ["email"], "consent": "yes"}
        answer = await client.post("/subscribe", data={**form, "csrf_token": token})
        assert answer.status_code == 200 and "Skoraj končano" in answer.text
        assert await _status(notify_app, email="nova@example.si") == "pending"

        # A notice for Planina before confirmation: the pending resident gets nothing.
        async with notify_app.state.ctx.db.session() as session:
            from services.notify.models import NoticeDraft

            await notices.record_notice(
                session,
                notify_app.state.ctx.settings,
                NoticeDraft(source="/t", source_id="1", title="Obvestilo", body="Besedilo", ks=["planina"], channels=["email"]),
            )
            await session.commit()

        [mail] = await smtp_server.wait_for(1)
        assert mail.subject.startswith("Potrdite prijavo")
        assert mail.message["List-Unsubscribe"] is None  # a personal message, not a notice
        link = re.search(r"http://127\.0\.0\.1:8004(/subscribe/confirm/\S+)", mail.part("text/plain"))[1]

        forged = await client.get(link[:-4] + "AAAA")
        assert forged.status_code == 400
        assert await _status(notify_app, email="nova@example.si") == "pending"
        done = await client.get(link)
        assert done.status_code == 200 and "Prijava je potrjena" in done.text
        assert await _status(notify_app, email="nova@example.si") == "active"
    assert len(smtp_server.messages) == 1  # the earlier notice was not sent after confirmation either


async def test_sms_sign_up_is_confirmed_by_a_six_digit_code(notify_app, sms_gateway):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(notify_app), base_url="http://t") as client:
        token = await form_token(client, "/subscribe")
        form = {"phone": "041 222 333", "ks": ["*"], "topics": ["safety"], "channels": ["sms"], "consent": "yes"}
        answer = await client.post("/subscribe", data={**form, "csrf_token": token})
        assert answer.status_code == 303
        code_page = answer.headers["location"]
        [sms] = await sms_gateway.wait_for(1)
        assert sms.json["to"] == "+38641222333"
        code = re.search(r"\b(\d{6})\b", sms.json["text"])[1]
        wrong = "000000" if code != "000000" else "111111"
        bad = await client.post(code_page, data={"code": wrong, "csrf_token": token})
        assert bad.status_code == 422 and "Še 4 poskusi." in bad.text
        assert await _status(notify_app, phone="+38641222333") == "pending"
        good = await client.post(code_page, data={"code": code, "csrf_token": token})
        assert good.status_code == 200 and "Prijava je potrjena" in good.text
    assert await _status(notify_app, phone="+38641222333") == "active"


async def test_code_guessing_is_stopped_after_five_attempts(notify_app, sms_gateway):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(notify_app), base_url="http://t") as client:
        token = await form_token(client, "/subscribe")
        form = {"phone": "041 222 444", "ks": ["center"], "topics": ["general"], "channels": ["sms"], "consent": "yes"}
        code_page = (await client.post("/subscribe", data={**form, "csrf_token": token})).headers["location"]
        [sms] = await sms_gateway.wait_for(1)
        code = re.search(r"\b(\d{6})\b", sms.json["text"])[1]
        wrong = "000000" if code != "000000" else "111111"
        for _ in range(5):
            assert (await client.post(code_page, data={"code": wrong, "csrf_token": token})).status_code == 422
        blocked = await client.post(code_page, data={"code": code, "csrf_token": token})
        assert blocked.status_code == 429
    assert await _status(notify_app, phone="+38641222444") == "pending"


async def test_bad_form_is_refused_with_slovenian_reasons_and_nothing_stored(notify_app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(notify_app), base_url="http://t") as client:
        token = await form_token(client, "/subscribe")
        answer = await client.post(
            "/subscribe", data={"email": "ni-naslov", "ks": ["atlantis"], "topics": ["general"], "csrf_token": token}
        )
    assert answer.status_code == 422
    assert "Za prijavo potrebujemo vaše soglasje" in answer.text
    # each problem named at its field, in words a resident understands (issue 18)
    assert 'href="#email">Vpišite e-poštni naslov v obliki ime@primer.si.' in answer.text
    assert 'href="#ks-all">Izberite vsaj eno krajevno skupnost' in answer.text
    assert "value is not" not in answer.text and "Input should" not in answer.text
    async with notify_app.state.ctx.db.session() as s:
        assert (await s.exec(select(Subscriber))).all() == []


async def test_sign_up_page_in_chromium_is_accessible(tmp_path, amqp_url, browser):
    app = create_app(make_settings(tmp_path, amqp_url))
    async with serve_app(app) as base:
        page = await browser.new_page()
        await page.goto(f"{base}/subscribe")
        assert await page.locator("h1").inner_text() == "Prijava na obvestila krajevne skupnosti"
        assert await axe_serious_violations(page) == []
        await page.fill("#email", "brskalnik@example.si")
        await page.check("input[name=ks][value=huje]")
        await page.check("input[name=consent]")
        await page.click("button[type=submit]")
        # the form posts to `/subscribe#napake`, where a failed submit's error summary is
        await wait_until(lambda: page.url.endswith("/subscribe#napake"), message="the form posted")
        assert "Skoraj končano" in await page.content()
        assert await axe_serious_violations(page) == []


async def test_sign_up_page_in_english(tmp_path, amqp_url, browser):
    app = create_app(make_settings(tmp_path, amqp_url))
    async with serve_app(app) as base:
        page = await browser.new_page()
        await page.goto(f"{base}/subscribe?lang=en")
        assert await page.get_attribute("html", "lang") == "en"
        assert await page.locator("h1").inner_text() == "Sign up for notices of your local community"
        assert "I agree that Kranj ZA vse sends me notices" in await page.content()
        assert await axe_serious_violations(page) == []
        await page.click("text=Slovenščina")
        assert await page.locator("h1").inner_text() == "Prijava na obvestila krajevne skupnosti"
