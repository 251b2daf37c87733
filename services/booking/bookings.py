"""Use cases of asking for a room: what a room holds in a window (availability), a
resident's request or a staff booking (one date or a series), checked against the room's
rules and its bookings, and reading bookings back.

No double booking: the overlap check and the insert run in ONE transaction that is
serialised per room — on SQLite by `BEGIN IMMEDIATE` (shared.db: the whole file's write
lock is taken before the first read), on PostgreSQL by `SELECT … FROM rooms … FOR UPDATE`
on the room's row — and on PostgreSQL the exclusion constraint `ex_bookings_no_overlap`
is the last line of defence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.auth import Staff
from shared.contact import sms_refusal
from shared.db import Database
from shared.models import new_id, utcnow
from shared.settings import Settings

from . import domain
from .decisions import expire
from .domain import Interval, Rules, Violation
from .errors import NotFound, RuleBroken
from .messages import announce
from .models import HOLDING, Booking, Room
from .rooms import closures_in
from .schemas import BookingIn, BookingOut, SkippedDate


def booking_out(booking: Booking, *, personal: bool = False) -> BookingOut:
    data = booking.model_dump()
    if not personal:
        data.update(name=None, email=None, phone=None)
    return BookingOut.model_validate(data)


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
        closures = await closures_in(session, room_id, wide)
        bookings = [
            (Interval(b.starts_at, b.ends_at), b.status)
            for b in await _holding(session, room_id, wide)
            if not (b.status == "requested" and b.expires_at is not None and b.expires_at <= now)
        ]
    return room, rules, domain.availability(rules, window, now=now, closures=closures, bookings=bookings)


# --------------------------------------------------------------------------------------
# Requesting
# --------------------------------------------------------------------------------------
@dataclass
class Created:
    bookings: list[Booking]
    skipped: list[SkippedDate] = field(default_factory=list)
    # why each skipped date was skipped, as the rules say it (the pages show the Slovenian)
    why_skipped: list[list[Violation]] = field(default_factory=list)


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
        contact.append(col(Booking.phone) == phone)
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
            expire(session, settings, room, booking, now)
        else:
            still.append(booking)
    return still


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
    closures = await closures_in(session, room.id, span)
    holding = await _expire_overdue(session, settings, room, await _holding(session, room.id, span), now)
    taken = [Interval(b.starts_at, b.ends_at) for b in holding]
    accepted: list[Interval] = []
    skipped: list[SkippedDate] = []
    why_skipped: list[list[Violation]] = []
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
            why_skipped.append(found)
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
        announce(session, settings, room, booking)
        made.append(booking)
    return Created(made, skipped, why_skipped)


def _hold_until(settings: Settings, room: Room, slot: Interval, now: datetime) -> datetime:
    """When an unapproved request stops holding its slot: after the room's own time to
    decide, at most `booking_pending_max_hours` (7 days), and never after its start."""
    hours = min(room.request_ttl_hours, settings.booking_pending_max_hours)
    return min(now + timedelta(hours=hours), slot.start)


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------
async def get_booking(db: Database, booking_id: str) -> tuple[Booking, Room]:
    async with db.session() as session:
        booking = await session.get(Booking, booking_id)
        if booking is None:
            raise NotFound(booking_id)
        room = await session.get(Room, booking.room_id)
    assert room is not None
    return booking, room


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
