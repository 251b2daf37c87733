"""Reaching residents beyond the workshops (issue 18, section 6), through the real path: the
events, surveys and notify services on the real broker, a weekly event published by staff
travelling as `events.event.published` (with every one of its dates) to notify's board,
notices sent by staff through notify's outbox and back over the bus.

- The noticeboard: a weekly series stays until its last date (it used to vanish after its
  first) and shows its next date; urgent notices come first; cards on the city-wide board
  say which KS they belong to.
- The weekly bulletin per KS: an A4 PDF with the week's events (a series in each of its
  weeks, not after its last), the notices (urgent first) and a QR code that is exactly the
  sign-up address (its modules compared with segno's), read back with pypdf.
- Calendars: "Dodaj v koledar" on the event page gives an .ics with the whole series; the
  KS calendar is offered as a `webcal://` subscription on the public host; both parse.
- Share previews: the event, notice and survey pages carry Open Graph tags with absolute
  addresses on KRANJ_PUBLIC_URL, and the picture they name is a 1200 × 630 PNG that answers.

No literal dates: times come from `support.times`; the clock is moved with `shared.clock.frozen`.
"""

from __future__ import annotations

import io
import re
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import segno
from icalendar import Calendar
from PIL import Image
from pypdf import PdfReader
from sqlmodel import select
from support.apps import running
from support.settings import TEST_ADMIN_TOKEN, make_settings, wait_until
from support.times import weekday_ahead

from services.notify.models import Notice
from services.notify.staff_notices import send_now
from shared import clock
from shared.auth import Grant
from shared.contracts import NoticeRequested
from shared.i18n import format_span

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
PUBLIC = "https://kranj-za-vse.example"  # KRANJ_PUBLIC_URL: what every shared link is built on
SERIES = "Družabni večer: šah, čaj in pogovor"
HIKE = "Pohod na Šmarjetno goro"
URGENT = "Zapora ceste pri šoli"
LATER = "Zbiranje oblačil za družine"


class Page(HTMLParser):
    """The `<meta>` tags and the links of a page."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.meta: dict[str, str] = {}
        self.links: list[dict[str, Any]] = []
        self._link: dict[str, Any] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "meta" and ("property" in values or "name" in values):
            self.meta[values.get("property") or values["name"]] = values.get("content", "")
        if tag == "a":
            self._link = {**values, "text": ""}
            self.links.append(self._link)

    def handle_data(self, data: str) -> None:
        if self._link is not None:
            self._link["text"] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._link = None

    def link(self, text: str) -> dict[str, Any]:
        found = [a for a in self.links if " ".join(a["text"].split()).startswith(text)]
        assert found, f"no link {text!r}"
        return found[0]


def card(html: str, notice_id: str) -> str:
    """The text of one card on a board page (tags dropped, spaces folded)."""
    match = re.search(rf'<article[^>]*id="n-{notice_id}".*?</article>', html, re.S)
    assert match, f"no card n-{notice_id}"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(0)).split())


def qr_is(image: Image.Image, url: str) -> bool:
    """The picture is the QR code of `url`: every module of segno's own code, at its place
    (quiet zone of 4 modules), has the same colour."""
    matrix = segno.make(url, error="m").matrix
    modules = len(matrix)
    gray = image.convert("L")
    size = gray.size[0] / (modules + 8)
    return all(
        (gray.getpixel((int((c + 4.5) * size), int((r + 4.5) * size))) < 128) == bool(matrix[r][c])
        for r in range(modules)
        for c in range(modules)
    )


def pdf_text(content: bytes) -> tuple[PdfReader, str]:
    reader = PdfReader(io.BytesIO(content))
    return reader, " ".join(" ".join(page.extract_text() for page in reader.pages).split())


async def preview_of(client: httpx.AsyncClient, path: str) -> dict[str, str]:
    """A page's Open Graph tags, checked the way a link preview is made: every address
    absolute on the public host, the picture a PNG that answers."""
    page = await client.get(path)
    assert page.status_code == 200, page.text[:300]
    meta = Page(page.text).meta
    assert meta["og:url"] == f"{PUBLIC}{path}"
    assert meta["og:locale"] == "sl_SI" and meta["og:type"] == "website" and meta["og:site_name"] == "Kranj ZA vse"
    assert meta["twitter:card"] == "summary_large_image" and meta["og:image:alt"]
    assert meta["og:image"].startswith(f"{PUBLIC}/static/shared/og/") and meta["og:image"].endswith(".png")
    picture = await client.get(urlsplit(meta["og:image"]).path)  # through the same service, as the door routes it
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(picture.content)) as image:
        assert image.format == "PNG" and image.size == (1200, 630)
    return meta


async def _event(events: httpx.AsyncClient, **fields: Any) -> str:
    made = await events.post("/api/v1/events", json=fields, headers=ADMIN)
    assert made.status_code == 201, made.text
    event_id = made.json()["id"]
    assert (await events.post(f"/api/v1/events/{event_id}/publish", headers=ADMIN)).status_code == 200
    return event_id


async def test_a_weekly_event_stays_on_the_board_in_every_bulletin_and_calendar(tmp_path, amqp_url):
    settings = make_settings(tmp_path, amqp_url, public_url=PUBLIC)
    first = weekday_ahead(1)  # a Tuesday 1 to 13 days ahead, 18.00 in Kranj
    dates = [(first + timedelta(weeks=i), first + timedelta(weeks=i, hours=2)) for i in range(3)]
    async with running(settings, ("events", "surveys", "notify")) as (clients, apps):
        events, notify, surveys = clients["events"], clients["notify"], clients["surveys"]
        series_id = await _event(
            events,
            ks="huje",
            title=SERIES,
            starts_at=first.isoformat(),
            ends_at=(first + timedelta(hours=2)).isoformat(),
            venue="Dom krajanov Huje",
            rrule="FREQ=WEEKLY;COUNT=3",
        )
        hike_at = weekday_ahead(3, hour=9)
        await _event(
            events,
            ks="planina",
            title=HIKE,
            starts_at=hike_at.isoformat(),
            ends_at=(hike_at + timedelta(hours=4)).isoformat(),
            venue="Pred domom KS Planina",
        )
        admin = Grant("tajnica@kranj.si", "admin", ("*",), action="notify.notices.urgent", scope="city")
        notify_db = apps["notify"].state.ctx.db
        for title, urgency in ((URGENT, "urgent"), (LATER, "normal")):  # the urgent one is the older
            await send_now(
                notify_db,
                admin,
                NoticeRequested(
                    title=title, body=f"{title}: podrobnosti.", ks=["huje"], channels=["noticeboard"], urgency=urgency
                ),
            )

        async def on_board() -> dict[str, Notice]:
            async with notify_db.session() as session:
                rows = {n.title: n for n in (await session.exec(select(Notice))).all()}
            return rows if {SERIES, HIKE, URGENT, LATER} <= set(rows) else {}

        board = await wait_until(on_board, timeout=30, message="the events and notices over the bus on the board")
        series = board[SERIES]
        assert series.valid_until == dates[-1][1]  # on the board until its last date, not its first

        # --- the noticeboard: urgent first, city-wide cards say which KS ---------------------
        huje = (await notify.get("/noticeboard/huje")).text
        assert huje.index(URGENT) < huje.index(LATER), "urgent notices first, newer ones after"
        city = (await notify.get("/noticeboard")).text
        assert "KS Planina" in card(city, board[HIKE].id) and "KS Huje" in card(city, series.id)

        # after the first date the series is still there, with its next date ...
        with clock.frozen(dates[0][1] + timedelta(hours=1)):
            text = card((await notify.get("/noticeboard/huje")).text, series.id)
            assert format_span(*dates[1]) in text and format_span(*dates[0]) not in text
            assert "Ponavlja se: še 1 termin po tem" in text
            kiosk = (await notify.get("/noticeboard/huje/kiosk")).text
            assert SERIES in kiosk and format_span(*dates[1]) in kiosk
        # ... and after its last date it is gone
        with clock.frozen(dates[-1][1] + timedelta(minutes=1)):
            assert series.id not in (await notify.get("/noticeboard/huje")).text

        # --- the weekly bulletin -------------------------------------------------------------
        pdf = await notify.get(f"/noticeboard/huje/bilten.pdf?teden={first.date().isoformat()}")
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        monday = first.date() - timedelta(days=first.weekday())
        assert pdf.headers["content-disposition"] == f'inline; filename="bilten-huje-{monday.isoformat()}.pdf"'
        reader, text = pdf_text(pdf.content)
        box = reader.pages[0].mediabox
        assert abs(float(box.width) - 595.3) < 1 and abs(float(box.height) - 841.9) < 1  # A4
        assert "Tedenski bilten KS Huje" in text and SERIES in text and "Dom krajanov Huje" in text
        assert "18.00–20.00" in text
        assert HIKE not in text  # another KS's event
        assert text.index(f"NUJNO: {URGENT}") < text.index(LATER)
        signup = f"{PUBLIC}/subscribe?ks=huje"
        assert "kranj-za-vse.example/subscribe?ks=huje" in text and "kranj-za-vse.example/noticeboard/huje" in text
        images = [image.image for page in reader.pages for image in page.images]
        assert any(qr_is(image, signup) for image in images), "the QR code is the sign-up address"
        assert not qr_is(images[0], f"{PUBLIC}/subscribe?ks=planina")  # the comparison can fail

        for week, listed in ((1, True), (2, True), (3, False)):  # each of its weeks, none after
            later = await notify.get(f"/noticeboard/huje/bilten.pdf?teden={(first + timedelta(weeks=week)).date()}")
            assert (SERIES in pdf_text(later.content)[1]) is listed, week

        # --- calendars -----------------------------------------------------------------------
        page = Page((await events.get(f"/events/{series_id}")).text)
        add = page.link("Dodaj v koledar")
        own = Calendar.from_ical((await events.get(add["href"])).content)
        [vevent] = own.walk("VEVENT")
        assert str(vevent["summary"]) == SERIES and vevent["rrule"]["COUNT"] == [3]
        subscribe = page.link("Naroči se na koledar KS Huje")["href"]
        assert subscribe == "webcal://kranj-za-vse.example/events/ks/huje/calendar.ics"
        listing = Page((await events.get("/events?ks=huje")).text).link("Naroči se na koledar KS Huje")["href"]
        assert listing == subscribe
        feed = await events.get(urlsplit(subscribe).path)
        assert feed.headers["content-type"].startswith("text/calendar")
        ks_calendar = Calendar.from_ical(feed.content)
        assert [str(e["summary"]) for e in ks_calendar.walk("VEVENT")] == [SERIES]
        assert ks_calendar.walk("VTIMEZONE")  # RFC 5545 as tests/integration/test_events_calendar_rfc.py holds it
        on_board = Page((await notify.get("/noticeboard/huje")).text).link("Naroči se na koledar KS Huje")["href"]
        assert on_board == subscribe

        # --- share previews ------------------------------------------------------------------
        meta = await preview_of(events, f"/events/{series_id}")
        assert meta["og:title"] == SERIES
        assert meta["og:description"] == f"{format_span(*dates[0])} · ponavlja se · Dom krajanov Huje · KS Huje"
        assert meta["og:image"].endswith("/dogodek.png")
        meta = await preview_of(notify, f"/noticeboard/notices/{board[URGENT].id}")
        assert meta["og:title"] == f"NUJNO: {URGENT}" and meta["og:description"].startswith("KS Huje: ")
        assert meta["og:image"].endswith("/obvestilo.png")
        made = await surveys.post("/api/v1/surveys", json={"template": "needs-assessment", "ks": "*"}, headers=ADMIN)
        opened = await surveys.post(f"/api/v1/surveys/{made.json()['id']}/open", headers=ADMIN)
        assert opened.status_code == 200, opened.text
        meta = await preview_of(surveys, f"/surveys/{opened.json()['id']}")
        assert meta["og:title"] == opened.json()["title"]
        assert meta["og:description"].startswith("Anketa vse Mestne občine Kranj")
        assert meta["og:image"].endswith("/anketa.png")
