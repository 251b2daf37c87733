"""HTTP surface of booking: public API, staff API and pages (thin: translate, call service)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse, Response
from pydantic import AwareDatetime, BaseModel, Field

from shared import clock
from shared.auth import Grant, MaybeStaff, Permit, Record, Staff, current_staff, may
from shared.contracts import KS_NAMES
from shared.web.csv_export import csv_response
from shared.web.ratelimit import RATE_LIMITED, rate_limit

from . import bookings, decisions, messages, rooms
from .domain import TZ, Interval
from .errors import Conflict, NotFound, RuleBroken
from .figures import FIGURES_CSV_HEADER, figures_csv_rows
from .schemas import BookingCreated, BookingIn, BookingOut, RoomOut, RoomRulesIn
from .web import (
    NO_ROOM,
    booking_or_404,
    booking_record,
    ctx_of,
    decide,
    ks_scope,
    room_or_404,
    room_record,
    usage_figures,
)

api = APIRouter(prefix="/api/v1", tags=["booking"])

MAX_WINDOW = timedelta(days=62)


def _conflict(exc: RuleBroken) -> JSONResponse:
    body: dict[str, Any] = {"detail": str(exc.message), "rules": [v.rule for v in exc.violations]}
    if exc.conflicts:
        body["conflicts"] = exc.conflicts
    return JSONResponse(body, status_code=exc.status)


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
    return [rooms.to_out(r) for r in await rooms.list_rooms(ctx_of(request).db, ks)]


@api.get("/rooms/{room_id}", response_model=RoomOut, summary="One community room, with its rules")
async def get_room(room_id: str, request: Request) -> RoomOut:
    return rooms.to_out(await room_or_404(ctx_of(request), room_id))


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
    result = await rooms.import_rooms(ctx_of(request).db, staff, body)
    return {"created": result.created, "updated": result.updated, "errors": result.errors}


@api.patch(
    "/rooms/{room_id}",
    response_model=RoomOut,
    summary="Change a room's details and rules (staff)",
    responses={409: {"description": "The new rules contradict each other (e.g. a minimum longer than the maximum)."}},
)
async def update_room(room_id: str, body: RoomRulesIn, request: Request, staff: RoomsEdit) -> RoomOut:
    ctx = ctx_of(request)
    try:
        return rooms.to_out(await rooms.update_room(ctx.db, room_id, body, staff))
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc.message)) from None


class ClosureIn(BaseModel):
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    reason: str = Field(min_length=1, max_length=300, examples=["volitve", "pleskanje"])


class ClosureOut(ClosureIn):
    id: str
    room_id: str
    cancelled: list[str] = Field(default_factory=list, description="The bookings and requests the closure cancelled.")


@api.post(
    "/rooms/{room_id}/closures",
    status_code=status.HTTP_201_CREATED,
    response_model=ClosureOut,
    summary="Close a room for a while (staff)",
    description="Residents cannot book the room then. The bookings and requests that hold the room in that "
    "time (and are not over yet) are cancelled by staff, with the closure's reason; each requester is told "
    "(`booking.booking.cancelled`). `cancelled` lists their ids.",
)
async def add_closure(room_id: str, body: ClosureIn, request: Request, staff: RoomsEdit) -> ClosureOut:
    ctx = ctx_of(request)
    if body.ends_at <= body.starts_at:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "ends_at: must be after starts_at")
    closed = await rooms.add_closure(ctx.db, ctx.settings, room_id, body.starts_at, body.ends_at, body.reason, staff)
    out = ClosureOut.model_validate(closed.closure, from_attributes=True)
    return out.model_copy(update={"cancelled": [b.id for b in closed.cancelled]})


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
    ctx = ctx_of(request)
    window = _window(frm, to)
    try:
        _room_row, _rules, avail = await bookings.room_availability(ctx.db, room_id, window)
    except NotFound:
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
def _created(made: bookings.Created, personal: bool) -> BookingCreated:
    outs = [bookings.booking_out(b, personal=personal) for b in made.bookings]
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
    ctx = ctx_of(request)
    room = await room_or_404(ctx, body.room_id)
    if staff is not None and not may(staff, "booking.create", Record(ks=room.ks)):
        staff = None  # staff of another KS (and organisers) ask like any resident
    try:
        made = await bookings.request_booking(ctx.db, ctx.settings, body, staff=staff)
    except RuleBroken as exc:
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
    ctx = ctx_of(request)
    scope = ks_scope(staff, ks)
    rows = await bookings.list_bookings(ctx.db, status=status_, ks=scope, room_id=room_id)
    return [bookings.booking_out(b, personal=True) for b, _room in rows]


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
    ctx = ctx_of(request)
    booking, room = await booking_or_404(ctx, booking_id)
    if may(staff, "booking.read", Record(ks=room.ks)):
        return bookings.booking_out(booking, personal=True)
    if token is not None and messages.booking_id_from_token(ctx.settings, token) == booking_id:
        return bookings.booking_out(booking, personal=True)  # the requester's own link
    return bookings.booking_out(booking).model_copy(update={"purpose": "", "reason": None})


class RejectIn(BaseModel):
    reason: str = Field(min_length=1, max_length=1000, description="Told to the requester.")


class CancelIn(BaseModel):
    reason: str | None = Field(default=None, max_length=1000)


@api.post("/bookings/{booking_id}/approve", response_model=BookingOut, summary="Approve a request (staff)")
async def approve(booking_id: str, request: Request, staff: Approve) -> BookingOut:
    return await decide(request, booking_id, staff, "approve")


@api.post("/bookings/{booking_id}/reject", response_model=BookingOut, summary="Reject a request, with a reason (staff)")
async def reject(booking_id: str, body: RejectIn, request: Request, staff: Approve) -> BookingOut:
    return await decide(request, booking_id, staff, "reject", body.reason.strip())


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
    ctx = ctx_of(request)
    reason = body.reason if body else None
    if token is not None and not request.headers.get("authorization"):
        if messages.booking_id_from_token(ctx.settings, token) != booking_id:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "Povezava ni veljavna. / The link is not valid.")
        await booking_or_404(ctx, booking_id)
        try:
            booking = await decisions.cancel(ctx.db, ctx.settings, booking_id, by="requester", reason=reason)
        except Conflict as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc.message)) from None
        return bookings.booking_out(booking)
    return await decide(request, booking_id, staff or current_staff(request), "cancel", reason)


# ======================================================================================
# Room-use figures (staff)
# ======================================================================================
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
    return await usage_figures(request, staff, period, frm, to, ks)


@api.get("/figures.csv", summary="Room use as CSV for a Slovenian Excel (staff)", response_class=Response)
async def figures_csv(
    request: Request,
    staff: Figures,
    period: Literal["week", "month"] = "month",
    frm: Annotated[date | None, Query(alias="from")] = None,
    to: date | None = None,
    ks: str | None = None,
) -> Response:
    rows = await usage_figures(request, staff, period, frm, to, ks)
    return csv_response(figures_csv_rows(rows), header=FIGURES_CSV_HEADER, filename=f"uporaba-prostorov-{period}.csv")
