"""HTTP surface of notify: staff API, noticeboard pages and feeds, unsubscribe (thin)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from feedgen.feed import FeedGenerator

from shared.auth import StaffDep
from shared.contracts import KS_NAMES, ks_name
from shared.web import ServiceApp

from . import service
from .models import Notice
from .render import Renderer
from .service import SubscriberIn, SubscriberOut

api = APIRouter(prefix="/api/v1", tags=["notify"])
pages = APIRouter(include_in_schema=False)


def _ctx(request: Request) -> ServiceApp:
    return request.app.state.ctx  # type: ignore[no-any-return]


def _known_ks(ks: str) -> str:
    if ks not in KS_NAMES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"Krajevne skupnosti {ks!r} ni. / No such KS.")
    return ks


@api.post(
    "/subscribers",
    status_code=status.HTTP_201_CREATED,
    response_model=SubscriberOut,
    summary="Subscribe a resident on their behalf (staff); consent recorded as staff-entered",
)
async def add_subscriber(body: SubscriberIn, request: Request, staff: StaffDep) -> SubscriberOut:
    for ks in body.ks:
        if not staff.may_act_for(ks):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"Nimate pravic za KS {ks}. / Not your KS.")
    try:
        return await service.add_subscriber(_ctx(request).db, body, consent_source="staff")
    except service.Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None


@api.get(
    "/notices/{notice_id}/deliveries",
    summary="Delivery counts of one notice per channel and state (staff)",
)
async def deliveries(notice_id: str, request: Request, staff: StaffDep) -> dict[str, dict[str, int]]:
    return await service.delivery_summary(_ctx(request).db, notice_id)


@pages.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/noticeboard", status_code=307)


@pages.get("/noticeboard", response_class=HTMLResponse)
async def city_board(request: Request) -> HTMLResponse:
    ctx = _ctx(request)
    notices = await service.noticeboard(ctx.db, None)
    return ctx.templates.TemplateResponse(request, "noticeboard.html", {"ks": None, "notices": notices})


@pages.get("/noticeboard/{ks}", response_class=HTMLResponse)
async def ks_board(ks: str, request: Request) -> HTMLResponse:
    ctx = _ctx(request)
    notices = await service.noticeboard(ctx.db, _known_ks(ks))
    return ctx.templates.TemplateResponse(request, "noticeboard.html", {"ks": ks, "notices": notices})


@pages.get("/noticeboard/{ks}/feed.atom")
async def ks_feed(ks: str, request: Request) -> Response:
    ctx = _ctx(request)
    notices = await service.noticeboard(ctx.db, _known_ks(ks))
    base = ctx.settings.public_base("notify")
    return Response(atom_feed(ks, notices, base), media_type="application/atom+xml; charset=utf-8")


def atom_feed(ks: str, notices: list[Notice], base: str) -> bytes:
    fg = FeedGenerator()
    page = f"{base}/noticeboard/{ks}"
    fg.id(page)
    fg.title(f"Obvestila KS {ks_name(ks)}")
    fg.subtitle(f"Oglasna deska krajevne skupnosti {ks_name(ks)} · Kranj ZA vse")
    fg.link(href=page, rel="alternate")
    fg.link(href=f"{page}/feed.atom", rel="self")
    fg.language("sl")
    fg.author({"name": f"KS {ks_name(ks)}"})
    for notice in reversed(notices):  # feedgen prepends: oldest first gives newest on top
        entry = fg.add_entry()
        entry.id(f"urn:uuid:{notice.id}")
        entry.title(notice.title)
        entry.content(notice.body or notice.title, type="text")
        entry.updated(notice.created_at)
        entry.published(notice.created_at)
        entry.link(href=notice.url or f"{page}#n-{notice.id}")
    if notices:
        fg.updated(max(n.created_at for n in notices))
    return fg.atom_str(pretty=True)  # type: ignore[no-any-return]


def _renderer(request: Request) -> Renderer:
    return _ctx(request).extra["renderer"]  # type: ignore[no-any-return]


@pages.get("/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe_page(token: str, request: Request) -> HTMLResponse:
    ctx = _ctx(request)
    target = _renderer(request).read_unsubscribe_token(token)
    if target is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Povezava za odjavo ni veljavna. / Invalid link.")
    return ctx.templates.TemplateResponse(
        request, "unsubscribe.html", {"token": token, "channel": target[1], "done": False}
    )


@pages.post("/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe(token: str, request: Request) -> HTMLResponse:
    """RFC 8058 one-click (body `List-Unsubscribe=One-Click`) and the page's own button."""
    ctx = _ctx(request)
    target = _renderer(request).read_unsubscribe_token(token)
    if target is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Povezava za odjavo ni veljavna. / Invalid link.")
    await service.unsubscribe_channel(ctx.db, *target)
    return ctx.templates.TemplateResponse(
        request, "unsubscribe.html", {"token": token, "channel": target[1], "done": True}
    )
