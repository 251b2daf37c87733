"""HTTP surface of events: staff API, public API and pages (thin: translate, call service)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse

from shared.auth import StaffDep, require_ks
from shared.contracts import KS_NAMES
from shared.web import ServiceApp

from . import service
from .service import EventIn, EventOut

api = APIRouter(prefix="/api/v1", tags=["events"])
pages = APIRouter(include_in_schema=False)


def _ctx(request: Request) -> ServiceApp:
    return request.app.state.ctx  # type: ignore[no-any-return]


async def _load(ctx: ServiceApp, event_id: str):  # noqa: ANN202
    try:
        return await service.get_event(ctx.db, event_id)
    except service.NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Dogodka ni. / No such event.") from None


@api.post("/events", status_code=status.HTTP_201_CREATED, response_model=EventOut, summary="Create a draft event (staff)")
async def create_event(body: EventIn, request: Request, staff: StaffDep) -> EventOut:
    require_ks(staff, body.ks)
    ctx = _ctx(request)
    event = await service.create_event(ctx.db, staff, body)
    return service.to_out(ctx.settings, event)


@api.post("/events/{event_id}/publish", response_model=EventOut, summary="Publish an event (staff)")
async def publish_event(event_id: str, request: Request, staff: StaffDep) -> EventOut:
    ctx = _ctx(request)
    require_ks(staff, (await _load(ctx, event_id)).ks)
    try:
        event = await service.publish_event(ctx.db, ctx.settings, event_id)
    except service.Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return service.to_out(ctx.settings, event)


@api.get("/events", response_model=list[EventOut], summary="Published upcoming events")
async def list_events(
    request: Request, ks: Annotated[str | None, Query(description="KS slug")] = None
) -> list[EventOut]:
    ctx = _ctx(request)
    if ks is not None and ks not in KS_NAMES:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"Neznana KS {ks!r}. / Unknown KS.")
    return [service.to_out(ctx.settings, e) for e in await service.list_published(ctx.db, ks)]


@api.get("/events/{event_id}", response_model=EventOut, summary="One event (drafts need a staff token)")
async def get_event(event_id: str, request: Request) -> EventOut:
    ctx = _ctx(request)
    event = await _load(ctx, event_id)
    if event.status == "draft":
        from shared.auth import current_staff

        current_staff(request)
    return service.to_out(ctx.settings, event)


@pages.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/events", status_code=307)


@pages.get("/events", response_class=HTMLResponse)
async def events_page(request: Request, ks: str | None = None) -> HTMLResponse:
    ctx = _ctx(request)
    ks = ks if ks in KS_NAMES else None
    events = await service.list_published(ctx.db, ks)
    return ctx.templates.TemplateResponse(request, "events.html", {"events": events, "ks": ks})


@pages.get("/events/{event_id}", response_class=HTMLResponse)
async def event_page(event_id: str, request: Request) -> HTMLResponse:
    ctx = _ctx(request)
    event = await _load(ctx, event_id)
    if event.status != "published":
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Dogodek ni objavljen. / The event is not published.")
    return ctx.templates.TemplateResponse(request, "event.html", {"event": event})
