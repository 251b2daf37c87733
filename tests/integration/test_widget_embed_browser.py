"""The "Kaj se dogaja v KS …" box that KS and municipal websites paste in (issue 18, section
6), in real Chromium:

- a page on ANOTHER origin that frames the widget shows it (heading, the next date of a
  weekly event, urgent notice first), and its links open our pages in a new tab, leaving
  the host page where it was;
- the same page framing any other page of ours (the KS noticeboard) gets nothing: every page
  but the widget still refuses to be framed (`frame-ancestors 'none'`, `X-Frame-Options: DENY`);
- the KS noticeboard shows webmasters the code to paste, on a phone (390 × 844) without
  sideways scrolling, and axe-core finds nothing there nor on the widget in a narrow frame.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route
from support.browser import axe_serious_violations, serve_app
from support.settings import make_settings
from support.times import weekday_ahead

from services.notify import agenda, notices
from services.notify.app import create_app
from services.notify.models import NoticeDraft
from shared.i18n import format_span

pytestmark = pytest.mark.integration

NO_BROKER = "amqp://guest:guest@127.0.0.1:9/unused"  # this app never starts its bus
PHONE = {"viewport": {"width": 390, "height": 844}, "locale": "sl-SI"}


def host_site(notify: str) -> Starlette:
    """A KS website on another origin that pastes the widget and, wrongly, the board."""

    async def home(_request: object) -> HTMLResponse:
        return HTMLResponse(
            "<!doctype html><html lang=sl><title>KS Huje</title><h1>Spletna stran KS Huje</h1>"
            f'<iframe id="widget" src="{notify}/noticeboard/huje/pripomocek" title="Kaj se dogaja" '
            'width="320" height="560"></iframe>'
            f'<iframe id="board" src="{notify}/noticeboard/huje" title="Oglasna deska" width="320" height="300"></iframe>'
        )

    return Starlette(routes=[Route("/", home)])


async def test_the_widget_is_framed_by_another_site_and_nothing_else_is(tmp_path, browser):
    app = create_app(make_settings(tmp_path, NO_BROKER), start_bus=False)
    first = weekday_ahead(2, weeks=0, hour=17) - timedelta(weeks=1)  # a Wednesday 5 to 11 days ago
    dates = [(first + timedelta(weeks=i), first + timedelta(weeks=i, hours=2)) for i in range(4)]
    series = NoticeDraft(
        source="/kranj/events",
        source_id=str(uuid.uuid4()),
        kind="event",
        title="Vadba za starejše in mlajše",
        body="Razgibajmo se skupaj.",
        ks=["huje"],
        channels=["noticeboard"],
        starts_at=dates[0][0],
        ends_at=dates[0][1],
        venue="Telovadnica OŠ Simona Jenka",
        url="http://127.0.0.1:8001/events/vadba",
        dates=[[s.isoformat(), e.isoformat()] for s, e in dates],
    )
    series.valid_until = agenda.last_end(series)
    urgent = NoticeDraft(
        source="/t", source_id="1", title="Zapora ceste", body="Cesta bo zaprta.", ks=["huje"], urgency="urgent"
    )
    later = NoticeDraft(source="/t", source_id="2", title="Čistilna akcija", body="V soboto ob 9.00.", ks=["*"])
    async with serve_app(app) as notify, serve_app(host_site(notify)) as host:
        ctx = app.state.ctx
        async with ctx.db.session() as session:
            for draft in (series, urgent, later):
                await notices.record_notice(session, ctx.settings, draft)
            await session.commit()

        async with httpx.AsyncClient(base_url=notify) as http:  # the headers behind what Chromium does
            widget = await http.get("/noticeboard/huje/pripomocek")
            board = await http.get("/noticeboard/huje")
        assert "frame-ancestors *" in widget.headers["content-security-policy"]
        assert "x-frame-options" not in widget.headers
        assert "script-src 'none'" in widget.headers["content-security-policy"]  # otherwise as strict
        assert "frame-ancestors 'none'" in board.headers["content-security-policy"]
        assert board.headers["x-frame-options"] == "DENY"

        page = await browser.new_page(viewport={"width": 1024, "height": 900})
        await page.goto(host)
        framed = page.frame_locator("#widget")
        assert await framed.locator("h1").inner_text() == "Kaj se dogaja v KS Huje"
        text = await framed.locator("body").inner_text()
        coming = next(d for d in dates if d[1] > series.created_at)  # the series' next date, not its first
        assert format_span(*coming) in " ".join(text.split())
        assert text.index("Zapora ceste") < text.index("Čistilna akcija")  # urgent first
        links = framed.locator("a")
        assert await links.count() >= 5
        for i in range(await links.count()):
            assert await links.nth(i).get_attribute("target") == "_blank"
            assert "noopener" in (await links.nth(i).get_attribute("rel") or "")
        everything = framed.get_by_role("link", name="Vse na oglasni deski KS Huje")
        assert (await everything.get_attribute("href")).endswith("/noticeboard/huje")
        async with page.context.expect_page() as opened:
            await everything.click()
        tab = await opened.value
        assert tab is not page and await tab.evaluate("window.opener === null")  # a new tab that cannot reach back
        assert page.url.rstrip("/") == host  # the KS website stays where it was

        blocked = page.frame_locator("#board")
        assert "Oglasna deska KS Huje" not in await blocked.locator("body").inner_text(), "the board was framed"
        [board_frame] = [f for f in page.frames if f.parent_frame and "pripomocek" not in f.url]
        assert board_frame.url.startswith("chrome-error://"), board_frame.url  # Chromium refused it

        narrow = await browser.new_page(viewport={"width": 320, "height": 560})  # as in a sidebar
        await narrow.goto(f"{notify}/noticeboard/huje/pripomocek")
        assert await narrow.evaluate("document.documentElement.scrollWidth") <= 320
        assert await axe_serious_violations(narrow) == []

        phone = await browser.new_page(**PHONE)
        await phone.goto(f"{notify}/noticeboard/huje")
        code = await phone.get_by_label("Koda HTML za vstavljanje na vašo stran").input_value()
        assert (
            code.startswith('<iframe src="http://')
            and '/noticeboard/huje/pripomocek" title="Kaj se dogaja v KS Huje"' in code
        )
        assert await phone.evaluate("document.documentElement.scrollWidth") <= 390
        assert await axe_serious_violations(phone) == []
