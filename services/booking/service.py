"""Use cases of the booking service: each opens one transaction, applies the domain rules
and writes rows + outbox messages together.

No double booking: the overlap check and the insert run in ONE transaction that is
serialised per room — on SQLite by `BEGIN IMMEDIATE` (shared.db: the whole file's write
lock is taken before the first read), on PostgreSQL by `SELECT … FROM rooms … FOR UPDATE`
on the room's row — and on PostgreSQL the exclusion constraint `ex_bookings_no_overlap`
is the last line of defence.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.auth import Staff, change_refusal, require_change
from shared.contact import sms_refusal
from shared.contracts import KS_SLUGS
from shared.contracts.booking import (
    BOOKING_MESSAGE_TYPES,
    BookingChanged,
    Requester,
)
from shared.db import Database
from shared.links import SignedIds
from shared.models import new_id, utcnow
from shared.outbox import add_to_outbox
from shared.settings import Settings

from . import domain
from .domain import Interval, Rules, Violation
from .models import HOLDING, Booking, Closure, Room
from .schemas import BookingCreated as BookingCreated  # the API imports it from here
from .schemas import BookingIn, BookingOut, RoomOut, RoomRulesIn, SkippedDate

SOURCE = "/kranj/booking"
TOKEN_SALT = "kranj.booking.requester-link.v1"
_KS_ORDER = {slug: i for i, slug in enumerate(KS_SLUGS)}


class NotFound(Exception):
    pass


class Conflict(Exception):
    """The booking's state does not allow this (HTTP 409)."""


class RuleBroken(Exception):
    """The room does not allow this request (HTTP 409), with every reason."""

    def __init__(
        self, violations: list[Violation], conflicts: list[dict[str, Any]] | None = None, *, status: int = 409
    ) -> None:
        self.violations = violations
        self.conflicts = conflicts or []
        self.status = status  # 409; 403 where the request is not the requester's to make; 422 a phone we cannot text
        super().__init__(self.detail)

    @property
    def detail(self) -> str:
        return " ".join(v.sl for v in self.violations) + " / " + " ".join(v.en for v in self.violations)


def to_out(room: Room) -> RoomOut:
    return RoomOut.model_validate(room, from_attributes=True)


def booking_out(booking: Booking, *, personal: bool = False) -> BookingOut:
    data = booking.model_dump()
    if not personal:
        data.update(name=None, email=None, phone=None)
    return BookingOut.model_validate(data)


# --------------------------------------------------------------------------------------
# Rooms
# --------------------------------------------------------------------------------------
def _order(room: Room) -> tuple[int, str]:
    return (_KS_ORDER.get(room.ks, len(_KS_ORDER)), room.name)


async def list_rooms(db: Database, ks: str | None = None) -> list[Room]:
    """Rooms in the order of the KS list (not the alphabet of slugs: Čirče comes after Center)."""
    async with db.session() as session:
        query = select(Room)
        if ks:
            query = query.where(Room.ks == ks)
        rows = list((await session.exec(query)).all())
    return sorted(rows, key=_order)


async def get_room(db: Database, room_id: str) -> Room:
    async with db.session() as session:
        room = await session.get(Room, room_id)
    if room is None:
        raise NotFound(room_id)
    return room


async def update_room(db: Database, room_id: str, changes: RoomRulesIn, staff: Staff | None = None) -> Room:
    async with db.session() as session:
        room = await session.get(Room, room_id)
        if room is None:
            raise NotFound(room_id)
        if staff is not None:
            require_change(staff, room.ks)
        for key, value in changes.model_dump(exclude_unset=True).items():
            if value is not None:
                setattr(room, key, value)
        if room.max_duration_minutes < room.min_duration_minutes:
            raise Conflict("Najdaljše trajanje je krajše od najkrajšega. / max_duration is below min_duration.")
        session.add(room)
        await session.commit()
    return room


async def add_closure(
    db: Database, room_id: str, starts_at: datetime, ends_at: datetime, reason: str, staff: Staff | None = None
) -> Closure:
    async with db.session() as session:
        room = await session.get(Room, room_id)
        if room is None:
            raise NotFound(room_id)
        if staff is not None:
            require_change(staff, room.ks)
        closure = Closure(room_id=room_id, starts_at=starts_at, ends_at=ends_at, reason=reason)
        session.add(closure)
        await session.commit()
    return closure


async def _closures(session: AsyncSession, room_id: str, window: Interval) -> list[tuple[Interval, str]]:
    rows = (
        await session.exec(
            select(Closure).where(
                Closure.room_id == room_id, Closure.starts_at < window.end, Closure.ends_at > window.start
            )
        )
    ).all()
    return [(Interval(c.starts_at, c.ends_at), c.reason) for c in rows]


async def _holding(session: AsyncSession, room_id: str, window: Interval) -> list[Booking]:
    rows = (
        await session.exec(
            select(Booking).where(
                Booking.room_id == room_id,
                col(Booking.status).in_(HOLDING),
                Booking.starts_at < window.end,
                Booking.ends_at > window.start,
            )
        )
    ).all()
    return list(rows)


# --------------------------------------------------------------------------------------
# Links and messages
# --------------------------------------------------------------------------------------
def requester_token(settings: Settings, booking_id: str) -> str:
    return SignedIds(settings, TOKEN_SALT).sign(booking_id)


def booking_id_from_token(settings: Settings, token: str) -> str | None:
    return SignedIds(settings, TOKEN_SALT).read(token)


def status_url(settings: Settings, booking_id: str) -> str:
    return f"{settings.public_base('booking')}/rooms/prosnja/{requester_token(settings, booking_id)}"


def cancel_url(settings: Settings, booking_id: str) -> str:
    return status_url(settings, booking_id) + "/preklic"


def message_data(settings: Settings, room: Room, booking: Booking, cancelled_by: str | None = None) -> BookingChanged:
    holding = booking.status in HOLDING
    return BookingChanged(
        booking_id=booking.id,
        series_id=booking.series_id,
        room_id=room.id,
        room_name=room.name,
        room_address=room.address,
        ks=room.ks,
        starts_at=booking.starts_at,
        ends_at=booking.ends_at,
        purpose=booking.purpose,
        category=booking.category,  # type: ignore[arg-type]
        group_kind=booking.group_kind,  # type: ignore[arg-type]
        attendees=booking.attendees,
        status=booking.status,  # type: ignore[arg-type]
        reason=booking.reason,
        requester=Requester(
            name=booking.name,
            email=booking.email,
            phone=booking.phone,
            language=booking.language,  # type: ignore[arg-type]
        ),
        cancelled_by=cancelled_by,  # type: ignore[arg-type]
        expires_at=booking.expires_at if booking.status == "requested" else None,
        access_instructions=(room.access_instructions or None) if booking.status == "confirmed" else None,
        status_url=status_url(settings, booking.id),  # type: ignore[arg-type]
        cancel_url=cancel_url(settings, booking.id) if holding else None,  # type: ignore[arg-type]
        review_url=(  # type: ignore[arg-type]
            f"{settings.public_base('booking')}/rooms/osebje/prosnje" if booking.status == "requested" else None
        ),
        event_id=booking.event_id,
        # Staff or the events service (for its staff's event) made or asked for it, or staff
        # approved it: its words were seen by staff (notify, services/notify/relay.py).
        staff_vouched=booking.created_by is not None
        or booking.event_id is not None
        or (booking.status == "confirmed" and booking.decided_by is not None),
    )


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
        _announce(session, settings, room, booking, cancelled_by="requester")
        released.append(booking)
    return released


def announce(session: AsyncSession, settings: Settings, room: Room, booking: Booking) -> None:
    """Announce a booking's current status again (an answer to a repeated room request)."""
    _announce(session, settings, room, booking)


def _announce(
    session: AsyncSession, settings: Settings, room: Room, booking: Booking, cancelled_by: str | None = None
) -> None:
    add_to_outbox(
        session,
        BOOKING_MESSAGE_TYPES[booking.status],
        message_data(settings, room, booking, cancelled_by),
        source=SOURCE,
        subject=booking.id,
    )


# --------------------------------------------------------------------------------------
# Requesting
# --------------------------------------------------------------------------------------
@dataclass
class Created:
    bookings: list[Booking]
    skipped: list[SkippedDate] = field(default_factory=list)


def _is_exclusion_violation(exc: IntegrityError) -> bool:
    orig = getattr(exc, "orig", None)
    text = f"{type(orig).__name__} {getattr(orig, 'sqlstate', '')} {orig} {exc}"
    return "ExclusionViolation" in text or "23P01" in text or "ex_bookings_no_overlap" in text


TAKEN = Violation("taken", "Termin je že zaseden.", "That time is already booked.")
SERIES_NEEDS_STAFF = Violation(
    "series-needs-staff",
    "Ponavljajočih se terminov ni mogoče rezervirati prek spleta. Za redno uporabo prostora se obrnite na "
    "svojo krajevno skupnost (uradne ure ali e-pošta): termine vpiše osebje KS. Posamezen termin lahko "
    "zaprosite tukaj.",
    "A recurring booking cannot be requested online. For regular use of a room, ask your KS: its staff "
    "book a series. A single date can be requested here.",
)


def pending_limit(limit: int) -> Violation:
    return Violation(
        "pending-limit",
        f"Na odločitev že čakajo {limit} vaše prošnje (ta e-poštni naslov ali telefon). Počakajte na odgovor "
        "KS ali prekličite katero od prošenj s povezavo iz sporočila, nato zaprosite znova.",
        f"{limit} of your requests (this email or phone) are already awaiting a decision. Wait for the KS's "
        "answer or cancel one with the link in its message, then ask again.",
    )


async def _lock_contacts(session: AsyncSession, db: Database, keys: list[str]) -> None:
    """PostgreSQL: serialise the requests of one contact across rooms for the rest of the
    transaction (the room lock serialises only one room); SQLite's BEGIN IMMEDIATE already
    serialises every writer. Sorted, so two requests never wait for each other in a circle."""
    if db.is_sqlite:
        return
    import sqlalchemy as sa

    for key in sorted(set(keys)):
        await session.exec(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(f"booking.contact:{key}"))))  # type: ignore[call-overload]


async def pending_of_contact(session: AsyncSession, *, email: str | None, phone: str | None, now: datetime) -> int:
    """A resident's requests that still hold a slot awaiting a decision, for this email or
    phone (a series counts once). Expired holds (past `expires_at`) do not count."""
    import sqlalchemy as sa
    from sqlmodel import func

    contact = []
    if email:
        contact.append(func.lower(Booking.email) == email.lower())
    if phone:
        contact.append(Booking.phone == phone)
    if not contact:
        return 0
    query = select(func.count(sa.distinct(func.coalesce(Booking.series_id, Booking.id)))).where(
        Booking.status == "requested",
        col(Booking.created_by).is_(None),  # a resident's request (not staff, not the events service)
        sa.or_(col(Booking.expires_at).is_(None), col(Booking.expires_at) > now),
        sa.or_(*contact),
    )
    return int((await session.exec(query)).one())


async def _lock_room(session: AsyncSession, db: Database, room_id: str) -> Room:
    query = select(Room).where(Room.id == room_id)
    if not db.is_sqlite:
        query = query.with_for_update()  # serialises every writer of this room's bookings
    room = (await session.exec(query)).first()
    if room is None:
        raise NotFound(room_id)
    return room


async def _expire_overdue(
    session: AsyncSession, settings: Settings, room: Room, rows: list[Booking], now: datetime
) -> list[Booking]:
    """Requests past their expiry stop holding their slot right now (announced as expired)."""
    still = []
    for booking in rows:
        if booking.status == "requested" and booking.expires_at is not None and booking.expires_at <= now:
            _expire(session, settings, room, booking, now)
        else:
            still.append(booking)
    return still


def _expire(session: AsyncSession, settings: Settings, room: Room, booking: Booking, now: datetime) -> None:
    booking.status = "expired"
    booking.reason = "Prošnja ni bila potrjena pravočasno. / The request was not approved in time."
    booking.decided_at = now
    session.add(booking)
    _announce(session, settings, room, booking)


def _slots(data: BookingIn) -> list[Interval]:
    first = Interval(data.starts_at, data.ends_at)
    if data.recurrence is None:
        return [first]
    try:
        slots = domain.occurrences(first, data.recurrence.as_rrule())
    except ValueError as exc:
        raise RuleBroken(
            [Violation("recurrence", "Ponavljanje ni pravilno zapisano.", f"Bad recurrence: {exc}")]
        ) from exc
    if not slots:
        raise RuleBroken([Violation("recurrence", "Ponavljanje nima nobenega datuma.", "The series has no dates.")])
    return slots


async def request_booking(
    db: Database, settings: Settings, data: BookingIn, *, staff: Staff | None = None, now: datetime | None = None
) -> Created:
    """Check every date against the room's rules and its bookings, then write the bookings
    and their messages — check and insert in one transaction serialised per room."""
    now = now or utcnow()
    if staff is None and data.recurrence is not None:
        raise RuleBroken([SERIES_NEEDS_STAFF], status=403)
    if refusal := sms_refusal(data.phone, settings):  # a country KRANJ_SMS_COUNTRY_CODES leaves out
        raise RuleBroken([Violation("sms-country", refusal.sl, refusal.en)], status=422)
    slots = _slots(data)
    email = str(data.email).lower() if data.email else None
    try:
        async with db.session() as session:
            if staff is None:
                await _lock_contacts(session, db, [k for k in (email, data.phone) if k])
                limit = settings.booking_pending_per_contact
                if await pending_of_contact(session, email=email, phone=data.phone, now=now) >= limit:
                    raise RuleBroken([pending_limit(limit)])
            created = await book_in_session(
                session,
                db,
                settings,
                data,
                slots,
                now=now,
                staff_rules=staff is not None,
                confirm=True if staff is not None else None,
                created_by=staff.subject if staff else None,
            )
            await session.commit()
    except IntegrityError as exc:
        if _is_exclusion_violation(exc):
            raise RuleBroken([TAKEN]) from exc
        raise
    return created


async def book_in_session(
    session: AsyncSession,
    db: Database,
    settings: Settings,
    data: BookingIn,
    slots: list[Interval],
    *,
    now: datetime,
    staff_rules: bool,
    confirm: bool | None,
    created_by: str | None,
    event_id: str | None = None,
) -> Created:
    """The rules and the insert, inside the caller's transaction (the caller commits).
    `confirm=None` confirms only where the room does not need approval. Raises RuleBroken."""
    room = await _lock_room(session, db, data.room_id)
    rules = Rules.from_room(room)
    span = Interval(min(s.start for s in slots) - rules.buffer, max(s.end for s in slots) + rules.buffer)
    closures = await _closures(session, room.id, span)
    holding = await _expire_overdue(session, settings, room, await _holding(session, room.id, span), now)
    taken = [Interval(b.starts_at, b.ends_at) for b in holding]
    accepted: list[Interval] = []
    skipped: list[SkippedDate] = []
    first_violations: list[Violation] = []
    for slot in slots:
        found = domain.check_request(
            rules,
            slot,
            attendees=data.attendees,
            now=now,
            closures=closures,
            taken=taken + accepted,
            staff=staff_rules,
        )
        if found:
            first_violations = first_violations or found
            skipped.append(SkippedDate(starts_at=slot.start, ends_at=slot.end, reasons=[v.text() for v in found]))
        else:
            accepted.append(slot)
    if data.recurrence is None and first_violations:
        raise RuleBroken(first_violations)
    if skipped and (data.on_conflict == "fail" or not accepted):
        dates = ", ".join(s.starts_at.astimezone(domain.TZ).strftime("%d. %m. %Y") for s in skipped)
        violation = Violation(
            "series-conflict",
            f"Nekateri datumi niso prosti ({dates}); izberite, ali jih izpustimo (on_conflict=skip).",
            f"Some dates are not available ({dates}); send on_conflict=skip to book the others.",
        )
        raise RuleBroken([violation, *first_violations], [s.model_dump(mode="json") for s in skipped])
    confirmed = confirm if confirm is not None else not rules.requires_approval
    series_id = new_id() if data.recurrence is not None else None
    made = []
    for slot in accepted:
        booking = Booking(
            series_id=series_id,
            room_id=room.id,
            starts_at=slot.start,
            ends_at=slot.end,
            purpose=data.purpose,
            category=data.category,
            group_kind=data.group_kind,
            name=data.name,
            email=str(data.email) if data.email else None,
            phone=data.phone,
            language=data.language,
            attendees=data.attendees,
            status="confirmed" if confirmed else "requested",
            created_by=created_by,
            decided_by=created_by if confirmed else None,
            decided_at=now if confirmed else None,
            created_at=now,
            expires_at=None if confirmed else _hold_until(settings, room, slot, now),
            event_id=event_id,
        )
        session.add(booking)
        _announce(session, settings, room, booking)
        made.append(booking)
    return Created(made, skipped)


def _hold_until(settings: Settings, room: Room, slot: Interval, now: datetime) -> datetime:
    """When an unapproved request stops holding its slot: after the room's own time to
    decide, at most `booking_pending_max_hours` (7 days), and never after its start."""
    hours = min(room.request_ttl_hours, settings.booking_pending_max_hours)
    return min(now + timedelta(hours=hours), slot.start)


# --------------------------------------------------------------------------------------
# Deciding, cancelling, expiring
# --------------------------------------------------------------------------------------
async def get_booking(db: Database, booking_id: str) -> tuple[Booking, Room]:
    async with db.session() as session:
        booking = await session.get(Booking, booking_id)
        if booking is None:
            raise NotFound(booking_id)
        room = await session.get(Room, booking.room_id)
    assert room is not None
    return booking, room


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
        f"Rezervacije, ki je {_STATE_SL[booking.status]}, ni mogoče {action_sl}. / "
        f"A {booking.status} booking cannot be {action_en}."
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
            _expire(session, settings, room, booking, now)
            await session.commit()
            raise _state_conflict(booking, "odobriti", "approved")
        if booking.status != "requested":
            raise _state_conflict(booking, "odobriti", "approved")
        booking.status = "confirmed"
        booking.decided_by = staff.subject
        booking.decided_at = now
        booking.expires_at = None
        session.add(booking)
        _announce(session, settings, room, booking)
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
        _announce(session, settings, room, booking)
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
            raise Conflict("Rezervacija je že mimo. / The booking is already over.")
        booking.status = "cancelled"
        booking.reason = reason
        booking.decided_by = staff.subject if staff else "requester"
        booking.decided_at = utcnow()
        session.add(booking)
        _announce(session, settings, room, booking, cancelled_by=by)
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
            query = query.with_for_update(skip_locked=True, of=Booking)  # type: ignore[arg-type]
        rows = list((await session.exec(query)).all())
        if not rows:
            await session.rollback()
            return 0
        rooms = {
            r.id: r for r in (await session.exec(select(Room).where(col(Room.id).in_({b.room_id for b in rows})))).all()
        }
        for booking in rows:
            _expire(session, settings, rooms[booking.room_id], booking, now)
        await session.commit()
    return len(rows)


async def list_bookings(
    db: Database,
    *,
    status: str | None = None,
    ks: list[str] | None = None,
    room_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[tuple[Booking, Room]]:
    async with db.session() as session:
        query = select(Booking, Room).join(Room, col(Room.id) == col(Booking.room_id))
        if status:
            query = query.where(Booking.status == status)
        if ks is not None:
            query = query.where(col(Room.ks).in_(ks))
        if room_id:
            query = query.where(Booking.room_id == room_id)
        if since:
            query = query.where(Booking.ends_at > since)
        if until:
            query = query.where(Booking.starts_at < until)
        rows = (await session.exec(query.order_by(col(Booking.starts_at)))).all()
    return [(b, r) for b, r in rows]


# --------------------------------------------------------------------------------------
# Availability, calendar, figures
# --------------------------------------------------------------------------------------
async def room_availability(
    db: Database, room_id: str, window: Interval, *, now: datetime | None = None
) -> tuple[Room, Rules, domain.Availability]:
    now = now or utcnow()
    async with db.session() as session:
        room = await session.get(Room, room_id)
        if room is None:
            raise NotFound(room_id)
        rules = Rules.from_room(room)
        wide = window.widened(rules.buffer)
        closures = await _closures(session, room_id, wide)
        bookings = [
            (Interval(b.starts_at, b.ends_at), b.status)
            for b in await _holding(session, room_id, wide)
            if not (b.status == "requested" and b.expires_at is not None and b.expires_at <= now)
        ]
    return room, rules, domain.availability(rules, window, now=now, closures=closures, bookings=bookings)


def figures(rows: list[tuple[Booking, Room]], period: Literal["week", "month"]) -> list[dict[str, Any]]:
    """Room use per room and period (confirmed bookings): count, hours, hours outside the KS
    office hours, and counts by category and by kind of group."""
    groups: dict[tuple[str, date], dict[str, Any]] = {}
    by_category: dict[tuple[str, date], Counter[str]] = defaultdict(Counter)
    by_group: dict[tuple[str, date], Counter[str]] = defaultdict(Counter)
    for booking, room in rows:
        if booking.status != "confirmed":
            continue
        key = (room.id, domain.period_start(booking.starts_at, period))
        slot = Interval(booking.starts_at, booking.ends_at)
        entry = groups.setdefault(
            key,
            {
                "room_id": room.id,
                "room_name": room.name,
                "ks": room.ks,
                "period": period,
                "period_start": key[1].isoformat(),
                "bookings": 0,
                "hours": 0.0,
                "hours_outside_office_hours": 0.0,
                "attendees": 0,
            },
        )
        entry["bookings"] += 1
        entry["hours"] += slot.duration.total_seconds() / 3600
        entry["hours_outside_office_hours"] += domain.hours_outside_office(Rules.from_room(room), slot)
        entry["attendees"] += booking.attendees
        by_category[key][booking.category] += 1
        by_group[key][booking.group_kind] += 1
    out = []
    for key in sorted(groups, key=lambda k: (_KS_ORDER.get(groups[k]["ks"], 99), k[0], k[1])):
        entry = groups[key]
        entry["hours"] = round(entry["hours"], 2)
        entry["hours_outside_office_hours"] = round(entry["hours_outside_office_hours"], 2)
        entry["by_category"] = dict(sorted(by_category[key].items()))
        entry["by_group_kind"] = dict(sorted(by_group[key].items()))
        out.append(entry)
    return out


CATEGORY_SL = {
    "social": "druženje",
    "education": "izobraževanje, delavnice",
    "culture": "kultura",
    "sport": "šport in rekreacija",
    "meeting": "sestanek",
    "other": "drugo",
}
GROUP_SL = {
    "individual": "posameznik",
    "association": "društvo",
    "informal-group": "neformalna skupina",
    "ks": "krajevna skupnost",
    "public-body": "javni zavod",
    "other": "drugo",
}


def _num(value: float) -> str:
    return f"{value:.2f}".replace(".", ",")  # a Slovenian Excel reads a decimal comma


FIGURES_CSV_HEADER = [
    "KS",
    "prostor",
    "obdobje",
    "začetek obdobja",
    "število rezervacij",
    "ur skupaj",
    "ur izven uradnih ur",
    "udeležencev",
    *(f"namen: {CATEGORY_SL[c]}" for c in CATEGORY_SL),
    *(f"skupina: {GROUP_SL[g]}" for g in GROUP_SL),
]


def figures_csv_rows(rows: list[dict[str, Any]]) -> list[list[object]]:
    """The rows of `figures.csv` (decimal commas: a Slovenian Excel reads them as numbers);
    written by the platform's one CSV writer (shared.web.csv_export), which keeps a room
    named like a formula as text."""
    return [
        [
            row["ks"],
            row["room_name"],
            "teden" if row["period"] == "week" else "mesec",
            row["period_start"],
            row["bookings"],
            _num(row["hours"]),
            _num(row["hours_outside_office_hours"]),
            row["attendees"],
            *(row["by_category"].get(c, 0) for c in CATEGORY_SL),
            *(row["by_group_kind"].get(g, 0) for g in GROUP_SL),
        ]
        for row in rows
    ]


# --------------------------------------------------------------------------------------
# Importing rooms (a spreadsheet from the KS offices)
# --------------------------------------------------------------------------------------
ROOM_CSV_COLUMNS = ("id", "ks", "name", "address", "capacity", "accessibility", "equipment", "access_instructions")


@dataclass
class RoomImport:
    created: int = 0
    updated: int = 0
    errors: list[str] = field(default_factory=list)


def parse_rooms_csv(content: bytes) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    """UTF-8 (with or without BOM, else Windows-1250), comma or semicolon; header columns
    `id`, `ks`, `name`, `address`, `capacity` and optionally `accessibility`, `equipment`,
    `access_instructions`. Returns good rows with their line numbers and readable errors."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = content.decode("cp1250")
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in ROOM_CSV_COLUMNS[:5] if c not in header]
    if missing:
        return [], [f"vrstica 1: manjkajo stolpci {', '.join(missing)} / missing columns"]
    rows, errors = [], []
    for record in reader:
        line = reader.line_num
        values = {(k or "").strip().lower(): (v or "").strip() for k, v in record.items()}
        problems = []
        if not re.fullmatch(r"[a-z0-9-]{2,64}", values.get("id", "")):
            problems.append("id: male črke, številke in vezaji (2–64)")
        if values.get("ks") not in KS_SLUGS:
            problems.append(f"ks: neznana KS {values.get('ks')!r}")
        if not values.get("name") or not values.get("address"):
            problems.append("name in address sta obvezna")
        try:
            capacity = int(values.get("capacity", ""))
            if not 1 <= capacity <= 1000:
                raise ValueError
        except ValueError:
            problems.append(f"capacity: celo število 1–1000, ne {values.get('capacity')!r}")
            capacity = 0
        if problems:
            errors.append(f"vrstica {line}: " + "; ".join(problems))
            continue
        rows.append(
            (
                line,
                {
                    "id": values["id"],
                    "ks": values["ks"],
                    "name": values["name"][:200],
                    "address": values["address"][:300],
                    "capacity": capacity,
                    **{k: values[k][:5000] for k in ROOM_CSV_COLUMNS[5:] if values.get(k)},
                },
            )
        )
    return rows, errors


async def import_rooms(db: Database, staff: Staff, content: bytes) -> RoomImport:
    """Create or update rooms from a CSV; a bad row is reported by line number and the good
    rows still load. New rooms get the default rules. A row may touch a room only where the
    staff member acts for BOTH the KS the room belongs to now and the KS the row names: no
    moving another KS's room into one's own (and so reading its bookings)."""
    rows, errors = parse_rooms_csv(content)
    result = RoomImport(errors=errors)
    async with db.session() as session:
        for line, values in rows:
            room = await session.get(Room, values["id"])
            refusal = change_refusal(staff, room.ks if room is not None else None, values["ks"])
            if refusal is not None:
                result.errors.append(f"vrstica {line}: {refusal}")
                continue
            if room is None:
                session.add(Room(**values, opening_hours=_DEFAULT_OPENING, office_hours={}, requires_approval=True))
                result.created += 1
            else:
                for key, value in values.items():
                    setattr(room, key, value)
                session.add(room)
                result.updated += 1
        await session.commit()
    result.errors.sort(key=_line_number)
    return result


def _line_number(error: str) -> int:
    found = re.match(r"vrstica (\d+):", error)
    return int(found.group(1)) if found else 0


_DEFAULT_OPENING = {day: [["08:00", "22:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat")} | {
    "sun": [["09:00", "21:00"]]
}
