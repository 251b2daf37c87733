"""The request helpers booking's JSON API (api.py) and its pages (pages.py, staff_pages.py,
staff_rooms.py, staff_rules.py) share: the service's context, a room or booking or a 404,
the records of the permission table, the KS a staff member may read, a staff decision on a
booking, and the room-use figures of a period."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi import HTTPException, Request, status

from shared import clock
from shared.auth import Record, Staff, authorize, require_ks
from shared.contracts import KS_NAMES
from shared.web import ServiceApp

from . import bookings, decisions, figures, rooms
from .domain import TZ
from .errors import Conflict, NotFound
from .models import Booking, Room
from .schemas import BookingOut

NO_ROOM = "Prostora ni. / No such room."
NO_BOOKING = "Rezervacije ni. / No such booking."


def ctx_of(request: Request) -> ServiceApp:
    return request.app.state.ctx


async def room_or_404(ctx: ServiceApp, room_id: str) -> Room:
    try:
        return await rooms.get_room(ctx.db, room_id)
    except NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_ROOM) from None


async def booking_or_404(ctx: ServiceApp, booking_id: str) -> tuple[Booking, Room]:
    try:
        return await bookings.get_booking(ctx.db, booking_id)
    except NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_BOOKING) from None


# The records of the permission table (shared/permissions.py): a room and a booking belong
# to the room's KS; organisers have no booking rights, so no owner is needed.
async def room_record(request: Request) -> Record:
    return Record(ks=(await room_or_404(ctx_of(request), request.path_params["room_id"])).ks)


async def booking_record(request: Request) -> Record:
    _booking_row, room = await booking_or_404(ctx_of(request), request.path_params["booking_id"])
    return Record(ks=room.ks)


def ks_scope(staff: Staff, ks: str | None) -> list[str] | None:
    """The KS whose bookings the staff member reads: the one asked for (if theirs), else all
    of theirs (None: every KS)."""
    if ks is not None:
        if ks not in KS_NAMES:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"Neznana KS {ks!r}. / Unknown KS.")
        require_ks(staff, ks)
        return [ks]
    if staff.role == "admin" or "*" in staff.ks:
        return None
    return list(staff.ks)


async def decision(request: Request, booking_id: str, staff: Staff, action: str, reason: str | None = None) -> Booking:
    """Approve, reject or cancel (`action`) as staff of the room's KS (403 otherwise); raises
    `Conflict` where the booking's state does not allow it (the pages say why in Slovenian)."""
    ctx = ctx_of(request)
    _booking_row, room = await booking_or_404(ctx, booking_id)
    staff = authorize(staff, "booking.cancel" if action == "cancel" else "booking.approve", Record(ks=room.ks))
    # (the use case checks the KS again, on the locked row)
    if action == "approve":
        return await decisions.approve(ctx.db, ctx.settings, booking_id, staff)
    if action == "reject":
        return await decisions.reject(ctx.db, ctx.settings, booking_id, staff, reason or "")
    return await decisions.cancel(ctx.db, ctx.settings, booking_id, by="staff", reason=reason, staff=staff)


async def decide(request: Request, booking_id: str, staff: Staff, action: str, reason: str | None = None) -> BookingOut:
    """`decision` for the JSON API: a 409 with both languages where the state does not allow it."""
    try:
        booking = await decision(request, booking_id, staff, action, reason)
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc.message)) from None
    return bookings.booking_out(booking, personal=True)


async def usage_figures(
    request: Request, staff: Staff, period: str, frm: date | None, to: date | None, ks: str | None
) -> list[dict[str, Any]]:
    """The figures of confirmed bookings from `frm` (default: five months back) to `to`
    (default: two months ahead), in the KS the staff member reads."""
    ctx = ctx_of(request)
    today = clock.local_now().date()
    frm = frm or (today.replace(day=1) - timedelta(days=150)).replace(day=1)
    to = to or today + timedelta(days=62)
    since = datetime.combine(frm, datetime.min.time(), TZ).astimezone(UTC)
    until = datetime.combine(to + timedelta(days=1), datetime.min.time(), TZ).astimezone(UTC)
    rows = await bookings.list_bookings(ctx.db, status="confirmed", ks=ks_scope(staff, ks), since=since, until=until)
    return figures.figures(rows, period)  # type: ignore[arg-type]
