"""The noticeboard as a channel of its own: the city-wide Atom feed, the kiosk screen of a
KS room and a printable poster per notice (thin routes; the work is in `posters`).

Included in the app BEFORE `api.pages`: `/noticeboard/feed.atom` and
`/noticeboard/notices/...` must not be taken for `/noticeboard/{ks}`.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import HTMLResponse
from jinja2 import Environment
from sqlmodel import select

from shared.contracts import KS_NAMES
from shared.i18n import format_span
from shared.models import utcnow
from shared.web import ServiceApp
from shared.web.headers import EMBEDDABLE_HEADERS
from shared.web.ratelimit import rate_limit
from shared.web.share import Share, share

from . import agenda, bulletin, notices, posters
from .api import atom_feed
from .models import Notice
from .render import from_label

board = APIRouter(include_in_schema=False)

KIOSK_REFRESH_SECONDS = 300
KIOSK_EVENTS = 6
KIOSK_NOTICES = 6
WIDGET_EVENTS = 5
WIDGET_NOTICES = 3


def install_globals(env: Environment) -> None:
    """What the cards, the kiosk, the poster and the bulletin ask of a notice: its next date
    (a series shows the coming one, not its first), how many dates are left, whose it is."""
    env.globals["next_date"] = lambda notice: agenda.next_date(notice, utcnow())
    env.globals["dates_left"] = lambda notice: agenda.coming(notice, utcnow())
    env.globals["last_date"] = lambda notice: agenda.last_end(notice)
    env.filters["from_label"] = from_label
    env.filters["numeric"] = lambda day: f"{day.day}. {day.month}. {day.year}"  # 7. 12. 2026
    env.globals["next_week"] = lambda: (bulletin.chosen_week(None).monday + timedelta(days=7)).isoformat()


def coming_events(current: list[Notice], now: Any) -> list[tuple[Notice, agenda.Date]]:
    """The events on the board with their next date (a series: the coming one), soonest first."""
    dated = ((n, agenda.next_date(n, now)) for n in current if n.kind == "event")
    return sorted(((n, d) for n, d in dated if d is not None), key=lambda pair: pair[1].starts_at)


def notice_share(ctx: ServiceApp, notice: Notice) -> Share:
    """A notice's link preview: the title, whose it is and (an event) its next date and place."""
    if notice.kind == "event":
        when = agenda.next_date(notice, utcnow())
        span = format_span(when.starts_at, when.ends_at) if when else ""
        line = " · ".join(part for part in (span, notice.venue or "", from_label(notice.ks)) if part)
    else:
        line = f"{from_label(notice.ks)}: {notice.body}" if notice.body else from_label(notice.ks)
    return share(
        ctx.settings,
        "notify",
        f"/noticeboard/notices/{notice.id}",
        kind="event" if notice.kind == "event" else "survey" if notice.kind == "survey" else "notice",
        title=("NUJNO: " if notice.urgency == "urgent" else "") + notice.title,
        description=line,
    )


def _ctx(request: Request) -> ServiceApp:
    return request.app.state.ctx


def _known_ks(ks: str) -> str:
    if ks not in KS_NAMES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"Krajevne skupnosti {ks!r} ni. / No such KS.")
    return ks


@board.get("/noticeboard/feed.atom")
async def city_feed(request: Request) -> Response:
    """Every current notice of every KS, newest first."""
    ctx = _ctx(request)
    current = await notices.noticeboard(ctx.db, None, urgent_first=False)
    base = ctx.settings.public_base("notify")
    return Response(atom_feed(None, current, base), media_type="application/atom+xml; charset=utf-8")


@board.get("/noticeboard/{ks}/kiosk", response_class=HTMLResponse)
async def kiosk(ks: str, request: Request, refresh: str = "on") -> HTMLResponse:
    """A screen in the KS room: upcoming events and current notices in large type, reloading
    itself every five minutes. `?refresh=off` (the page's own link) stops the reloading, so
    a reader who needs more time can have it (WCAG 2.2.1: the user can turn the limit off)."""
    ctx = _ctx(request)
    current = await notices.noticeboard(ctx.db, _known_ks(ks), limit=100)
    now = utcnow()
    events = coming_events(current, now)[:KIOSK_EVENTS]
    others = [n for n in current if n.kind != "event"][:KIOSK_NOTICES]
    board_url = f"{ctx.settings.public_base('notify')}/noticeboard/{ks}"
    signup_url = f"{ctx.settings.public_base('notify')}/subscribe?ks={ks}"  # the sign-up, this KS ticked
    return ctx.templates.TemplateResponse(
        request,
        "kiosk.html",
        {
            "ks": ks,
            "events": events,
            "notices": others,
            "now": now,
            "refresh": KIOSK_REFRESH_SECONDS if refresh != "off" else None,
            "board_url": board_url,
            "board_qr": posters.qr_data_uri(board_url, scale=6),
            "short_url": posters.short_url(board_url),
            "signup_qr": posters.qr_data_uri(signup_url, scale=6),
            "signup_short_url": posters.short_url(signup_url),
        },
    )


async def _public_notice(request: Request, notice_id: str) -> Notice:
    """A notice that is (still) on the noticeboard; personal messages and digests never are."""
    async with _ctx(request).db.session() as session:
        notice = (await session.exec(select(Notice).where(Notice.id == notice_id))).first()
    now = utcnow()
    if (
        notice is None
        or not notice.on_noticeboard
        or notice.kind not in ("notice", "event", "survey")
        or (notice.valid_until is not None and notice.valid_until <= now)
    ):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Obvestila ni na oglasni deski. / No such notice.")
    return notice


@board.get("/noticeboard/notices/{notice_id}", response_class=HTMLResponse)
async def notice_page(notice_id: str, request: Request) -> HTMLResponse:
    """One notice's own page: where a shortened SMS without a link of its own leads (the
    rest of the text). Every notice sent to followers has one while it is valid, also one
    that went out by SMS only; personal messages and digests never do."""
    async with _ctx(request).db.session() as session:
        notice = (await session.exec(select(Notice).where(Notice.id == notice_id))).first()
    if notice is None or notice.kind not in ("notice", "event", "survey"):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Tega obvestila ni. / No such notice.")
    if notice.valid_until is not None and notice.valid_until <= utcnow():
        raise HTTPException(status.HTTP_410_GONE, "Obvestilo ne velja več. / This notice has expired.")
    ctx = _ctx(request)
    context: dict[str, Any] = {"notice": notice, "share": notice_share(ctx, notice)}
    return ctx.templates.TemplateResponse(request, "notice.html", context)


def _filename(title: str) -> str:
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")[:50].strip("-")
    return f"plakat-{slug or 'obvestilo'}.pdf"


@board.get("/noticeboard/notices/{notice_id}/poster.pdf", dependencies=[rate_limit("pdf")])
async def poster(notice_id: str, request: Request) -> Response:
    """An A4 poster to print and pin up, with a QR code leading to the notice."""
    ctx = _ctx(request)
    notice = await _public_notice(request, notice_id)
    pdf = await posters.render_poster_async(ctx.templates.env, notice, ctx.settings.public_base("notify"))
    return Response(
        pdf,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'inline; filename="{_filename(notice.title)}"',
            "Cache-Control": "no-cache",
        },
    )


@board.get("/noticeboard/{ks}/pripomocek", response_class=HTMLResponse)
async def widget(ks: str, request: Request) -> HTMLResponse:
    """The "Kaj se dogaja v KS …" box for KS and municipal websites to frame (`<iframe>`; the code
    to paste is on the KS's noticeboard page): the next events and the current notices,
    each link opening our page in a new tab. The one page any site may frame
    (shared.web.headers.EMBEDDABLE_HEADERS); every other page refuses to be framed."""
    ctx = _ctx(request)
    current = await notices.noticeboard(ctx.db, _known_ks(ks), limit=100)
    return ctx.templates.TemplateResponse(
        request,
        "widget.html",
        {
            "ks": ks,
            "events": coming_events(current, utcnow())[:WIDGET_EVENTS],
            "notices": [n for n in current if n.kind != "event"][:WIDGET_NOTICES],
            "base": ctx.settings.public_base("notify"),
        },
        headers=EMBEDDABLE_HEADERS,
    )


@board.get("/noticeboard/{ks}/bilten.pdf", dependencies=[rate_limit("pdf")])
async def weekly_bulletin(ks: str, request: Request, teden: str | None = None) -> Response:
    """The KS's weekly bulletin, A4 PDF: this week's events and notices and a QR code to
    the sign-up; `?teden=<any day of another week, YYYY-MM-DD>` for that week."""
    ctx = _ctx(request)
    week = bulletin.chosen_week(teden)
    content = await bulletin.gather(ctx.db, _known_ks(ks), week)
    pdf = await bulletin.render_bulletin_async(ctx.templates.env, content, ctx.settings.public_base("notify"))
    return Response(
        pdf,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'inline; filename="bilten-{ks}-{week.monday.isoformat()}.pdf"',
            "Cache-Control": "no-cache",
        },
    )
