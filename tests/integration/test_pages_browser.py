"""Residents' pages in real Chromium: they render in Slovenian and axe-core finds no
serious or critical WCAG 2.1 AA violations."""

from __future__ import annotations

import uuid

import pytest
from support.browser import axe_serious_violations, serve_app
from support.settings import make_settings

from services.events import service as events_service
from services.events.app import create_app as create_events
from services.events.schemas import EventIn
from services.notify.app import create_app as create_notify
from shared.auth import Staff
from shared.contracts import NOTICE_REQUESTED
from shared.models import utcnow

pytestmark = pytest.mark.integration


async def test_noticeboard_in_chromium_is_accessible(tmp_path, amqp_url, browser):
    from datetime import timedelta

    from services.notify import notices
    from services.notify.models import NoticeDraft

    app = create_notify(make_settings(tmp_path, amqp_url))
    async with serve_app(app) as base:
        ctx = app.state.ctx
        envelope = NOTICE_REQUESTED.envelope(
            {"title": "Izklop vode", "body": "Jutri med 8. in 12. uro.", "ks": ["primskovo"]}, source="/t"
        )
        async with ctx.db.session() as session:
            notice = NoticeDraft(
                source="/t",
                source_id=str(uuid.uuid4()),
                title="Izklop vode",
                body=envelope["data"]["body"],
                ks=["primskovo"],
                channels=["noticeboard"],
                valid_until=utcnow() + timedelta(days=1),
            )
            await notices.record_notice(session, ctx.settings, notice)
            await session.commit()
        page = await browser.new_page()
        await page.goto(f"{base}/noticeboard/primskovo")
        assert await page.locator("h1").inner_text() == "Oglasna deska KS Primskovo"
        assert await page.get_attribute("html", "lang") == "sl"
        assert "Izklop vode" in await page.locator("article h2").first.inner_text()
        assert await axe_serious_violations(page) == []
        await page.goto(f"{base}/noticeboard")
        assert await axe_serious_violations(page) == []


async def test_event_pages_in_chromium_are_accessible(tmp_path, amqp_url, browser):
    from datetime import timedelta

    app = create_events(make_settings(tmp_path, amqp_url))
    async with serve_app(app) as base:
        ctx = app.state.ctx
        start = utcnow() + timedelta(days=7)
        event = await events_service.create_event(
            ctx.db,
            Staff("t", "admin", ("*",)),
            EventIn(
                ks="huje",
                title="Medgeneracijsko druženje",
                starts_at=start,
                ends_at=start + timedelta(hours=2),
                venue="Medgeneracijski center Kranj, Cesta talcev 7",
            ),
        )
        await events_service.publish_event(ctx.db, ctx.settings, event.id)
        page = await browser.new_page()
        await page.goto(f"{base}/events?ks=huje")
        assert "Medgeneracijsko druženje" in await page.content()
        assert await axe_serious_violations(page) == []
        await page.click("text=Medgeneracijsko druženje")
        assert await page.locator("h1").inner_text() == "Medgeneracijsko druženje"
        assert await axe_serious_violations(page) == []


async def test_the_accessibility_check_does_catch_violations(browser):
    """The check above can fail: a page with a nameless form field and an image without
    alt text is reported."""
    page = await browser.new_page()
    await page.set_content('<html><body><img src="data:,"><input type="text"></body></html>')
    found = await axe_serious_violations(page)
    assert any(line.startswith("image-alt") for line in found)
    assert any(line.startswith("label") for line in found)
