"""The noticeboard as a channel: the city-wide Atom feed, the kiosk screen (real Chromium,
axe-core), the A4 PDF poster (WeasyPrint, read back with pypdf) and the weekly digest
(exactly once, even with two replicas racing; against SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import io
import re
import uuid
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta

import httpx
import pytest
from pypdf import PdfReader
from sqlmodel import col, select
from support.browser import axe_serious_violations, serve_app
from support.settings import make_settings

from services.notify import digest, notices, subscribers
from services.notify.app import create_app
from services.notify.models import Delivery, Notice, NoticeDraft
from services.notify.render import Renderer
from shared.db import Database
from shared.migrations import upgrade_async
from shared.models import utcnow

pytestmark = pytest.mark.integration

ATOM = "{http://www.w3.org/2005/Atom}"
NO_BROKER = "amqp://guest:guest@127.0.0.1:9/unused"  # these apps never start their bus


def notice(title: str, ks: list[str], **fields) -> NoticeDraft:
    return NoticeDraft(
        source="/test",
        source_id=str(uuid.uuid4()),
        title=title,
        body=fields.pop("body", f"{title}: podrobnosti."),
        ks=ks,
        channels=fields.pop("channels", ["noticeboard"]),
        **fields,
    )


def event(title: str, ks: str, starts_at: datetime, **fields) -> NoticeDraft:
    return notice(
        title,
        [ks],
        kind="event",
        topic="events",
        starts_at=starts_at,
        ends_at=starts_at + timedelta(hours=2),
        valid_until=starts_at + timedelta(hours=2),
        venue=fields.pop("venue", "Dom krajanov"),
        **fields,
    )


async def record(db: Database, settings, *drafts: NoticeDraft) -> None:
    async with db.session() as session:
        for n in drafts:
            await notices.record_notice(session, settings, n)
        await session.commit()


@pytest.fixture
async def notify_app(tmp_path):
    app = create_app(make_settings(tmp_path, NO_BROKER), start_bus=False)
    async with app.router.lifespan_context(app):
        yield app


def client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t")


async def test_city_wide_atom_feed_lists_every_ks(notify_app):
    ctx = notify_app.state.ctx
    water = notice("Izklop vode na Primskovem", ["primskovo"], topic="utilities")
    tea = notice("Čajanka v MCK", ["huje"])
    city = notice("Zapora ceste v središču mesta", ["*"])
    await record(ctx.db, ctx.settings, water, tea, city)
    async with ctx.db.session() as session:  # the times as stored (and read back) are the truth
        created = {n.id: n.created_at for n in (await session.exec(select(Notice))).all()}

    async with client(notify_app) as http:
        response = await http.get("/noticeboard/feed.atom")
        per_ks = await http.get("/noticeboard/primskovo/feed.atom")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/atom+xml")
    feed = ET.fromstring(response.content)
    assert feed.tag == f"{ATOM}feed"
    assert feed.findtext(f"{ATOM}id") == "http://127.0.0.1:8004/noticeboard"
    assert feed.findtext(f"{ATOM}title") == "Obvestila Mestne občine Kranj"
    assert feed.findtext(f"{ATOM}author/{ATOM}name") == "Mestna občina Kranj"
    assert feed.find(f"{ATOM}link[@rel='self']").get("href") == "http://127.0.0.1:8004/noticeboard/feed.atom"
    assert datetime.fromisoformat(feed.findtext(f"{ATOM}updated")) == max(created.values())

    entries = feed.findall(f"{ATOM}entry")
    assert [e.findtext(f"{ATOM}title") for e in entries] == [
        "Zapora ceste v središču mesta",
        "Čajanka v MCK",
        "Izklop vode na Primskovem",
    ]  # newest first
    for entry in entries:
        notice_id = entry.findtext(f"{ATOM}id").removeprefix("urn:uuid:")
        assert datetime.fromisoformat(entry.findtext(f"{ATOM}updated")) == created[notice_id]
        assert entry.find(f"{ATOM}link").get("href") == f"http://127.0.0.1:8004/noticeboard#n-{notice_id}"
    assert {c.get("term") for c in feed.iter(f"{ATOM}category")} == {"primskovo", "huje", "*"}

    assert per_ks.status_code == 200  # the per-KS feed still answers, with its KS's notices only
    titles = [e.findtext(f"{ATOM}title") for e in ET.fromstring(per_ks.content).findall(f"{ATOM}entry")]
    assert titles == ["Zapora ceste v središču mesta", "Izklop vode na Primskovem"]


async def test_kiosk_in_chromium_refreshes_and_is_accessible(tmp_path, browser):
    app = create_app(make_settings(tmp_path, NO_BROKER), start_bus=False)
    async with serve_app(app) as base:
        ctx = app.state.ctx
        soon = utcnow() + timedelta(days=2)
        await record(
            ctx.db,
            ctx.settings,
            event("Medgeneracijsko druženje", "huje", soon, venue="Medgeneracijski center Kranj, Cesta talcev 7"),
            notice("Uradne ure KS odpadejo", ["huje"], urgency="urgent"),
            notice("Obvestilo druge KS", ["planina"]),
        )
        page = await browser.new_page(viewport={"width": 1920, "height": 1080})
        await page.goto(f"{base}/noticeboard/huje/kiosk")
        assert await page.get_attribute("html", "lang") == "sl"
        assert await page.get_attribute('meta[http-equiv="refresh"]', "content") == "300"
        assert await page.locator("h1").inner_text() == "Oglasna deska KS Huje"
        assert await page.locator("header.site, nav").count() == 0  # no navigation chrome
        text = await page.locator("body").inner_text()
        assert "Medgeneracijsko druženje" in text and "Cesta talcev 7" in text
        assert "Uradne ure KS odpadejo" in text and "Obvestilo druge KS" not in text
        size = await page.locator("h3").first.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
        assert size >= 40  # readable across the room on a 1080p screen
        # axe-core reports every <meta refresh> under 20 hours as WCAG 2.2.1 (critical): a
        # wall screen must reload itself, so the page offers the way to turn it off that
        # 2.2.1 asks for; that one finding is expected, nothing else may be reported.
        found = await axe_serious_violations(page)
        assert [line for line in found if not line.startswith("meta-refresh ")] == []
        await page.get_by_role("link", name="Ustavi samodejno osveževanje").click()
        await page.wait_for_url("**/kiosk?refresh=off")
        assert await page.locator('meta[http-equiv="refresh"]').count() == 0
        assert await axe_serious_violations(page) == []

        await page.goto(f"{base}/noticeboard/huje")  # every card links to its poster
        link = page.get_by_role("link", name=re.compile(r"^Natisni plakat \(PDF\)\s?: Medgeneracijsko druženje$"))
        assert (await link.get_attribute("href", timeout=5000)).endswith("/poster.pdf")
        assert await axe_serious_violations(page) == []


def pdf_words(pdf: bytes) -> tuple[PdfReader, str, list[tuple[str, float]]]:
    reader = PdfReader(io.BytesIO(pdf))
    sizes: list[tuple[str, float]] = []

    def visit(text, cm, tm, font, size):
        if text.strip():
            sizes.append((text.strip(), abs(size * tm[3] * cm[3]) or size))

    text = reader.pages[0].extract_text(visitor_text=visit)
    return reader, " ".join(text.split()), sizes


async def test_poster_pdf_is_one_a4_page_with_title_ks_and_link(notify_app):
    ctx = notify_app.state.ctx
    start = datetime.fromisoformat("2026-12-03T17:00:00+00:00")
    tea = event("Medgeneracijsko druženje ob čaju", "huje", start, venue="Medgeneracijski center Kranj")
    tea.valid_until = None  # an event in the past of this test's clock would be off the board
    water = notice("Izklop vode", ["primskovo"], body="V četrtek med 8. in 12. uro ne bo vode. " * 80)
    personal = notice("Vaša rezervacija", ["primskovo"], kind="personal", on_noticeboard=False)
    await record(ctx.db, ctx.settings, tea, water, personal)

    async with client(notify_app) as http:
        response = await http.get(f"/noticeboard/notices/{tea.id}/poster.pdf")
        long_one = await http.get(f"/noticeboard/notices/{water.id}/poster.pdf")
        missing = await http.get(f"/noticeboard/notices/{uuid.uuid4()}/poster.pdf")
        private = await http.get(f"/noticeboard/notices/{personal.id}/poster.pdf")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == 'inline; filename="plakat-medgeneracijsko-druzenje-ob-caju.pdf"'
    reader, text, sizes = pdf_words(response.content)
    assert len(reader.pages) == 1
    box = reader.pages[0].mediabox
    assert abs(float(box.width) - 595) <= 1 and abs(float(box.height) - 842) <= 1
    assert "Medgeneracijsko druženje ob čaju" in text
    assert "KS Huje" in text
    assert "četrtek, 3. decembra 2026, 18.00–20.00" in text and "Medgeneracijski center Kranj" in text
    assert "Več na: 127.0.0.1:8004/noticeboard/huje" in text
    title_sizes = [size for word, size in sizes if word.startswith("Medgeneracijsko")]
    assert title_sizes and max(title_sizes) >= 48

    assert long_one.status_code == 200  # 3000 characters still make one page, title ≥ 48 pt
    reader, text, sizes = pdf_words(long_one.content)
    assert len(reader.pages) == 1 and "Izklop vode" in text and "KS Primskovo" in text
    assert max(size for word, size in sizes if word.startswith("Izklop")) >= 48

    assert missing.status_code == 404 and private.status_code == 404


@pytest.fixture
async def notify_db(tmp_path, database_url):
    settings = make_settings(tmp_path, NO_BROKER, notify_database_url=database_url)
    await upgrade_async("notify", database_url)
    db = Database(database_url)
    yield settings, db
    await db.dispose()


async def test_weekly_digest_is_made_once_for_digest_subscribers(notify_db):
    settings, db = notify_db
    add = subscribers.add_subscriber
    ana = await add(db, subscribers.SubscriberIn(email="ana@example.si", ks=["primskovo"], topics=["utilities"], digest=True))
    bojan = await add(db, subscribers.SubscriberIn(email="bojan@example.si", ks=["primskovo"], topics=["utilities"]))
    mesto = await add(db, subscribers.SubscriberIn(email="mesto@example.si", ks=["*"], topics=["utilities"], digest=True))
    cene = await add(
        db, subscribers.SubscriberIn(email="cene@example.si", phone="041 222 333", ks=["primskovo"], topics=["events"], digest=True)
    )
    assert ana.digest is True and bojan.digest is False

    next_monday = digest.digest_slot(utcnow()) + digest.WEEK  # this week's notices go into it
    water = notice("Izklop vode na Primskovem", ["primskovo"], topic="utilities", channels=["email", "sms", "noticeboard"])
    fair = event("Krajevni sejem", "primskovo", next_monday + timedelta(days=2), channels=["email", "sms", "noticeboard"])
    await record(db, settings, water, fair)

    async with db.session() as session:
        single = (await session.exec(select(Delivery.notice_id, Delivery.subscriber_id, Delivery.channel))).all()
    # Digest readers get no single email; SMS still comes one by one (the digest is an email).
    assert sorted((n, s, c) for n, s, c in single) == sorted(
        [(water.id, bojan.id, "email"), (fair.id, cene.id, "sms")]
    )

    job_time = next_monday + timedelta(minutes=30)
    replica = Database(db.url)  # a second replica of notify, racing the first
    try:
        made = await asyncio.gather(
            digest.run_digests(db, settings, now=job_time), digest.run_digests(replica, settings, now=job_time)
        )
    finally:
        await replica.dispose()
    assert await digest.run_digests(db, settings, now=job_time + timedelta(hours=1)) == 0  # and once more
    assert sum(made) == 3  # the replicas may share the KS between them; each digest is made once
    later = await digest.run_digests(db, settings, now=job_time + timedelta(days=2))  # past the catch-up window
    assert later == 0

    async with db.session() as session:
        digests = (await session.exec(select(Notice).where(Notice.kind == "digest"))).all()
        rows = (
            await session.exec(
                select(Delivery.notice_id, Delivery.subscriber_id, Delivery.channel, Delivery.address).where(
                    col(Delivery.notice_id).in_([d.id for d in digests])
                )
            )
        ).all()
    by_scope = {d.ks[0]: d for d in digests}
    assert sorted(by_scope) == ["*", "primskovo"]
    week = re.fullmatch(r"digest:primskovo:(\d{4}-W\d{2})", by_scope["primskovo"].source_id)
    assert week and all(not d.on_noticeboard for d in digests)
    assert sorted((n, s, c) for n, s, c, _ in rows) == sorted(
        [
            (by_scope["primskovo"].id, ana.id, "email"),
            (by_scope["primskovo"].id, cene.id, "email"),
            (by_scope["*"].id, mesto.id, "email"),
        ]
    )

    renderer = Renderer(settings)
    mail = renderer.email(by_scope["primskovo"], "sl", renderer.unsubscribe_url(ana.id, "email"))
    assert mail.subject == "Ta teden v KS Primskovo"
    assert "Izklop vode na Primskovem" in mail.text and "Krajevni sejem" in mail.text
    assert "Izklop vode na Primskovem" in mail.html and "/unsubscribe/" in mail.text
    english = renderer.email(by_scope["*"], "en", None)
    assert english.subject == "This week in the Municipality of Kranj" and "Izklop vode" in english.text


def test_digest_slot_is_monday_seven_in_ljubljana_across_dst():
    summer = digest.digest_slot(datetime.fromisoformat("2026-10-28T12:00:00+00:00"))  # Wednesday, CET
    assert summer.isoformat() == "2026-10-26T07:00:00+01:00"
    before_seven = digest.digest_slot(datetime.fromisoformat("2026-03-30T04:59:00+00:00"))  # Mon 06:59 CEST
    assert before_seven.isoformat() == "2026-03-23T07:00:00+01:00"
    at_seven = digest.digest_slot(datetime.fromisoformat("2026-03-30T05:00:00+00:00"))
    assert at_seven.isoformat() == "2026-03-30T07:00:00+02:00"
    assert digest.digest_key("huje", at_seven) == "digest:huje:2026-W14"
