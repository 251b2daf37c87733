"""Issue 19, items 1 and 2: a KS volunteer sends a notice through pages only.

The real notify app on the real broker (the test's vhost), a real SMTP server and a real SMS
gateway: a ks-staff member of Primskovo logs in (the login lands on the staff home
`/osebje`), writes a notice, previews it (SMS segments and the reach per channel), sends it
— the notice travels as `notify.notice.requested` from notify's own outbox with the staff
member as `source` — and the Primskovo subscribers get it on their consented channels while
a Huje subscriber gets nothing; the sent list counts per channel; the delivery log masks
contacts; failed deliveries are sent again. Refusals write nothing to the outbox; an
organiser cannot open the notices page; a scheduled notice goes out only at its time; the
compose form passes axe-core at 390 × 844 in Chromium.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import col, select, update
from staff_login import add_staff, browser_login, login, post_form
from support.browser import axe_serious_violations, serve_app
from support.settings import make_settings, wait_until

from services.notify import staff_notices
from services.notify.app import create_app
from services.notify.models import Delivery, Notice, ScheduledNotice
from services.notify.subscribers import SubscriberIn, add_subscriber
from shared import clock
from shared.i18n import TZ
from shared.models import OutboxMessage

pytestmark = pytest.mark.integration

VOLUNTEER = "tajnica@ks-primskovo.si"
ORGANISER = "drustvo@example.si"
ADMIN = "admin@kranj.si"
TITLE = "Čistilna akcija v soboto"
BODY = "Vabljeni vsi krajani na čistilno akcijo ob Savi. Zbor ob 9.00 pred domom KS; rokavice in vreče dobite tam."


def notice_form(**values: Any) -> dict[str, Any]:
    return {
        "ks": "primskovo",
        "title": TITLE,
        "body": BODY,
        "topic": "general",
        "channels": ["email", "sms", "noticeboard"],
        "urgency": "normal",
        "valid_until": "",
        "url": "",
        "send_at": "",
        "korak": "predogled",
        **values,
    }


async def seed(app: Any) -> None:
    ctx = app.state.ctx
    await add_staff(ctx.accounts, VOLUNTEER, "ks-staff", ["primskovo"])
    await add_staff(ctx.accounts, ORGANISER, "organiser", ["primskovo"])
    await add_staff(ctx.accounts, ADMIN, "admin")
    subscribers = [
        dict(email="ana.novak@example.si", phone="040 123 456", ks=["primskovo"], topics=["general"]),
        dict(email="bojan@example.si", ks=["primskovo"], topics=["general", "events"]),
        dict(email="dora@example.si", ks=["primskovo", "huje"], topics=["general"]),
        dict(phone="041 222 333", ks=["primskovo"], topics=["general"]),
        dict(email="huje@example.si", phone="031 444 555", ks=["huje"], topics=["general"]),  # other KS
        dict(email="komunala.samo@example.si", ks=["primskovo"], topics=["utilities"]),  # other topic
    ]
    for data in subscribers:
        await add_subscriber(ctx.db, SubscriberIn(**data), entered_by="staff:test")


@pytest.fixture
async def notify_app(tmp_path, amqp_url, database_url, smtp_server, sms_gateway, monkeypatch):
    """The real notify app on SQLite and on PostgreSQL (migration notify_0010 included)."""
    monkeypatch.setattr(staff_notices, "SCHEDULE_POLL_SECONDS", 0.2)
    settings = make_settings(
        tmp_path,
        amqp_url,
        notify_database_url=database_url,
        retry_base_seconds=0.05,
        **smtp_server.settings(),
        **sms_gateway.settings(),
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await seed(app)
        yield app


def client_of(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t")


async def notice_commands(app: Any) -> list[dict[str, Any]]:
    async with app.state.ctx.db.session() as session:
        rows = (
            await session.exec(select(OutboxMessage).where(OutboxMessage.routing_key == "notify.notice.requested"))
        ).all()
    return [json.loads(row.body) for row in rows]


async def test_a_volunteer_writes_previews_and_sends_a_notice_to_her_ks(notify_app, smtp_server, sms_gateway):
    started = time.monotonic()
    async with client_of(notify_app) as client:
        # Without a session: to the login, and back here afterwards.
        away = await client.get("/osebje", headers={"accept": "text/html"})
        assert away.status_code == 303 and away.headers["location"] == "/login?next=%2Fosebje"
        landed = await login(client, VOLUNTEER)
        assert landed.headers["location"] == "/osebje"  # no `next`: the staff home

        home = await client.get("/osebje")
        assert home.status_code == 200, home.text[:500]
        for link in (
            "/osebje/obvestila",
            "/rooms/osebje/prosnje",
            "/rooms/osebje/uporaba",
            "/events/osebje/",
            "/surveys/osebje",
        ):
            assert f'href="{link}"' in home.text, link
        assert "KS Primskovo" in home.text and 'aria-label="Osebje"' in home.text

        # The preview: every channel, the SMS's segments and encoding, the reach per channel.
        preview = await post_form(client, "/osebje/obvestila", None, notice_form())
        assert preview.status_code == 200, preview.text[:800]
        text = preview.text
        assert "E-pošta: 3 prejemniki" in text  # ana, bojan, dora (not the utilities-only one)
        assert "SMS: 2 prejemnika" in text  # ana and the phone-only subscriber
        assert "KS Primskovo" in text and TITLE in text
        assert ("GSM-7" in text) or ("UCS-2" in text)
        assert "del (segment)" in text or "dela (segmenta)" in text or "deli (segmenti)" in text
        assert "ocenjena cena" in text and "€" in text
        assert await notice_commands(notify_app) == []  # a preview sends nothing

        sent = await post_form(client, "/osebje/obvestila", None, notice_form(korak="zdaj"))
        assert sent.status_code == 303 and sent.headers["location"] == "/osebje/obvestila?done=poslano"
        [command] = await notice_commands(notify_app)
        assert command["source"] == f"/kranj/notify/staff/{VOLUNTEER}"
        assert command["data"]["ks"] == ["primskovo"] and command["data"]["urgency"] == "normal"

        mails = await smtp_server.wait_for(3, timeout=20)
        texts = await sms_gateway.wait_for(2, timeout=20)
        assert sorted(r for m in mails for r in m.rcpt_tos) == [
            "ana.novak@example.si",
            "bojan@example.si",
            "dora@example.si",
        ]
        assert sorted(s.json["to"] for s in texts) == ["+38640123456", "+38641222333"]
        assert all(TITLE in m.subject for m in mails)

        # The sent list: counts per channel from the deliveries.
        async def listed() -> str | None:
            page = await client.get("/osebje/obvestila")
            ok = "E-pošta: poslano 3, čaka 0, ni uspelo 0" in page.text and "SMS: poslano 2, čaka 0" in page.text
            return page.text if ok else None

        page = await wait_until(listed, timeout=15, message="the sent notice with its counts")
        assert TITLE in page
        async with notify_app.state.ctx.db.session() as session:
            notice = (await session.exec(select(Notice).where(Notice.title == TITLE))).one()
        assert notice.source == f"/kranj/notify/staff/{VOLUNTEER}" and notice.ks == ["primskovo"]

        # The delivery log: contacts masked. One delivery fails; "resend the failed" sends it again.
        log_page = await client.get(f"/osebje/obvestila/{notice.id}")
        assert log_page.status_code == 200
        assert "ana.novak@example.si" not in log_page.text and "+38640123456" not in log_page.text
        async with notify_app.state.ctx.db.session() as session:
            await session.exec(  # type: ignore[call-overload]
                update(Delivery)
                .where(col(Delivery.notice_id) == notice.id, col(Delivery.address) == "bojan@example.si")
                .values(status="failed-permanent", last_error="550 mailbox bojan@example.si unavailable")
            )
            await session.commit()
        failed_log = await client.get(f"/osebje/obvestila/{notice.id}")
        assert "Ponovno pošlji neuspele (1)" in failed_log.text
        assert "bojan@example.si" not in failed_log.text  # the error's address is masked too
        resent = await post_form(client, f"/osebje/obvestila/{notice.id}", f"/osebje/obvestila/{notice.id}/ponovno", {})
        assert resent.status_code == 303 and resent.headers["location"].endswith("?ponovno=1")
        again = await smtp_server.wait_for(4, timeout=20)
        assert again[3].rcpt_tos == ["bojan@example.si"]

        home = await client.get("/osebje")
        assert TITLE in home.text  # this week's notices

    # Nobody outside Primskovo heard of it.
    await asyncio.sleep(0.5)
    assert all("huje@example.si" not in m.rcpt_tos for m in smtp_server.messages)
    assert all(s.json["to"] != "+38631444555" for s in sms_gateway.requests)
    print(f"volunteer journey: {time.monotonic() - started:.1f} s")


async def test_what_a_volunteer_or_organiser_may_not_do_writes_nothing(notify_app):
    async with client_of(notify_app) as client:
        await login(client, VOLUNTEER)
        urgent = await post_form(client, "/osebje/obvestila", None, notice_form(urgency="urgent", korak="zdaj"))
        assert urgent.status_code == 403, urgent.text[:300]
        other = await post_form(client, "/osebje/obvestila", None, notice_form(ks="huje", korak="zdaj"))
        assert other.status_code == 403
        city = await post_form(client, "/osebje/obvestila", None, notice_form(ks="*", korak="zdaj"))
        assert city.status_code == 403
        page = await client.get("/osebje/obvestila")
        assert 'value="urgent"' not in page.text and 'value="huje"' not in page.text
        # A form error, not a send: nothing written either.
        empty = await post_form(client, "/osebje/obvestila", None, notice_form(title="", korak="zdaj"))
        assert empty.status_code == 422 and "Vpišite naslov obvestila" in empty.text
        assert "<title>Napaka: Obvestila · Kranj ZA vse</title>" in empty.text  # "Napaka:" once
    assert await notice_commands(notify_app) == []

    async with client_of(notify_app) as organiser:
        await login(organiser, ORGANISER)
        assert (await organiser.get("/osebje")).status_code == 200  # the home, with their tasks only
        refused = await organiser.get("/osebje/obvestila", headers={"accept": "text/html"})
        assert refused.status_code == 403
        assert 'href="/osebje/obvestila"' not in (await organiser.get("/osebje")).text

    async with client_of(notify_app) as admin:  # the city's admin: urgent and city-wide
        await login(admin, ADMIN)
        page = await admin.get("/osebje/obvestila")
        assert 'value="urgent"' in page.text and 'value="*"' in page.text
        sent = await post_form(admin, "/osebje/obvestila", None, notice_form(ks="*", urgency="urgent", korak="zdaj"))
        assert sent.status_code == 303
    [command] = await notice_commands(notify_app)
    assert command["data"]["ks"] == ["*"] and command["data"]["urgency"] == "urgent"
    # notify's own user carries that right on the bus: the notice is recorded, not dead-lettered.
    await wait_until(lambda: _notice_titled(notify_app, TITLE), timeout=15, message="the city-wide notice")


async def _notice_titled(app: Any, title: str) -> bool:
    async with app.state.ctx.db.session() as session:
        return (await session.exec(select(Notice).where(Notice.title == title))).first() is not None


async def test_a_scheduled_notice_goes_out_only_at_its_time(notify_app, smtp_server):
    send_at = (clock.now() + timedelta(seconds=4)).replace(microsecond=0)  # the form has whole seconds
    async with client_of(notify_app) as client:
        await login(client, VOLUNTEER)
        local = send_at.astimezone(TZ).strftime("%Y-%m-%dT%H:%M:%S")
        form = notice_form(channels=["email"], send_at=local)
        preview = await post_form(client, "/osebje/obvestila", None, form)
        assert "Pošlji ob izbranem času" in preview.text
        scheduled = await post_form(client, "/osebje/obvestila", None, {**form, "korak": "nacrtuj"})
        assert scheduled.status_code == 303 and scheduled.headers["location"].endswith("done=nacrtovano")
        page = await client.get("/osebje/obvestila")
        assert "Načrtovana obvestila" in page.text and TITLE in page.text
    await asyncio.sleep(1.0)
    assert await notice_commands(notify_app) == [] and smtp_server.messages == []
    mails = await smtp_server.wait_for(3, timeout=20)
    assert clock.now() >= send_at
    assert {r for m in mails for r in m.rcpt_tos} == {"ana.novak@example.si", "bojan@example.si", "dora@example.si"}
    [command] = await notice_commands(notify_app)
    async with notify_app.state.ctx.db.session() as session:
        row = (await session.exec(select(ScheduledNotice))).one()
    assert row.sent_at is not None and command["id"] == row.id
    assert await staff_notices.release_due(notify_app.state.ctx.db) == 0  # once only

    # A scheduled notice cancelled before its time is never sent.
    async with client_of(notify_app) as client:
        await login(client, VOLUNTEER)
        later = (clock.now() + timedelta(days=2)).astimezone(TZ).strftime("%Y-%m-%dT%H:%M")
        form = notice_form(title="Preklicano", channels=["email"], send_at=later, korak="nacrtuj")
        assert (await post_form(client, "/osebje/obvestila", None, form)).status_code == 303
        async with notify_app.state.ctx.db.session() as session:
            pending = (await session.exec(select(ScheduledNotice).where(ScheduledNotice.title == "Preklicano"))).one()
        page = "/osebje/obvestila"
        cancelled = await post_form(client, page, f"/osebje/obvestila/nacrtovana/{pending.id}/preklic", {})
        assert cancelled.status_code == 303 and cancelled.headers["location"].endswith("done=preklicano")
        assert "Preklicano" not in (await client.get(page)).text
    with clock.frozen(clock.now() + timedelta(days=3)):
        assert await staff_notices.release_due(notify_app.state.ctx.db) == 0


async def test_compose_form_on_a_phone_passes_axe(tmp_path, amqp_url, browser):
    settings = make_settings(tmp_path, amqp_url)
    app = create_app(settings)
    async with serve_app(app) as base:
        await add_staff(app.state.ctx.accounts, VOLUNTEER, "ks-staff", ["primskovo"])
        context = await browser.new_context(viewport={"width": 390, "height": 844}, locale="sl-SI")
        page = await context.new_page()
        await page.goto(f"{base}/osebje")
        assert "/login" in page.url
        await browser_login(page, base, VOLUNTEER)
        await page.goto(f"{base}/osebje/obvestila")
        await page.get_by_label("Naslov").fill(TITLE)
        assert await axe_serious_violations(page) == []
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width} px wide on a 390 px phone"
        await page.get_by_label("Besedilo").fill(BODY)
        await page.get_by_role("button", name="Predogled").click()
        await page.wait_for_load_state()
        assert await page.get_by_role("heading", name="Predogled obvestila").count() == 1
        assert await axe_serious_violations(page) == []
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the preview is {width} px wide on a 390 px phone (long links must wrap)"
        await context.close()
