"""Messages whose actions work (issue 18, section 5), through the real path: the sign-up
form and the event registration of the running services, the outbox, RabbitMQ, notify's
sender and a real SMTP server.

- each HTML email has one button for its one action — a table-based "bulletproof" button
  whose link is the action's — and the text part carries the same link in full; the HTML
  shows no raw address (every link's visible text is words or a short host);
- the sign-up confirmation carries its confirm link, and following it confirms;
- the registration confirmation and the reminder carry "Dodaj v koledar": the event's
  .ics, which the events service answers as text/calendar; the button (the cancel link)
  leads to the registration's own signed page;
- rendered in Chromium at 390 × 844, no email scrolls sideways.
"""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from staff_login import form_token
from support.settings import TEST_ADMIN_TOKEN, make_settings, wait_until
from support.times import local_day

from services.events import reminders
from services.events.app import create_app as create_events
from services.notify.app import create_app as create_notify

pytestmark = pytest.mark.integration
ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
PHONE = {"viewport": {"width": 390, "height": 844}}
URL_TEXT = re.compile(r"https?://|www\.|/[A-Za-z0-9_-]{12,}")


class _Html(HTMLParser):
    """The links of an email (href, visible text), the buttons' links, and all visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self.buttons: list[str] = []
        self.text: list[str] = []
        self._href: str | None = None
        self._label: list[str] = []
        self._in_button_cell = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "td" and values.get("bgcolor"):
            self._in_button_cell += 1
        if tag == "a":
            self._href, self._label = values.get("href") or "", []
            if self._in_button_cell:
                self.buttons.append(self._href)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append((self._href, "".join(self._label).strip()))
            self._href = None
        if tag == "td" and self._in_button_cell:
            self._in_button_cell -= 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._href is not None:
            self._label.append(data)


def _parsed(html: str) -> _Html:
    parsed = _Html()
    parsed.feed(html)
    return parsed


def _one_button(html: str) -> tuple[str, _Html]:
    parsed = _parsed(html)
    assert len(parsed.buttons) == 1, parsed.buttons
    shown = " ".join(parsed.text)
    assert not URL_TEXT.search(shown.replace("(datoteka .ics)", "")), shown  # no raw address anywhere
    return parsed.buttons[0], parsed


async def _fits_a_phone(browser: Any, html: str) -> None:
    context = await browser.new_context(**PHONE)
    page = await context.new_page()
    await page.set_content(html)
    width = await page.evaluate("() => document.documentElement.scrollWidth")
    box = await page.locator("td[bgcolor] a").bounding_box()
    await context.close()
    assert width <= 390, f"the email scrolls sideways on a phone: {width} px"
    assert box is not None and box["x"] + box["width"] <= 390 and box["height"] >= 40, box  # a real button


async def test_sign_up_and_registration_emails_carry_working_buttons(tmp_path, amqp_url, smtp_server, browser):
    settings = make_settings(tmp_path, amqp_url, **smtp_server.settings())
    events, notify = create_events(settings), create_notify(settings)
    async with notify.router.lifespan_context(notify), events.router.lifespan_context(events):
        notify_client = httpx.AsyncClient(transport=httpx.ASGITransport(notify), base_url="http://notify.test")
        events_client = httpx.AsyncClient(transport=httpx.ASGITransport(events), base_url="http://events.test")
        async with notify_client, events_client:
            # --- the sign-up confirmation: its confirm link, a button and in the text -------
            token = await form_token(notify_client, "/subscribe")
            form = {"email": "nova@example.si", "ks": ["planina"], "topics": ["general"], "channels": ["email"],
                    "consent": "yes", "csrf_token": token}  # fmt: skip
            assert (await notify_client.post("/subscribe", data=form)).status_code == 200
            [mail] = await smtp_server.wait_for(1, timeout=20)
            assert mail.subject.startswith("Potrdite prijavo")
            button, parsed = _one_button(mail.part("text/html") or "")
            assert "/subscribe/confirm/" in button
            assert button.startswith(settings.public_base("notify"))
            assert f"Potrdite prijavo: {button}" in (mail.part("text/plain") or "")
            assert any(label == "Potrdite prijavo" for href, label in parsed.links if href == button)
            await _fits_a_phone(browser, mail.part("text/html") or "")
            confirmed = await notify_client.get(button.removeprefix(settings.public_base("notify")))
            assert confirmed.status_code == 200 and "Prijava je potrjena" in confirmed.text

            # --- a registration through the events service: confirmation with a calendar ---
            starts = local_day(6, hour=17)
            created = await events_client.post(
                "/api/v1/events",
                headers=ADMIN,
                json={"ks": "primskovo", "title": "Pohod na Šmarjetno goro", "venue": "Dom KS Primskovo",
                      "starts_at": starts.isoformat(), "ends_at": (starts + timedelta(hours=3)).isoformat()},
            )  # fmt: skip
            assert created.status_code == 201, created.text
            event_id = created.json()["id"]
            assert (await events_client.post(f"/api/v1/events/{event_id}/publish", headers=ADMIN)).status_code == 200
            registered = await events_client.post(
                f"/api/v1/events/{event_id}/registrations", json={"name": "Ana Kovač", "email": "ana@example.si"}
            )
            assert registered.status_code == 201, registered.text

            def arrived(prefix: str) -> list[Any]:
                return [m for m in smtp_server.messages if m.subject.startswith(prefix)]

            await wait_until(lambda: arrived("Prijava potrjena"), timeout=30, message="the registration email")
            [confirmation] = arrived("Prijava potrjena")
            ics = f"{settings.public_base('events')}/events/{event_id}/event.ics"
            cancel_url = registered.json()["cancel_url"]
            await _assert_event_email(confirmation, ics, cancel_url, notify_client, events_client, settings)
            await _fits_a_phone(browser, confirmation.part("text/html") or "")

            # --- the reminder the day before: the same calendar link and button -------------
            assert await reminders.send_reminders(events.state.ctx.db, settings, now=starts - timedelta(hours=20)) == 1
            await wait_until(lambda: arrived("Opomnik"), timeout=30, message="the reminder email")
            [reminder] = arrived("Opomnik")
            await _assert_event_email(reminder, ics, cancel_url, notify_client, events_client, settings)
            await _fits_a_phone(browser, reminder.part("text/html") or "")


async def _assert_event_email(
    mail: Any, ics: str, cancel_url: str, notify_client: Any, events_client: Any, settings: Any
) -> None:
    html, text = mail.part("text/html") or "", mail.part("text/plain") or ""
    button, parsed = _one_button(html)
    # the button is the registration's action: a short signed link on to its own page
    assert button.startswith(settings.public_base("notify") + "/k/"), button
    assert f": {button}" in text  # the same link, in full, in the text part
    followed = await notify_client.get(button.removeprefix(settings.public_base("notify")))
    assert followed.status_code == 303 and followed.headers["location"] == cancel_url
    # "Dodaj v koledar": the event's file, in both parts, answered as iCalendar
    assert (ics, "Dodaj v koledar") in parsed.links
    assert f"Dodaj v koledar: {ics}" in text
    answer = await events_client.get(ics.removeprefix(settings.public_base("events")))
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/calendar")
    assert "BEGIN:VEVENT" in answer.text and "Šmarjetno" in answer.text
