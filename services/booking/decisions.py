"""Use cases after a request: staff approve or reject it, the requester or staff cancel a
booking, a request nobody decided on in time expires, and the events service's bookings
are released when its event is cancelled or moved. Each locks the booking's row (on
PostgreSQL) and writes the new state and its message in one transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.auth import Staff, require_change
from shared.db import Database
from shared.errors import Bilingual
from shared.models import utcnow
from shared.settings import Settings

from .errors import Conflict, NotFound
from .messages import announce
from .models import HOLDING, Booking, Room


async def bookings_of_event(session: AsyncSession, event_id: str) -> list[Booking]:
    rows = await session.exec(select(Booking).where(Booking.event_id == event_id).order_by(col(Booking.created_at)))
    return list(rows.all())


async def release_event_bookings(
    session: AsyncSession, settings: Settings, event_id: str, reason: str, *, keep: Booking | None = None
) -> list[Booking]:
    """Cancel what the events service holds for one event (it was cancelled, or asked again
    for another time): each holding booking becomes `cancelled` (by the requester, i.e. the
    events service) and is announced, in the caller's transaction. Past bookings stay."""
    released = []
    now = utcnow()
    for booking in await bookings_of_event(session, event_id):
        if booking is keep or booking.status not in HOLDING or booking.ends_at <= now:
            continue
        room = await session.get(Room, booking.room_id)
        if room is None:
            continue
        booking.status = "cancelled"
        booking.reason = reason[:1000] or None
        booking.decided_by = f"events:{event_id}"
        booking.decided_at = now
        session.add(booking)
        announce(session, settings, room, booking, cancelled_by="requester")
        released.append(booking)
    return released


async def _locked_booking(
    session: AsyncSession, db: Database, booking_id: str, staff: Staff | None = None
) -> tuple[Booking, Room]:
    """The booking, locked for this transaction, and its room; with `staff`, a 403 unless
    they act for the KS the room belongs to now (checked on the row being changed)."""
    query = select(Booking).where(Booking.id == booking_id)
    if not db.is_sqlite:
        query = query.with_for_update()
    booking = (await session.exec(query)).first()
    if booking is None:
        raise NotFound(booking_id)
    room = await session.get(Room, booking.room_id)
    assert room is not None
    if staff is not None:
        require_change(staff, room.ks)
    return booking, room


_STATE_SL = {
    "requested": "čaka na odobritev",
    "confirmed": "potrjena",
    "rejected": "zavrnjena",
    "cancelled": "preklicana",
    "expired": "potekla",
}


def _state_conflict(booking: Booking, action_sl: str, action_en: str) -> Conflict:
    return Conflict(
        Bilingual(
            f"Rezervacije, ki je {_STATE_SL[booking.status]}, ni mogoče {action_sl}.",
            f"A {booking.status} booking cannot be {action_en}.",
        )
    )


async def approve(
    db: Database, settings: Settings, booking_id: str, staff: Staff, now: datetime | None = None
) -> Booking:
    now = now or utcnow()
    async with db.session() as session:
        booking, room = await _locked_booking(session, db, booking_id, staff)
        if booking.status == "confirmed":
            return booking  # approving twice changes nothing
        if booking.status == "requested" and booking.expires_at is not None and booking.expires_at <= now:
            expire(session, settings, room, booking, now)
            await session.commit()
            raise _state_conflict(booking, "odobriti", "approved")
        if booking.status != "requested":
            raise _state_conflict(booking, "odobriti", "approved")
        booking.status = "confirmed"
        booking.decided_by = staff.subject
        booking.decided_at = now
        booking.expires_at = None
        session.add(booking)
        announce(session, settings, room, booking)
        await session.commit()
    return booking


async def reject(db: Database, settings: Settings, booking_id: str, staff: Staff, reason: str) -> Booking:
    async with db.session() as session:
        booking, room = await _locked_booking(session, db, booking_id, staff)
        if booking.status == "rejected":
            return booking
        if booking.status != "requested":
            raise _state_conflict(booking, "zavrniti", "rejected")
        booking.status = "rejected"
        booking.reason = reason
        booking.decided_by = staff.subject
        booking.decided_at = utcnow()
        session.add(booking)
        announce(session, settings, room, booking)
        await session.commit()
    return booking


async def cancel(
    db: Database,
    settings: Settings,
    booking_id: str,
    *,
    by: Literal["requester", "staff"],
    reason: str | None = None,
    staff: Staff | None = None,
) -> Booking:
    async with db.session() as session:
        booking, room = await _locked_booking(session, db, booking_id, staff)
        if booking.status == "cancelled":
            return booking
        if booking.status not in HOLDING:
            raise _state_conflict(booking, "preklicati", "cancelled")
        if booking.ends_at <= utcnow():
            raise Conflict(Bilingual("Rezervacija je že mimo.", "The booking is already over."))
        booking.status = "cancelled"
        booking.reason = reason
        booking.decided_by = staff.subject if staff else "requester"
        booking.decided_at = utcnow()
        session.add(booking)
        announce(session, settings, room, booking, cancelled_by=by)
        await session.commit()
    return booking


async def expire_due(db: Database, settings: Settings, *, now: datetime | None = None, batch: int = 100) -> int:
    """Expire requests past `expires_at`. Safe with many replicas: PostgreSQL hands each
    row to one of them (FOR UPDATE SKIP LOCKED); SQLite serialises writers anyway."""
    now = now or utcnow()
    async with db.session() as session:
        query = (
            select(Booking)
            .where(Booking.status == "requested", col(Booking.expires_at).is_not(None), col(Booking.expires_at) <= now)
            .order_by(col(Booking.expires_at))
            .limit(batch)
        )
        if not db.is_sqlite:
            query = query.with_for_update(skip_locked=True, of=Booking)
        rows = list((await session.exec(query)).all())
        if not rows:
            await session.rollback()
            return 0
        rooms = {
            r.id: r for r in (await session.exec(select(Room).where(col(Room.id).in_({b.room_id for b in rows})))).all()
        }
        for booking in rows:
            expire(session, settings, rooms[booking.room_id], booking, now)
        await session.commit()
    return len(rows)


def expire(session: AsyncSession, settings: Settings, room: Room, booking: Booking, now: datetime) -> None:
    """A request past its expiry stops holding its slot (announced as expired)."""
    booking.status = "expired"
    booking.reason = "Prošnja ni bila potrjena pravočasno. / The request was not approved in time."
    booking.decided_at = now
    session.add(booking)
    announce(session, settings, room, booking)
