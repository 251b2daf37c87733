"""HTTP surface of booking: public API, staff API and pages (thin: translate, call service)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import groupby
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import AwareDatetime, BaseModel, Field, ValidationError

from shared import clock
from shared.auth import Grant, MaybeStaff, Permit, Record, Staff, authorize, current_staff, may, page_staff, require_ks
from shared.contracts import KS_NAMES
from shared.i18n import format_date
from shared.web import ServiceApp
from shared.web.csv_export import csv_response
from shared.web.forms import Errors, field_errors, form_errors
from shared.web.ratelimit import RATE_LIMITED, rate_limit
from shared.web.site import chosen_ks, remember_ks

from . import domain, service
from .domain import TZ, Interval
from .service import BookingCreated, BookingIn, BookingOut, RoomOut, RoomRulesIn

api = APIRouter(prefix="/api/v1", tags=["booking"])
pages = APIRouter(include_in_schema=False)

MAX_WINDOW = timedelta(days=62)
NO_ROOM = "Prostora ni. / No such room."
NO_BOOKING = "Rezervacije ni. / No such booking."


def _ctx(request: Request) -> ServiceApp:
    return request.app.state.ctx  # type: ignore[no-any-return]


def _conflict(exc: service.RuleBroken) -> JSONResponse:
    body: dict[str, Any] = {"detail": exc.detail, "rules": [v.rule for v in exc.violations]}
    if exc.conflicts:
        body["conflicts"] = exc.conflicts
    return JSONResponse(body, status_code=exc.status)


async def _room(ctx: ServiceApp, room_id: str) -> service.Room:
    try:
        return await service.get_room(ctx.db, room_id)
    except service.NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_ROOM) from None


async def _booking(ctx: ServiceApp, booking_id: str) -> tuple[service.Booking, service.Room]:
    try:
        return await service.get_booking(ctx.db, booking_id)
    except service.NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_BOOKING) from None


# The records of the permission table (shared/permissions.py): a room and a booking belong
# to the room's KS; organisers have no booking rights, so no owner is needed.
async def room_record(request: Request) -> Record:
    return Record(ks=(await _room(_ctx(request), request.path_params["room_id"])).ks)


async def booking_record(request: Request) -> Record:
    _booking_row, room = await _booking(_ctx(request), request.path_params["booking_id"])
    return Record(ks=room.ks)


RoomsEdit = Annotated[Grant, Permit("rooms.edit", record=room_record)]
RoomsImport = Annotated[Grant, Permit("rooms.edit")]
BookingsRead = Annotated[Grant, Permit("booking.read")]
Approve = Annotated[Grant, Permit("booking.approve", record=booking_record)]
Figures = Annotated[Grant, Permit("booking.figures.read")]


# ======================================================================================
# Rooms
# ======================================================================================
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


@api.get("/rooms/{room_id}", response_model=RoomOut, summary="One community room, with its rules")
async def get_room(room_id: str, request: Request) -> RoomOut:
    return service.to_out(await _room(_ctx(request), room_id))


@api.post(
    "/rooms/import",
    summary="Create or update rooms from a CSV (staff; comma or semicolon, UTF-8 with or without BOM)",
    openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}, "required": True}},
    responses={422: {"description": "An empty file."}},
)
async def import_rooms(request: Request, staff: RoomsImport) -> dict[str, Any]:
    body = await request.body()
    if not body.strip():
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "Prazna datoteka. / Empty file.")
    result = await service.import_rooms(_ctx(request).db, staff, body)
    return {"created": result.created, "updated": result.updated, "errors": result.errors}


@api.patch(
    "/rooms/{room_id}",
    response_model=RoomOut,
    summary="Change a room's details and rules (staff)",
    responses={409: {"description": "The new rules contradict each other (e.g. a minimum longer than the maximum)."}},
)
async def update_room(room_id: str, body: RoomRulesIn, request: Request, staff: RoomsEdit) -> RoomOut:
    ctx = _ctx(request)
    try:
        return service.to_out(await service.update_room(ctx.db, room_id, body, staff))
    except service.Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None


class ClosureIn(BaseModel):
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    reason: str = Field(min_length=1, max_length=300, examples=["volitve", "pleskanje"])


class ClosureOut(ClosureIn):
    id: str
    room_id: str


@api.post(
    "/rooms/{room_id}/closures",
    status_code=status.HTTP_201_CREATED,
    response_model=ClosureOut,
    summary="Close a room for a while (staff)",
)
async def add_closure(room_id: str, body: ClosureIn, request: Request, staff: RoomsEdit) -> ClosureOut:
    ctx = _ctx(request)
    if body.ends_at <= body.starts_at:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "ends_at: must be after starts_at")
    closure = await service.add_closure(ctx.db, room_id, body.starts_at, body.ends_at, body.reason, staff)
    return ClosureOut.model_validate(closure, from_attributes=True)


class IntervalOut(BaseModel):
    starts_at: datetime
    ends_at: datetime


class TakenOut(IntervalOut):
    status: str = Field(description="`requested` (held until staff decide) or `confirmed`.")


class ClosedOut(IntervalOut):
    reason: str = Field(description="Why the room is closed then, in Slovenian (office hours, holiday, closure).")


class AvailabilityOut(BaseModel):
    room_id: str
    starts_at: datetime = Field(alias="from")
    ends_at: datetime = Field(alias="to")
    free: list[IntervalOut] = Field(description="Bookable by a resident now: open, not taken, within the rules.")
    taken: list[TakenOut]
    closed: list[ClosedOut] = Field(description="Within opening hours but closed: KS office hours, holidays, closures.")

    model_config = {"populate_by_name": True}


def _window(frm: datetime | None, to: datetime | None) -> Interval:
    if frm is None:
        frm = clock.now()
    if to is None:
        to = frm + timedelta(days=7)
    if frm.tzinfo is None or to.tzinfo is None:
        frm, to = frm.replace(tzinfo=frm.tzinfo or TZ), to.replace(tzinfo=to.tzinfo or TZ)
    if to <= frm:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "to: must be after from")
    if to - frm > MAX_WINDOW:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "to: at most 62 days after from")
    return Interval(frm.astimezone(UTC), to.astimezone(UTC))


@api.get(
    "/rooms/{room_id}/availability",
    response_model=AvailabilityOut,
    response_model_by_alias=True,
    summary="Free, taken and closed intervals of a room",
    description="`from` and `to` are RFC 3339 (a time without offset is read as Europe/Ljubljana); "
    "default: the next 7 days; at most 62 days.",
)
async def availability(
    room_id: str,
    request: Request,
    frm: Annotated[datetime | None, Query(alias="from")] = None,
    to: Annotated[datetime | None, Query()] = None,
) -> dict[str, Any]:
    ctx = _ctx(request)
    window = _window(frm, to)
    try:
        _room_row, _rules, avail = await service.room_availability(ctx.db, room_id, window)
    except service.NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_ROOM) from None
    return {
        "room_id": room_id,
        "from": window.start,
        "to": window.end,
        "free": [{"starts_at": i.start, "ends_at": i.end} for i in avail.free],
        "taken": [{"starts_at": i.start, "ends_at": i.end, "status": s} for i, s in avail.taken],
        "closed": [{"starts_at": i.start, "ends_at": i.end, "reason": r} for i, r in avail.closed],
    }


# ======================================================================================
# Bookings
# ======================================================================================
def _created(made: service.Created, personal: bool) -> BookingCreated:
    outs = [service.booking_out(b, personal=personal) for b in made.bookings]
    return BookingCreated(
        **outs[0].model_dump(), bookings=outs if len(outs) > 1 or made.skipped else [], skipped=made.skipped
    )


@api.post(
    "/bookings",
    status_code=status.HTTP_201_CREATED,
    response_model=BookingCreated,
    summary="Request a room (resident), or book it (staff: confirmed at once)",
    dependencies=[rate_limit("booking")],
    responses={
        429: RATE_LIMITED,
        403: {
            "description": "A recurring request (`recurrence`) without a staff token of the room's KS: "
            "residents ask their KS, whose staff book a series (`rules`: `series-needs-staff`)."
        },
        409: {
            "description": "Taken, or outside what the room allows: `detail` says why (Slovenian / English), "
            "`rules` names the broken rules, `conflicts` lists a series' unavailable dates; `pending-limit`: "
            "this email or phone already has `booking_pending_per_contact` (3) requests awaiting a decision."
        },
    },
)
async def create_booking(
    body: BookingIn, request: Request, staff: Annotated[Staff | None, MaybeStaff("booking.create")]
) -> Any:
    ctx = _ctx(request)
    room = await _room(ctx, body.room_id)
    if staff is not None and not may(staff, "booking.create", Record(ks=room.ks)):
        staff = None  # staff of another KS (and organisers) ask like any resident
    try:
        made = await service.request_booking(ctx.db, ctx.settings, body, staff=staff)
    except service.RuleBroken as exc:
        return _conflict(exc)
    return _created(made, personal=True)


@api.get("/bookings", response_model=list[BookingOut], summary="Bookings of the KS you act for (staff)")
async def list_bookings(
    request: Request,
    staff: BookingsRead,
    status_: Annotated[str | None, Query(alias="status")] = None,
    room_id: str | None = None,
    ks: str | None = None,
) -> list[BookingOut]:
    ctx = _ctx(request)
    scope = _ks_scope(staff, ks)
    rows = await service.list_bookings(ctx.db, status=status_, ks=scope, room_id=room_id)
    return [service.booking_out(b, personal=True) for b, _room in rows]


def _ks_scope(staff: Staff, ks: str | None) -> list[str] | None:
    if ks is not None:
        if ks not in KS_NAMES:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"Neznana KS {ks!r}. / Unknown KS.")
        require_ks(staff, ks)
        return [ks]
    if staff.role == "admin" or "*" in staff.ks:
        return None
    return list(staff.ks)


@api.get(
    "/bookings/{booking_id}",
    response_model=BookingOut,
    summary="One booking: in full for staff of the room's KS or with the requester's signed `token`",
    description="Anyone else sees only when the room is held and in which state: no name, contact, purpose "
    "or reason (the taken times are public in the room's availability anyway).",
)
async def get_booking(
    booking_id: str,
    request: Request,
    staff: Annotated[Staff | None, MaybeStaff("booking.read")],
    token: Annotated[str | None, Query(description="The requester's signed token (from their link).")] = None,
) -> BookingOut:
    ctx = _ctx(request)
    booking, room = await _booking(ctx, booking_id)
    if may(staff, "booking.read", Record(ks=room.ks)):
        return service.booking_out(booking, personal=True)
    if token is not None and service.booking_id_from_token(ctx.settings, token) == booking_id:
        return service.booking_out(booking, personal=True)  # the requester's own link
    return service.booking_out(booking).model_copy(update={"purpose": "", "reason": None})


class RejectIn(BaseModel):
    reason: str = Field(min_length=1, max_length=1000, description="Told to the requester.")


class CancelIn(BaseModel):
    reason: str | None = Field(default=None, max_length=1000)


async def _decide(
    request: Request, booking_id: str, staff: Staff, action: str, reason: str | None = None
) -> BookingOut:
    ctx = _ctx(request)
    _booking_row, room = await _booking(ctx, booking_id)
    staff = authorize(staff, "booking.cancel" if action == "cancel" else "booking.approve", Record(ks=room.ks))
    # (the use case checks the KS again, on the locked row)
    try:
        if action == "approve":
            booking = await service.approve(ctx.db, ctx.settings, booking_id, staff)
        elif action == "reject":
            booking = await service.reject(ctx.db, ctx.settings, booking_id, staff, reason or "")
        else:
            booking = await service.cancel(ctx.db, ctx.settings, booking_id, by="staff", reason=reason, staff=staff)
    except service.Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return service.booking_out(booking, personal=True)


@api.post("/bookings/{booking_id}/approve", response_model=BookingOut, summary="Approve a request (staff)")
async def approve(booking_id: str, request: Request, staff: Approve) -> BookingOut:
    return await _decide(request, booking_id, staff, "approve")


@api.post("/bookings/{booking_id}/reject", response_model=BookingOut, summary="Reject a request, with a reason (staff)")
async def reject(booking_id: str, body: RejectIn, request: Request, staff: Approve) -> BookingOut:
    return await _decide(request, booking_id, staff, "reject", body.reason.strip())


@api.post(
    "/bookings/{booking_id}/cancel",
    response_model=BookingOut,
    summary="Cancel a booking (staff; or the requester with the signed token of their link)",
    dependencies=[rate_limit("link")],
    responses={
        401: {"description": "Neither a `token` nor a staff token."},
        403: {
            "description": "The `token` is not this booking's, or the staff token may not cancel it (`booking.cancel`)."
        },
        409: {"description": "The booking cannot be cancelled any more."},
        429: RATE_LIMITED,
    },
)
async def cancel(
    booking_id: str,
    request: Request,
    staff: Annotated[Staff | None, MaybeStaff("booking.cancel")],
    body: Annotated[CancelIn | None, Body()] = None,
    token: Annotated[str | None, Query(description="The requester's signed token (from cancel_url).")] = None,
) -> BookingOut:
    ctx = _ctx(request)
    reason = body.reason if body else None
    if token is not None and not request.headers.get("authorization"):
        if service.booking_id_from_token(ctx.settings, token) != booking_id:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "Povezava ni veljavna. / The link is not valid.")
        await _booking(ctx, booking_id)
        try:
            booking = await service.cancel(ctx.db, ctx.settings, booking_id, by="requester", reason=reason)
        except service.Conflict as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        return service.booking_out(booking)
    return await _decide(request, booking_id, staff or current_staff(request), "cancel", reason)


# ======================================================================================
# Room-use figures (staff)
# ======================================================================================
async def _figures(
    request: Request, staff: Staff, period: str, frm: date | None, to: date | None, ks: str | None
) -> list[dict[str, Any]]:
    ctx = _ctx(request)
    today = clock.local_now().date()
    frm = frm or (today.replace(day=1) - timedelta(days=150)).replace(day=1)
    to = to or today + timedelta(days=62)
    since = datetime.combine(frm, datetime.min.time(), TZ).astimezone(UTC)
    until = datetime.combine(to + timedelta(days=1), datetime.min.time(), TZ).astimezone(UTC)
    rows = await service.list_bookings(ctx.db, status="confirmed", ks=_ks_scope(staff, ks), since=since, until=until)
    return service.figures(rows, period)  # type: ignore[arg-type]


@api.get("/figures", summary="Room use per room and week or month (staff)")
async def figures(
    request: Request,
    staff: Figures,
    period: Literal["week", "month"] = "month",
    frm: Annotated[date | None, Query(alias="from")] = None,
    to: date | None = None,
    ks: str | None = None,
) -> list[dict[str, Any]]:
    """Confirmed bookings per room and period: `bookings`, `hours`, `hours_outside_office_hours`
    (the room used beyond the KS's formalities), `attendees`, `by_category`, `by_group_kind`."""
    return await _figures(request, staff, period, frm, to, ks)


@api.get("/figures.csv", summary="Room use as CSV for a Slovenian Excel (staff)", response_class=Response)
async def figures_csv(
    request: Request,
    staff: Figures,
    period: Literal["week", "month"] = "month",
    frm: Annotated[date | None, Query(alias="from")] = None,
    to: date | None = None,
    ks: str | None = None,
) -> Response:
    rows = await _figures(request, staff, period, frm, to, ks)
    return csv_response(
        service.figures_csv_rows(rows), header=service.FIGURES_CSV_HEADER, filename=f"uporaba-prostorov-{period}.csv"
    )


# ======================================================================================
# Pages
# ======================================================================================
@pages.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/rooms", status_code=307)


@pages.get("/rooms", response_class=HTMLResponse)
async def rooms_page(request: Request, ks: str | None = None) -> HTMLResponse:
    ctx = _ctx(request)
    picked, ks = ks, chosen_ks(request, ks)  # no `ks` in the address: the KS this browser picked before
    rooms = await service.list_rooms(ctx.db, ks)
    by_ks = [(slug, list(group)) for slug, group in groupby(rooms, key=lambda r: r.ks)]
    page = ctx.templates.TemplateResponse(request, "rooms.html", {"by_ks": by_ks, "count": len(rooms), "ks": ks})
    return remember_ks(request, page, picked, ctx.settings)  # type: ignore[return-value]


# --- staff pages (login cookie from /login) ------------------------------------------
@pages.get("/rooms/osebje/prosnje", response_class=HTMLResponse)
async def staff_requests_page(request: Request, done: str | None = None) -> Response:
    staff = page_staff(request)
    if isinstance(staff, RedirectResponse):
        return staff
    authorize(staff, "booking.read")
    ctx = _ctx(request)
    rows = await service.list_bookings(ctx.db, status="requested", ks=_ks_scope(staff, None))
    return ctx.templates.TemplateResponse(
        request,
        "staff_requests.html",
        {"rows": rows, "done": done, "category_sl": service.CATEGORY_SL, "group_sl": service.GROUP_SL},
    )


@pages.post("/rooms/osebje/prosnje/{booking_id}/{action}")
async def staff_decide(booking_id: str, action: str, request: Request) -> Response:
    staff = page_staff(request)
    if isinstance(staff, RedirectResponse):
        return staff
    if action not in ("odobri", "zavrni"):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Ni take strani.")
    form = await request.form()
    reason = str(form.get("reason") or "").strip()
    if action == "zavrni" and not reason:
        reason = "Prostor v tem času ni na voljo."
    await _decide(request, booking_id, staff, "approve" if action == "odobri" else "reject", reason)
    return RedirectResponse(f"/rooms/osebje/prosnje?done={action}", status_code=303)


@pages.get("/rooms/osebje/uporaba", response_class=HTMLResponse)
async def staff_figures_page(
    request: Request, obdobje: Literal["week", "month"] = "month", ks: str | None = None
) -> Response:
    staff = page_staff(request)
    if isinstance(staff, RedirectResponse):
        return staff
    authorize(staff, "booking.figures.read")
    ctx = _ctx(request)
    ks = ks if ks in KS_NAMES else None
    rows = await _figures(request, staff, obdobje, None, None, ks)
    totals: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = totals.setdefault(
            row["room_id"], {"name": row["room_name"], "ks": row["ks"], "hours": 0.0, "bookings": 0}
        )
        entry["hours"] += row["hours_outside_office_hours"]
        entry["bookings"] += row["bookings"]
    bars = sorted(totals.values(), key=lambda e: -e["hours"])[:30]
    top = max([b["hours"] for b in bars] + [1.0])
    query = f"period={obdobje}" + (f"&ks={ks}" if ks else "")
    return ctx.templates.TemplateResponse(
        request,
        "staff_figures.html",
        {"rows": rows, "bars": bars, "top": top, "period": obdobje, "ks": ks, "query": query},
    )


# --- residents: a room's week, the request form, the requester's link ------------------
@pages.get("/rooms/prosnja/{token}", response_class=HTMLResponse)
async def requester_page(token: str, request: Request) -> Response:
    ctx = _ctx(request)
    booking, room = await _requester_booking(ctx, token)
    return ctx.templates.TemplateResponse(
        request, "booking_status.html", {"booking": booking, "room": room, "token": token}
    )


@pages.post("/rooms/prosnja/{token}/preklic", response_class=HTMLResponse, dependencies=[rate_limit("link")])
async def requester_cancel(token: str, request: Request) -> Response:
    ctx = _ctx(request)
    booking, room = await _requester_booking(ctx, token)
    try:
        booking = await service.cancel(ctx.db, ctx.settings, booking.id, by="requester")
    except service.Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return RedirectResponse(f"/rooms/prosnja/{token}", status_code=303)


@pages.get("/rooms/prosnja/{token}/preklic", response_class=HTMLResponse)
async def requester_cancel_page(token: str, request: Request) -> Response:
    ctx = _ctx(request)
    booking, room = await _requester_booking(ctx, token)
    return ctx.templates.TemplateResponse(
        request, "booking_status.html", {"booking": booking, "room": room, "token": token, "confirm_cancel": True}
    )


async def _requester_booking(ctx: ServiceApp, token: str) -> tuple[service.Booking, service.Room]:
    booking_id = service.booking_id_from_token(ctx.settings, token)
    if booking_id is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Povezava ni veljavna. / The link is not valid.")
    return await _booking(ctx, booking_id)


@pages.get("/rooms/{room_id}/calendar.ics")
async def room_calendar(room_id: str, request: Request) -> Response:
    from .calendar import room_ics

    ctx = _ctx(request)
    room = await _room(ctx, room_id)
    since = clock.now() - timedelta(days=30)
    rows = await service.list_bookings(ctx.db, room_id=room_id, since=since)
    holding = [b for b, _r in rows if b.status in ("requested", "confirmed")]
    return Response(
        room_ics(room, holding, ctx.settings.public_base("booking")),
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": f'inline; filename="{room_id}.ics"'},
    )


def _week_start(value: str | None) -> date:
    today = clock.local_now().date()
    try:
        day = date.fromisoformat(value) if value else today
    except ValueError:
        day = today
    return day - timedelta(days=day.weekday())


async def _room_page(
    request: Request,
    room_id: str,
    *,
    week: str | None,
    form: dict[str, str] | None = None,
    errors: Errors | None = None,
    status_code: int = 200,
) -> Response:
    ctx = _ctx(request)
    start = _week_start(week or (form or {}).get("datum"))
    window = Interval(domain.local_instant(start, 0), domain.local_instant(start + timedelta(days=7), 0))
    try:
        room, rules, avail = await service.room_availability(ctx.db, room_id, window)
    except service.NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_ROOM) from None
    days = [(start + timedelta(days=i)) for i in range(7)]
    week_days = []
    for day in days:
        slots = domain.day_slots(rules, day, avail)
        holiday = domain.holiday_name(day)
        week_days.append(
            {
                "date": day,
                "heading": format_date(domain.local_instant(day, 720)),
                "slots": slots,
                "holiday": holiday,
                "free": sum(s.state == "free" for s in slots),
            }
        )
    return ctx.templates.TemplateResponse(
        request,
        "room.html",
        {
            "room": room,
            "rules": rules,
            "days": week_days,
            "week": start,
            "prev_week": start - timedelta(days=7),
            "next_week": start + timedelta(days=7),
            "form": form or {},
            "errors": errors or Errors(),
            "category_sl": service.CATEGORY_SL,
            "group_sl": service.GROUP_SL,
            "office": _week_text(room.office_hours),
            "opening": _week_text(room.opening_hours),
            "TZ": TZ,
        },
        status_code=status_code,
    )


_DAY_SL = {
    "mon": "ponedeljek",
    "tue": "torek",
    "wed": "sreda",
    "thu": "četrtek",
    "fri": "petek",
    "sat": "sobota",
    "sun": "nedelja",
}


def _week_text(hours: dict[str, Any]) -> list[str]:
    parsed = domain.parse_week(hours)
    return [
        f"{_DAY_SL[key]}: " + ", ".join(f"{domain.fmt_minutes(a)}–{domain.fmt_minutes(b)}" for a, b in parsed[i])
        for i, key in enumerate(domain.WEEKDAYS)
        if parsed.get(i)
    ]


@pages.get("/rooms/{room_id}", response_class=HTMLResponse)
async def room_page(
    room_id: str,
    request: Request,
    teden: str | None = None,
    datum: str | None = None,
    od: str | None = None,
    do: str | None = None,
) -> Response:
    form = {k: v for k, v in {"datum": datum, "od": od, "do": do}.items() if v}
    return await _room_page(request, room_id, week=teden or datum, form=form)


_FIELD_SL = {
    "name": "Vpišite ime in priimek ali ime skupine.",
    "purpose": "Napišite, za kaj boste prostor uporabili.",
    "email": "E-poštni naslov ni pravilen.",
    "phone": "Telefonska številka ni pravilna (npr. 040 123 456).",
    "attendees": "Vpišite pričakovano število udeležencev (vsaj 1).",
    "category": "Izberite namen uporabe.",
    "group_kind": "Izberite, kdo prosi za prostor.",
}


_BY_MESSAGE_SL = [
    (
        "or a phone number",
        "Vpišite e-poštni naslov ali telefonsko številko, da vas lahko obvestimo o odločitvi.",
        "email",
    ),
    ("ends_at", "Konec mora biti za začetkom.", "do"),
]
# The request form's fields in the order of room.html (the ids of its inputs).
_FORM_ORDER = ("datum", "od", "do", "purpose", "category", "group_kind", "attendees", "name", "email", "phone")
# Which field a broken room rule concerns (the rest concern the chosen time).
_RULE_FIELD = {"capacity": "attendees", "sms-country": "phone"}


def _form_errors(exc: ValidationError) -> list[str]:
    return form_errors(exc, _FIELD_SL, _BY_MESSAGE_SL)


def _request_errors(exc: ValidationError) -> Errors:
    """The request form's errors by field (room.html's input ids)."""
    return field_errors(exc, _FIELD_SL, _BY_MESSAGE_SL, default_field="datum").ordered(_FORM_ORDER)


def _time_errors(form: dict[str, str]) -> Errors:
    """The date and the two times, each checked on its own."""
    errors = Errors()
    try:
        date.fromisoformat(form.get("datum", ""))
    except ValueError:
        errors.add("datum", "Izberite datum (dan, mesec in leto).")
    for field, what in (("od", "začetka"), ("do", "konca")):
        try:
            domain.parse_hhmm(form.get(field, ""))
        except ValueError:
            errors.add(field, f"Vpišite uro {what}, na primer 18:00.")
    return errors


@pages.post("/rooms/{room_id}/rezervacija", response_class=HTMLResponse, dependencies=[rate_limit("booking")])
async def room_request(room_id: str, request: Request) -> Response:
    """The request form without JavaScript: errors re-render the page in Slovenian; success
    redirects to the requester's status page (the pending state)."""
    ctx = _ctx(request)
    raw = await request.form()
    form = {k: str(v).strip() for k, v in raw.items() if isinstance(v, str)}
    errors = _time_errors(form)
    if errors:
        return await _room_page(request, room_id, week=None, form=form, errors=errors, status_code=422)
    day = date.fromisoformat(form["datum"])
    start = domain.local_instant(day, domain.parse_hhmm(form["od"]))
    end = domain.local_instant(day, domain.parse_hhmm(form["do"]))
    try:
        body = BookingIn(
            room_id=room_id,
            starts_at=start,
            ends_at=end,
            purpose=form.get("purpose", ""),
            category=form.get("category") or "other",  # type: ignore[arg-type]
            group_kind=form.get("group_kind") or "individual",  # type: ignore[arg-type]
            name=form.get("name", ""),
            email=form.get("email") or None,
            phone=form.get("phone") or None,
            attendees=form.get("attendees") or 0,  # type: ignore[arg-type]
        )
    except ValidationError as exc:
        return await _room_page(request, room_id, week=None, form=form, errors=_request_errors(exc), status_code=422)
    await _room(ctx, room_id)
    try:
        made = await service.request_booking(ctx.db, ctx.settings, body)
    except service.RuleBroken as exc:
        for v in exc.violations:
            errors.add(_RULE_FIELD.get(v.rule, "datum"), v.sl)
        errors = errors.ordered(_FORM_ORDER)
        return await _room_page(request, room_id, week=None, form=form, errors=errors, status_code=exc.status)
    token = service.requester_token(ctx.settings, made.bookings[0].id)
    return RedirectResponse(f"/rooms/prosnja/{token}", status_code=303)
