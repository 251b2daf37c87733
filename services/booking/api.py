"""HTTP surface of booking: public API and pages (thin: translate, call service)."""

from __future__ import annotations

from itertools import groupby
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse

from shared.contracts import KS_NAMES
from shared.web import ServiceApp

from . import service
from .service import RoomOut

api = APIRouter(prefix="/api/v1", tags=["booking"])
pages = APIRouter(include_in_schema=False)


def _ctx(request: Request) -> ServiceApp:
    return request.app.state.ctx  # type: ignore[no-any-return]


@api.get("/rooms", response_model=list[RoomOut], summary="Community rooms, optionally of one KS")
async def list_rooms(
    request: Request, ks: Annotated[str | None, Query(description="KS slug, e.g. `primskovo`")] = None
) -> list[RoomOut]:
    if ks is not None and ks not in KS_NAMES:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"Neznana KS {ks!r}. / Unknown KS {ks!r}; use one of the 26 KS slugs of Kranj.",
        )
    return [service.to_out(r) for r in await service.list_rooms(_ctx(request).db, ks)]


@api.get("/rooms/{room_id}", response_model=RoomOut, summary="One community room")
async def get_room(room_id: str, request: Request) -> RoomOut:
    try:
        room = await service.get_room(_ctx(request).db, room_id)
    except service.NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Prostora ni. / No such room.") from None
    return service.to_out(room)


@pages.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/rooms", status_code=307)


@pages.get("/rooms", response_class=HTMLResponse)
async def rooms_page(request: Request, ks: str | None = None) -> HTMLResponse:
    ctx = _ctx(request)
    ks = ks if ks in KS_NAMES else None
    rooms = await service.list_rooms(ctx.db, ks)
    by_ks = [(slug, list(group)) for slug, group in groupby(rooms, key=lambda r: r.ks)]
    return ctx.templates.TemplateResponse(request, "rooms.html", {"by_ks": by_ks, "count": len(rooms), "ks": ks})
