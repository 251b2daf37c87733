"""The noticeboard as a channel of its own: the city-wide Atom feed, the kiosk screen of a
KS room and a printable poster per notice (thin routes; the work is in `posters`).

Included in the app BEFORE `api.pages`: `/noticeboard/feed.atom` and
`/noticeboard/notices/...` must not be taken for `/noticeboard/{ks}`.
"""

from __future__ import annotations

import re
import unicodedata

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import HTMLResponse
from sqlmodel import select

from shared.contracts import KS_NAMES
from shared.models import utcnow
from shared.web import ServiceApp

from . import notices, posters
from .api import atom_feed
from .models import Notice

board = APIRouter(include_in_schema=False)

KIOSK_REFRESH_SECONDS = 300
KIOSK_EVENTS = 6
KIOSK_NOTICES = 6


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
    current = await notices.noticeboard(ctx.db, None)
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
    events = sorted(
        (n for n in current if n.kind == "event" and n.starts_at is not None and (n.ends_at or n.starts_at) > now),
        key=lambda n: n.starts_at or now,
    )[:KIOSK_EVENTS]
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
    return _ctx(request).templates.TemplateResponse(request, "notice.html", {"notice": notice})


def _filename(title: str) -> str:
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")[:50].strip("-")
    return f"plakat-{slug or 'obvestilo'}.pdf"


@board.get("/noticeboard/notices/{notice_id}/poster.pdf")
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
