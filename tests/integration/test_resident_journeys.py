"""The resident's journeys of issue 18 ("One site", Done when), end to end: a resident on a
phone (real Chromium, 390 × 844), keyboard only in the forms, THROUGH THE LOCAL FRONT DOOR
in front of the four real services on the real broker, the emails at a real SMTP server
and the SMS at a real SMS gateway, every link in them pointing at the front door
(KRANJ_PUBLIC_URL). axe-core finds nothing serious on any page visited.

1. what is on this week in my KS: the KS picked once, the week's days typed in; opened
   again without a choice, the list is still my KS's;
2. register for an event, and cancel through the button of the confirmation email;
3. request a room for Saturday (the day, the start, the duration);
4. answer a survey;
5. sign up for SMS only and confirm with the 6-digit code the SMS brings;
6. unsubscribe from a notice email in one click (its unsubscribe link, one button);
7. manage my notices from a notice email's link: change, save, and find it kept.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import aio_pika
import httpx
import pytest
import pytest_asyncio
from sqlmodel import select
from support.browser import CHROMIUM, CHROMIUM_ARGS, axe_serious_violations
from support.rabbit import VhostPool, vhost_url
from support.resident import active, front_door, press_and_load, tab_to, tab_to_link
from support.settings import TEST_ADMIN_TOKEN, free_port, make_settings, wait_until
from support.sms import SmsGateway
from support.smtp import ReceivedMail, SmtpSink
from support.times import local_day
from test_room_request_phone import _choose, _tab_to_first_field

from services.booking import domain as booking_domain
from services.booking.app import create_app as create_booking
from services.booking.models import Booking
from services.events import service as events_service
from services.events.app import create_app as create_events
from services.events.schemas import EventIn
from services.notify import subscribers
from services.notify.app import create_app as create_notify
from services.surveys.app import create_app as create_surveys
from shared import clock
from shared.auth import Staff

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

PHONE = {"viewport": {"width": 390, "height": 844}, "locale": "sl-SI"}
ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
LINK = re.compile(r"https?://\S+")


@dataclass
class System:
    base: str
    apps: dict[str, Any]
    smtp: SmtpSink
    sms: SmsGateway
    amqp_url: str
    events: dict[str, str]
    survey: str
    readers: dict[str, str]  # email -> subscriber id

    def mails(self, to: str, subject: str) -> list[ReceivedMail]:
        return [m for m in self.smtp.messages if to in m.rcpt_tos and m.subject.startswith(subject)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def system(tmp_path_factory: pytest.TempPathFactory, _vhost_pool: VhostPool) -> AsyncIterator[System]:
    vhost = _vhost_pool.take()
    smtp, sms = SmtpSink(), SmsGateway()
    smtp.start()
    sms.start()
    port = free_port()
    settings = make_settings(
        tmp_path_factory.mktemp("journeys"),
        vhost_url(vhost),
        public_url=f"http://127.0.0.1:{port}",  # every link in a message leads through the door
        **smtp.settings(),
        **sms.settings(),
    )
    apps = {
        "events": create_events(settings),
        "booking": create_booking(settings),
        "surveys": create_surveys(settings),
        "notify": create_notify(settings),
    }
    try:
        async with front_door(apps, port) as base:
            assert base == settings.public_url
            events_db = apps["events"].state.ctx.db
            admin = Staff("t", "admin", ("*",))
            events = {}
            for key, ks, title, start in (
                ("this-week", "huje", "Medgeneracijsko druženje", local_day(2, hour=18)),
                ("later", "huje", "Jesenski pohod na Jošt", local_day(12, hour=9)),
                ("elsewhere", "primskovo", "Vaje pevskega zbora", local_day(2, hour=17)),
            ):
                made = await events_service.create_event(
                    events_db,
                    admin,
                    EventIn(ks=ks, title=title, starts_at=start, ends_at=start + timedelta(hours=2),
                            venue="Dom krajanov", capacity=20),
                )  # fmt: skip
                await events_service.publish_event(events_db, settings, made.id)
                events[key] = made.id
            async with httpx.AsyncClient(base_url=base, headers=ADMIN) as api:
                survey = (await api.post("/api/v1/surveys", json={"template": "needs-assessment", "ks": "huje"})).json()
                assert (await api.post(f"/api/v1/surveys/{survey['id']}/open")).status_code == 200
            readers = {}
            for address in ("mojca@example.si", "peter@example.si"):
                sub = await subscribers.add_subscriber(
                    apps["notify"].state.ctx.db,
                    subscribers.SubscriberIn(email=address, ks=["huje"], topics=["general"], language="sl"),
                )
                readers[address] = sub.id
            yield System(base, apps, smtp, sms, vhost_url(vhost), events, survey["id"], readers)
    finally:
        sms.stop()
        smtp.stop()
        _vhost_pool.give_back(vhost)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chromium() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


@contextlib.asynccontextmanager
async def _phone(chromium: Any) -> AsyncIterator[Any]:
    context = await chromium.new_context(**PHONE)
    try:
        yield await context.new_page()
    finally:
        await context.close()


async def _fine(page: Any, h1: str | None = None) -> None:
    """The page as a resident should find it: its heading, no error, nothing wider than the
    phone, nothing axe-core calls serious."""
    if h1 is not None:
        shown = (await page.locator("h1").inner_text()).strip()
        assert shown == h1, (page.url, await page.locator("main").inner_text())
    assert not (await page.title()).startswith("Napaka"), page.url
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390, page.url
    assert await axe_serious_violations(page) == [], page.url


async def _tab_to_button(page: Any, name: str) -> None:
    button = page.get_by_role("button", name=name, exact=True)
    for _ in range(60):
        await page.keyboard.press("Tab")
        if await button.evaluate("b => b === document.activeElement"):
            return
    raise AssertionError(f"the button {name!r} never got the focus by keyboard")


def _link(mail: ReceivedMail, part: str) -> str:
    """The one link of the text part that contains `part`."""
    [found] = [u for u in LINK.findall(mail.part("text/plain") or "") if part in u]
    return found


async def _mail(system: System, to: str, subject: str) -> ReceivedMail:
    await wait_until(lambda: system.mails(to, subject), timeout=30, message=f"»{subject}« to {to}")
    [mail] = system.mails(to, subject)
    return mail


# ======================================================================================
# 1. What is on this week in my KS
# ======================================================================================
async def test_what_is_on_this_week_in_my_ks(system: System, chromium: Any) -> None:
    titles = "article.card h2"
    async with _phone(chromium) as page:
        await page.goto(f"{system.base}/events")
        await _fine(page, "Kaj se dogaja")
        assert await page.locator(titles).count() == 3
        await tab_to(page, "ks")
        for _ in range(40):  # the closed select: arrows move its choice
            if await page.locator("#ks").input_value() == "huje":
                break
            await page.keyboard.press("ArrowDown")
        await _tab_to_button(page, "Prikaži")
        await press_and_load(page)
        await _fine(page, "Kaj se dogaja v KS Huje")
        # "Naslednjih 7 dni": one tap, no date fields (a phone's may ask month/day/year)
        today = clock.local_now().date()
        week = f"/events?ks=huje&od={today.isoformat()}&do={(today + timedelta(days=6)).isoformat()}"
        await tab_to_link(page, week, back=True)  # the choices are above the form
        await press_and_load(page)
        assert page.url.endswith(week), page.url
        await _fine(page, "Kaj se dogaja v KS Huje")
        assert await page.locator("nav.when a[aria-current]").all_inner_texts() == ["Naslednjih 7 dni"]
        assert await page.locator(titles).all_inner_texts() == ["Medgeneracijsko druženje"]
        assert await page.locator("p[role=status]").inner_text() == "1 dogodek"

        # Another day, no choice made: the list is still of my KS, everything coming there.
        await page.goto(f"{system.base}/events")
        await _fine(page, "Kaj se dogaja v KS Huje")
        assert await page.locator("#ks").input_value() == "huje"
        assert await page.locator(titles).all_inner_texts() == ["Medgeneracijsko druženje", "Jesenski pohod na Jošt"]


# ======================================================================================
# 2. Register for an event, and cancel from the confirmation email
# ======================================================================================
async def test_register_and_cancel_from_the_confirmation_email(system: System, chromium: Any) -> None:
    event = system.events["this-week"]
    async with _phone(chromium) as page:
        await page.goto(f"{system.base}/events/{event}")
        await _fine(page, "Medgeneracijsko druženje")
        await tab_to(page, "name")
        await page.keyboard.type("Ana Novak")
        await tab_to(page, "email")
        await page.keyboard.type("ana.novak@example.si")
        await press_and_load(page)
        assert "/events/prijava/" in page.url
        await _fine(page, "Prijava je potrjena")

        mail = await _mail(system, "ana.novak@example.si", "Prijava potrjena")
        cancel = _link(mail, "/k/")  # the email's one button: a short link through the front door
        assert cancel.startswith(system.base + "/k/"), cancel
        await page.goto(cancel)  # straight to the question: what follows, yes or back
        assert re.search(r"/events/prijava/[^/?]+/preklic$", page.url), page.url
        await _fine(page, "Ali res želite preklicati prijavo?")  # asked once
        await _tab_to_button(page, "Da, prekliči prijavo")
        await press_and_load(page)
        await _fine(page, "Prijava je preklicana")
        await _mail(system, "ana.novak@example.si", "Prijava odjavljena")


# ======================================================================================
# 3. Request a room for Saturday
# ======================================================================================
def _saturday() -> date:
    """The first Saturday at least two days ahead that is no public holiday."""
    day = clock.local_now().date() + timedelta(days=2)
    while day.weekday() != 5 or booking_domain.holiday_name(day):
        day += timedelta(days=1)
    return day


async def test_request_a_room_for_saturday(system: System, chromium: Any) -> None:
    saturday = _saturday()
    async with _phone(chromium) as page:
        await page.goto(f"{system.base}/rooms?ks=huje")
        await _fine(page, "Prostori KS Huje")
        await tab_to_link(page, "/rooms/ks-huje")
        await press_and_load(page)
        radio = page.locator(f"input[name=datum][value='{saturday.isoformat()}']")
        while not await radio.count():  # a Friday: Saturday is beyond the days shown
            later = await page.locator("a:has-text('Naslednji dnevi')").get_attribute("href")
            await tab_to_link(page, later)
            await press_and_load(page)
        await _fine(page)
        await _tab_to_first_field(page)
        await _choose(page, saturday.isoformat(), "10", "2 uri")
        for field, text in (("purpose", "Vaje pevskega zbora"), ("category", None), ("group_kind", None),
                            ("attendees", "12"), ("name", "Mojca Novak"), ("email", "mojca.novak@example.si")):  # fmt: skip
            await page.keyboard.press("Tab")
            assert (await active(page))["id"] == field
            if text:
                await page.keyboard.type(text)
        await press_and_load(page)
        await _fine(page, "Prošnja je oddana")
    async with system.apps["booking"].state.ctx.db.session() as session:
        [booking] = (await session.exec(select(Booking).where(Booking.room_id == "ks-huje"))).all()
    starts = booking.starts_at.astimezone(clock.TZ)
    assert (starts.date(), starts.hour, starts.minute) == (saturday, 10, 0)
    assert booking.ends_at - booking.starts_at == timedelta(hours=2)
    assert booking.status == "requested"


# ======================================================================================
# 4. Answer a survey
# ======================================================================================
async def test_answer_a_survey(system: System, chromium: Any) -> None:
    async with _phone(chromium) as page:
        await page.goto(f"{system.base}/surveys")
        await _fine(page)
        await tab_to_link(page, f"/surveys/{system.survey}")
        await press_and_load(page)
        await _fine(page)
        await tab_to(page, "q-need-yes")
        await page.keyboard.press("Space")
        await tab_to(page, "q-what-youth")
        await page.keyboard.press("Space")
        await tab_to(page, "q-existing-input")
        await page.keyboard.type("Pevski zbor išče prostor za vaje.")
        await tab_to(page, "age-1")  # a radio group: Tab into it, the arrow to the band
        await page.keyboard.press("ArrowDown")
        assert (await active(page))["id"] == "age-2" and await page.locator("#age-2").is_checked()
        await press_and_load(page, locator=page.get_by_role("button", name="Oddaj anketo"))
        await _fine(page, "Hvala za vaše odgovore!")
    async with httpx.AsyncClient(base_url=system.base, headers=ADMIN) as api:
        results = (await api.get(f"/api/v1/surveys/{system.survey}/results")).json()
    assert results["response_count"] == 1
    assert results["by_channel"]["web"] == 1


# ======================================================================================
# 5. Sign up for SMS only and confirm with the code
# ======================================================================================
async def test_subscribe_sms_only_and_confirm_with_the_code(system: System, chromium: Any) -> None:
    async with _phone(chromium) as page:
        await page.goto(f"{system.base}/subscribe")
        await _fine(page)
        await tab_to(page, "phone")
        await page.keyboard.type("041 222 333")
        await tab_to(page, "ks-huje")
        await page.keyboard.press("Space")
        await tab_to(page, "consent")
        await page.keyboard.press("Space")
        await press_and_load(page)
        assert "/subscribe/code/" in page.url, page.url
        await _fine(page)

        await wait_until(lambda: [r for r in system.sms.accepted if r.json["to"] == "+38641222333"], timeout=30,
                         message="the SMS with the code")  # fmt: skip
        [sms] = [r for r in system.sms.accepted if r.json["to"] == "+38641222333"]
        [code] = re.findall(r"\b\d{6}\b", sms.json["text"])
        await tab_to(page, "code")
        await page.keyboard.type(code)
        await press_and_load(page)
        await _fine(page, "Prijava je potrjena")
    [row] = [s for s in await _subscribers(system) if s.phone == "+38641222333"]
    sub = await subscribers.get_subscription(system.apps["notify"].state.ctx.db, row.id)
    assert sub is not None and (sub.status, sub.channels, sub.ks) == ("active", ["sms"], ["huje"])


async def _subscribers(system: System) -> list[Any]:
    from services.notify.models import Subscriber

    async with system.apps["notify"].state.ctx.db.session() as session:
        return list((await session.exec(select(Subscriber))).all())


# ======================================================================================
# 6 and 7. From a notice email: unsubscribe in one click; manage the notices
# ======================================================================================
async def _notice_emails(system: System) -> dict[str, ReceivedMail]:
    title = "Zapora Kebetove ulice"
    connection = await aio_pika.connect(system.amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange("kranj")
        envelope = {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "/ks-huje",
            "type": "si.kranj.notify.notice.requested.v1",
            "time": clock.now().isoformat(),
            "data": {"ks": ["huje"], "topic": "general", "title": title, "body": "V soboto bo ulica zaprta."},
        }
        await exchange.publish(
            aio_pika.Message(json.dumps(envelope, ensure_ascii=False).encode()), routing_key="notify.notice.requested"
        )
    return {to: await _mail(system, to, title) for to in system.readers}


async def test_unsubscribe_in_one_click_and_manage_from_a_notice_email(system: System, chromium: Any) -> None:
    mails = await _notice_emails(system)
    notify_db = system.apps["notify"].state.ctx.db

    # --- 6. Peter leaves from the email: its link, one button ----------------------------
    leave = _link(mails["peter@example.si"], "/unsubscribe/")
    assert leave.startswith(system.base + "/unsubscribe/"), leave
    async with _phone(chromium) as page:
        await page.goto(leave)
        await _fine(page, "Odjava od e-poštnih obvestil")
        await press_and_load(page, locator=page.get_by_role("button", name="Da, odjavi me"))
        await _fine(page, "Odjava je uspela")
    peter = await subscribers.get_subscription(notify_db, system.readers["peter@example.si"])
    assert peter is not None and "email" not in peter.channels

    # --- 7. Mojca follows her KS and Jošt too, by the manage link ------------------------
    manage = _link(mails["mojca@example.si"], "/manage/")
    assert manage.startswith(system.base + "/manage/"), manage
    async with _phone(chromium) as page:
        await page.goto(manage)
        await _fine(page, "Moja obvestila")
        assert await page.locator("#ks-huje").is_checked() and not await page.locator("#ks-jost").is_checked()
        await tab_to(page, "ks-jost")
        await page.keyboard.press("Space")
        await press_and_load(page, locator=page.get_by_role("button", name="Shrani"))
        await _fine(page, "Moja obvestila")
        assert "Shranjeno." in await page.locator("p[role=status]").inner_text()
        await page.goto(manage)  # opened again: kept
        assert await page.locator("#ks-huje").is_checked() and await page.locator("#ks-jost").is_checked()
        assert await page.locator("#channel-email").is_checked()
    mojca = await subscribers.get_subscription(notify_db, system.readers["mojca@example.si"])
    assert mojca is not None and sorted(mojca.ks) == ["huje", "jost"] and mojca.channels == ["email"]
