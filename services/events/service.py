"""Use cases of the events service: each opens one transaction and writes rows + outbox.

Never more confirmed registrations than seats: registering, cancelling and changing an
event run in ONE transaction serialised per event — on SQLite by `BEGIN IMMEDIATE`
(shared.db: the file's write lock is taken before the first read), on PostgreSQL by
`SELECT … FROM events WHERE id = … FOR UPDATE` — so the seat count read is the truth
until commit. A cancellation promotes the first on the waitlist in the same transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.auth import Staff
from shared.contact import sms_refusal
from shared.contracts import EVENT_PUBLISHED, EventPublished
from shared.contracts.booking import ROOM_RELEASED, ROOM_REQUESTED, BookingChanged, RoomReleased, RoomRequested
from shared.contracts.events import (
    EVENT_CANCELLED,
    EVENT_UPDATED,
    REGISTRATION_MESSAGE_TYPES,
    EventChanged,
    MovedOccurrence,
    Registrant,
    RegistrationNotice,
)
from shared.db import Database
from shared.i18n import format_datetime
from shared.links import SignedIds
from shared.models import utcnow
from shared.outbox import add_to_outbox
from shared.settings import Settings
from shared.web.csv_export import csv_text

from . import domain
from .models import Attendance, Event, Registration
from .schemas import (  # the API and the tests import some of these from here
    SERIES_IN_A_ROOM,
    AttendanceDate,
    AttendanceOut,
    EventIn,
    EventOut,
    EventPatch,
    RegistrationIn,
    RegistrationOut,
)
from .schemas import (
    AttendanceIn as AttendanceIn,
)
from .schemas import (
    CancelIn as CancelIn,
)
from .schemas import (
    OccurrenceCancel as OccurrenceCancel,
)
from .schemas import (
    OccurrenceMove as OccurrenceMove,
)

SOURCE = "/kranj/events"
TOKEN_SALT = "kranj.events.registration-link.v1"
REMINDER_LEAD = timedelta(hours=24)
ACTIVE = ("confirmed", "waitlisted")
log = logging.getLogger("kranj.events")


class Conflict(Exception):
    """The request is valid but the event's state does not allow it (HTTP 409)."""

    status = 409


class PhoneRefused(Conflict):
    """A phone the platform will not text (a country `KRANJ_SMS_COUNTRY_CODES` leaves out): HTTP 422."""

    status = 422


class AlreadyRegistered(Conflict):
    """The contact has an active registration for the event: its link went to that
    registration's own contacts again; the answer tells the requester nothing more (HTTP 409)."""


ALREADY_REGISTERED = (
    "Prijava s tem e-naslovom ali telefonom že obstaja. Povezavo do nje smo znova poslali na e-naslov oziroma "
    "telefon, vpisan ob prijavi. / A registration with this email or phone exists; we have sent its link again "
    "to the contact given then."
)


class NotFound(Exception):
    pass


# --------------------------------------------------------------------------------------
# Links
# --------------------------------------------------------------------------------------
def event_url(settings: Settings, event_id: str) -> str:
    return f"{settings.public_base('events')}/events/{event_id}"


def ics_url(settings: Settings, event_id: str) -> str:
    return f"{event_url(settings, event_id)}/event.ics"


def registration_token(settings: Settings, registration_id: str) -> str:
    return SignedIds(settings, TOKEN_SALT).sign(registration_id)


def registration_id_from_token(settings: Settings, token: str) -> str | None:
    return SignedIds(settings, TOKEN_SALT).read(token)


def cancel_url(settings: Settings, registration_id: str) -> str:
    return f"{settings.public_base('events')}/events/prijava/{registration_token(settings, registration_id)}"


def exdates_of(event: Event) -> list[datetime]:
    return domain.parse_exdates(event.exdates or [])


def moved_of(event: Event) -> dict[datetime, domain.Occurrence]:
    return domain.parse_moved(event.moved)


def dates_of(event: Event, *, since: datetime | None = None, until: datetime | None = None) -> list[domain.Occurrence]:
    """The event's occurrences: the series with its cancelled dates left out and its moved
    ones where they went (one for a single event)."""
    return domain.occurrences(
        event.starts_at, event.ends_at, event.rrule, exdates_of(event), since=since, until=until, moved=moved_of(event)
    )


def to_out(settings: Settings, event: Event, seats_taken: int | None = None, *, personal: bool = False) -> EventOut:
    data = event.model_dump(
        exclude={"created_by", "exdates", "moved", "cancelled_at", "updated_at", "organiser_email", "organiser_phone"}
    )
    return EventOut(
        **data,
        organiser_email=event.organiser_email if personal else None,
        organiser_phone=event.organiser_phone if personal else None,
        exdates=exdates_of(event),
        moved=[
            MovedOccurrence(original=k, starts_at=v.starts_at, ends_at=v.ends_at) for k, v in moved_of(event).items()
        ],
        url=event_url(settings, event.id),
        ics_url=ics_url(settings, event.id),
        seats_taken=seats_taken,
    )


def registration_out(
    settings: Settings, reg: Registration, *, position: int | None = None, personal: bool = False
) -> RegistrationOut:
    return RegistrationOut(
        id=reg.id,
        event_id=reg.event_id,
        status=reg.status,  # type: ignore[arg-type]
        waitlist_position=position if reg.status == "waitlisted" else None,
        created_at=reg.created_at,
        cancel_url=cancel_url(settings, reg.id) if reg.status in ACTIVE else None,
        name=reg.name if personal else None,
        email=reg.email if personal else None,
        phone=reg.phone if personal else None,
        channel=reg.channel if personal else None,
    )


# --------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------
def _notice(
    settings: Settings, event: Event, reg: Registration, *, position: int | None = None, **extra: Any
) -> RegistrationNotice:
    return RegistrationNotice(
        registration_id=reg.id,
        event_id=event.id,
        ks=event.ks,
        title=event.title,
        starts_at=event.starts_at,
        ends_at=event.ends_at,
        venue=event.venue,
        organiser=event.organiser,
        rrule=event.rrule,
        url=event_url(settings, event.id),  # type: ignore[arg-type]
        ics_url=ics_url(settings, event.id),  # type: ignore[arg-type]
        cancel_url=cancel_url(settings, reg.id) if reg.status in ACTIVE else None,  # type: ignore[arg-type]
        status=reg.status,  # type: ignore[arg-type]
        waitlist_position=position if reg.status == "waitlisted" else None,
        channel=reg.channel,  # type: ignore[arg-type]
        registrant=Registrant(name=reg.name, email=reg.email, phone=reg.phone, language=reg.language),  # type: ignore[arg-type]
        **extra,
    )


def _tell(session: AsyncSession, kind: str, notice: RegistrationNotice) -> None:
    add_to_outbox(session, REGISTRATION_MESSAGE_TYPES[kind], notice, source=SOURCE, subject=notice.registration_id)


def _event_changed(settings: Settings, event: Event, *, registrations: int, **extra: Any) -> EventChanged:
    return EventChanged(
        event_id=event.id,
        ks=event.ks,
        title=event.title,
        description=domain.plain_description(event.description),
        starts_at=event.starts_at,
        ends_at=event.ends_at,
        venue=event.venue,
        capacity=event.capacity,
        organiser=event.organiser,
        audience=event.audience,  # type: ignore[arg-type]
        topics=event.topics,
        rrule=event.rrule,
        exdates=exdates_of(event),
        moved=[
            MovedOccurrence(original=k, starts_at=v.starts_at, ends_at=v.ends_at) for k, v in moved_of(event).items()
        ],
        url=event_url(settings, event.id),  # type: ignore[arg-type]
        status=event.status,  # type: ignore[arg-type]
        registrations=registrations,
        **extra,
    )


# --------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------
async def create_event(db: Database, staff: Staff, data: EventIn) -> Event:
    values = data.model_dump()
    values["exdates"] = [d.isoformat() for d in domain.parse_exdates(data.exdates)]
    event = Event(**values, created_by=staff.subject)
    async with db.session() as session:
        session.add(event)
        await session.commit()
    return event


async def get_event(db: Database, event_id: str) -> Event:
    async with db.session() as session:
        event = await session.get(Event, event_id)
    if event is None:
        raise NotFound(event_id)
    return event


async def _lock_event(session: AsyncSession, db: Database, event_id: str) -> Event:
    query = select(Event).where(Event.id == event_id)
    if not db.is_sqlite:
        query = query.with_for_update()  # serialises every writer of this event's seats
    event = (await session.exec(query)).first()
    if event is None:
        raise NotFound(event_id)
    return event


def _publish(session: AsyncSession, settings: Settings, event: Event) -> None:
    event.status = "published"
    event.published_at = utcnow()
    session.add(event)
    add_to_outbox(
        session,
        EVENT_PUBLISHED,
        EventPublished(
            event_id=event.id,
            ks=event.ks,
            title=event.title,
            description=domain.plain_description(event.description),
            starts_at=event.starts_at,
            ends_at=event.ends_at,
            venue=event.venue,
            capacity=event.capacity,
            url=event_url(settings, event.id),  # type: ignore[arg-type]
        ),
        source=SOURCE,
        subject=event.id,
    )


async def publish_event(db: Database, settings: Settings, event_id: str) -> Event:
    """draft -> published and its `events.event.published` outbox row, in one transaction.
    Publishing an already published event changes nothing (safe to retry)."""
    async with db.session() as session:
        event = await _lock_event(session, db, event_id)
        if event.status == "published":
            return event
        if event.status not in ("draft", "room-refused"):
            raise Conflict(
                f"Dogodka s stanjem '{domain.STATUS_SL.get(event.status, event.status)}' ni mogoče objaviti. "
                f"/ A {event.status} event cannot be published."
            )
        if last_end(event) <= utcnow():
            raise Conflict("Dogodek je že mimo. / The event has already ended.")
        if event.room_id:
            _request_room(session, settings, event)
        else:
            _publish(session, settings, event)
        await session.commit()
    return event


def _request_room(session: AsyncSession, settings: Settings, event: Event) -> None:
    """An event in a KS room waits (`pending-room`) until the booking service confirms the
    room; it asks by message, in the same transaction. The booking's requester is the
    organiser (name, and the contact staff gave): booking's answers reach them through
    notify, so a refusal is told to the organiser by email/SMS with the reason."""
    event.status = "pending-room"
    _ask_for_room(session, settings, event)


def _ask_for_room(session: AsyncSession, settings: Settings, event: Event) -> None:
    event.room_note = None
    event.booking_id = None
    session.add(event)
    add_to_outbox(
        session,
        ROOM_REQUESTED,
        RoomRequested(
            request_id=event.id,
            room_id=event.room_id or "",
            ks=event.ks,
            starts_at=event.starts_at,
            ends_at=event.ends_at,
            purpose=event.title,
            attendees=event.capacity or 1,
            organiser=(event.organiser or event.created_by or "KS")[:200],
            email=event.organiser_email,
            phone=event.organiser_phone,
            language="sl",
            event_url=event_url(settings, event.id),  # type: ignore[arg-type]
        ),
        source=SOURCE,
        subject=event.id,
    )


async def on_booking_changed(session: AsyncSession, settings: Settings, data: BookingChanged) -> str:
    """An answer of the booking service to one of our room requests (in the consumer's
    transaction). Returns what it did, for the log."""
    if data.event_id is None:
        return "not ours"
    event = await session.get(Event, data.event_id)
    if event is None:
        return "unknown event"
    if (data.room_id, data.starts_at, data.ends_at) != (event.room_id, event.starts_at, event.ends_at):
        return "stale"  # about an earlier time of the event (moved since): the new request has its own answer
    if data.status in ("requested", "confirmed"):
        if event.booking_id not in (None, data.booking_id):
            return "ignored"
        if event.status == "published" and (event.booking_id is None or data.status == "confirmed"):
            # the room asked again after a published event moved
            event.booking_id = data.booking_id
            event.room_note = None if data.status == "confirmed" else ROOM_WAITING_NOTE
            session.add(event)
            return "room kept"
        if event.status != "pending-room":
            return "ignored"
        event.booking_id = data.booking_id
        if data.status == "confirmed":
            event.room_note = None
            _publish(session, settings, event)
            return "published"
        session.add(event)
        return "waiting"
    # rejected, cancelled, expired
    if event.booking_id not in (None, data.booking_id):
        return "another booking"
    if event.status == "pending-room":
        event.status = "room-refused"
        event.room_note = (data.reason or f"Rezervacija prostora: {data.status}.")[:1000]
        event.booking_id = None
        session.add(event)
        return "room-refused"
    if event.status == "published" and event.booking_id in (None, data.booking_id):
        # The room of a published event was cancelled later: staff must act; keep the note.
        event.room_note = (data.reason or f"Rezervacija prostora: {data.status}.")[:1000]
        session.add(event)
        return "noted"
    return "ignored"


def last_end(event: Event) -> datetime:
    dates = dates_of(event)
    return max(d.ends_at for d in dates) if dates else event.ends_at


async def _active(session: AsyncSession, event_id: str) -> list[Registration]:
    rows = await session.exec(
        select(Registration)
        .where(Registration.event_id == event_id, col(Registration.status).in_(ACTIVE))
        .order_by(col(Registration.position))
    )
    return list(rows.all())


NOTIFY_CHANGES = ("starts_at", "ends_at", "venue", "rrule", "exdates")
# what makes calendar apps replace their copy of the event (iCalendar SEQUENCE + 1)
SEQUENCE_CHANGES = {"title", "starts_at", "ends_at", "venue", "rrule", "exdates"}
ROOM_WAITING_NOTE = "Prostor za novi termin čaka na potrditev KS. / The room for the new time awaits the KS."


async def update_event(db: Database, settings: Settings, event_id: str, patch: EventPatch) -> Event:
    """Change an event. A published event announces `events.event.updated`; when its time,
    place or dates change every confirmed or waitlisted registrant is told one by one; more
    seats promote the waitlist."""
    changes = patch.model_dump(exclude_unset=True)
    async with db.session() as session:
        event = await _lock_event(session, db, event_id)
        if event.status == "cancelled":
            raise Conflict("Odpovedanega dogodka ni mogoče spreminjati. / A cancelled event cannot be changed.")
        before = {"starts_at": event.starts_at, "ends_at": event.ends_at, "venue": event.venue}
        changed: list[str] = []
        for key, value in changes.items():
            if key == "exdates":
                value = [d.isoformat() for d in domain.parse_exdates(value or [])]
            if key == "rrule":
                value = value or None
            if value is None and key not in ("capacity", "rrule"):
                continue
            if getattr(event, key) != value:
                setattr(event, key, value)
                changed.append(key)
        if event.ends_at <= event.starts_at:
            raise Conflict("Konec je pred začetkom. / ends_at must be after starts_at.")
        if event.rrule and event.room_id:
            raise Conflict(SERIES_IN_A_ROOM)
        if event.rrule and ("rrule" in changed or "starts_at" in changed):
            try:
                event.rrule = domain.validate_rrule(event.rrule, event.starts_at)
            except ValueError as exc:
                raise Conflict(f"Ponavljanje ni pravilno zapisano. / Bad rrule: {exc}") from exc
        if not changed:
            return event
        event.updated_at = utcnow()
        if set(changed) & SEQUENCE_CHANGES:
            event.sequence = (event.sequence or 0) + 1
        session.add(event)
        if event.room_id and event.status in ("pending-room", "published") and {"starts_at", "ends_at"} & set(changed):
            # the room is asked again for the new time; booking releases the old one by itself
            _ask_for_room(session, settings, event)
            if event.status == "published":
                event.room_note = ROOM_WAITING_NOTE
        if event.status == "published":
            active = await _active(session, event.id)
            if "capacity" in changed:
                await _promote(session, settings, event, active)
                active = await _active(session, event.id)
            tell = [c for c in changed if c in NOTIFY_CHANGES]
            previous = {
                "previous_starts_at": before["starts_at"] if {"starts_at", "ends_at"} & set(changed) else None,
                "previous_ends_at": before["ends_at"] if {"starts_at", "ends_at"} & set(changed) else None,
                "previous_venue": before["venue"] if "venue" in changed else None,
            }
            if tell:
                waiting = 0
                for reg in active:
                    waiting += reg.status == "waitlisted"
                    _tell(
                        session,
                        "event-changed",
                        _notice(
                            settings,
                            event,
                            reg,
                            position=waiting or None,
                            change="updated",
                            changes=changed,
                            **previous,
                        ),
                    )
            add_to_outbox(
                session,
                EVENT_UPDATED,
                _event_changed(settings, event, registrations=len(active) if tell else 0, changes=changed, **previous),
                source=SOURCE,
                subject=event.id,
            )
        await session.commit()
    return event


async def cancel_event(db: Database, settings: Settings, event_id: str, reason: str = "") -> Event:
    """Cancel an event; everyone registered is told (one `events.registration.event-changed`
    each, change = cancelled) and the followers by `events.event.cancelled`."""
    async with db.session() as session:
        event = await _lock_event(session, db, event_id)
        if event.status == "cancelled":
            return event
        was_public = event.status == "published"
        if event.room_id and event.status in ("pending-room", "published"):
            add_to_outbox(
                session,
                ROOM_RELEASED,
                RoomReleased(request_id=event.id, reason=reason or "Dogodek je odpovedan."),
                source=SOURCE,
                subject=event.id,
            )
        event.status = "cancelled"
        event.cancel_reason = reason or None
        event.cancelled_at = utcnow()
        event.sequence = (event.sequence or 0) + 1
        session.add(event)
        active = await _active(session, event.id)
        for reg in active:
            reg.status = "cancelled"
            reg.cancelled_at = event.cancelled_at
            session.add(reg)
            _tell(
                session,
                "event-changed",
                _notice(
                    settings, event, reg, change="cancelled", reason=reason or None, cancelled_by="event-cancelled"
                ),
            )
        if was_public:
            add_to_outbox(
                session,
                EVENT_CANCELLED,
                _event_changed(settings, event, registrations=len(active), reason=reason or None),
                source=SOURCE,
                subject=event.id,
            )
        await session.commit()
    return event


async def change_occurrence(
    db: Database,
    settings: Settings,
    event_id: str,
    occurrence: datetime,
    *,
    move_to: tuple[datetime, datetime] | None = None,
    reason: str = "",
) -> Event:
    """Move one occurrence of a recurring event to another time (`move_to`), or cancel it
    (`move_to` None). The rest of the series stays. A published event announces
    `events.event.updated` (changes: `moved` or `exdates`) and every registrant is told,
    with the occurrence's old and new time. Moving an occurrence again moves it from where
    the series put it; an occurrence is named by its original start (RFC 5545 RECURRENCE-ID)."""
    async with db.session() as session:
        event = await _lock_event(session, db, event_id)
        if event.status == "cancelled":
            raise Conflict("Odpovedanega dogodka ni mogoče spreminjati. / A cancelled event cannot be changed.")
        if not event.rrule:
            raise Conflict(
                "Dogodek se ne ponavlja: spremenite njegov čas. / Not a recurring event: change its time instead."
            )
        original = occurrence.astimezone(UTC)
        series = domain.occurrences(event.starts_at, event.ends_at, event.rrule, exdates_of(event))
        if original not in {o.starts_at for o in series}:
            raise Conflict(
                f"Dogodek nima termina {format_datetime(original)}. / The series has no occurrence starting {original}."
            )
        moves = moved_of(event)
        before = moves.get(original) or next(o for o in series if o.starts_at == original)
        if move_to is not None:
            starts, ends = (moment.astimezone(UTC) for moment in move_to)
            if (starts, ends) == (before.starts_at, before.ends_at):
                return event
            moves[original] = domain.Occurrence(starts, ends)
            change = "moved"
            after = moves[original]
        else:
            moves.pop(original, None)
            event.exdates = [d.isoformat() for d in domain.parse_exdates([*exdates_of(event), original])]
            change = "exdates"
            after = None
        event.moved = [
            {"original": k.isoformat(), "starts_at": v.starts_at.isoformat(), "ends_at": v.ends_at.isoformat()}
            for k, v in sorted(moves.items())
        ]
        event.updated_at = utcnow()
        event.sequence = (event.sequence or 0) + 1
        session.add(event)
        if event.status == "published":
            active = await _active(session, event.id)
            waiting = 0
            for reg in active:
                waiting += reg.status == "waitlisted"
                notice = _notice(
                    settings,
                    event,
                    reg,
                    position=waiting or None,
                    change="updated",
                    changes=["occurrence-moved" if after else "occurrence-cancelled"],
                    previous_starts_at=before.starts_at,
                    previous_ends_at=before.ends_at,
                    reason=reason or None,
                )
                if after is not None:
                    notice = notice.model_copy(update={"starts_at": after.starts_at, "ends_at": after.ends_at})
                _tell(session, "event-changed", notice)
            add_to_outbox(
                session,
                EVENT_UPDATED,
                _event_changed(
                    settings,
                    event,
                    registrations=len(active),
                    changes=[change],
                    previous_starts_at=before.starts_at,
                    previous_ends_at=before.ends_at,
                ),
                source=SOURCE,
                subject=event.id,
            )
        await session.commit()
    return event


@dataclass
class EventFilter:
    ks: str | None = None
    age: str | None = None
    topic: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def list_published(
    db: Database, ks: str | None = None, limit: int = 200, *, filters: EventFilter | None = None
) -> list[Event]:
    filters = filters or EventFilter(ks=ks)
    now = utcnow()
    async with db.session() as session:
        query = select(Event).where(Event.status == "published")
        if filters.ks:
            query = query.where(col(Event.ks).in_([filters.ks, "*"]))
        rows = list((await session.exec(query.order_by(col(Event.starts_at)))).all())
    out = []
    since = filters.since or now
    for event in rows:
        if filters.age and filters.age != "vsi" and filters.age not in event.audience and "vsi" not in event.audience:
            continue
        if filters.topic and filters.topic not in event.topics:
            continue
        upcoming = dates_of(event, since=since, until=filters.until)
        if upcoming:
            out.append(event)
    out.sort(key=lambda e: next_occurrence(e, since) or e.starts_at)
    return out[:limit]


def next_occurrence(event: Event, since: datetime | None = None) -> datetime | None:
    found = dates_of(event, since=since or utcnow())
    return found[0].starts_at if found else None


async def list_for_staff(db: Database, staff: Staff) -> list[Event]:
    async with db.session() as session:
        query = select(Event)
        if staff.role != "admin" and "*" not in staff.ks:
            query = query.where(col(Event.ks).in_(list(staff.ks)))
        rows = (await session.exec(query.order_by(col(Event.starts_at).desc()).limit(500))).all()
    return list(rows)


async def list_all_published(db: Database) -> list[Event]:
    """For the feeds: every published event (past ones too, so calendars keep them)."""
    async with db.session() as session:
        rows = (
            await session.exec(select(Event).where(Event.status == "published").order_by(col(Event.starts_at)))
        ).all()
    return list(rows)


async def seats_taken(db: Database, event_id: str) -> int:
    async with db.session() as session:
        count = (
            await session.exec(
                select(func.count()).where(Registration.event_id == event_id, Registration.status == "confirmed")
            )
        ).one()
    return int(count)


# --------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------
async def _waitlist_position(session: AsyncSession, reg: Registration) -> int | None:
    if reg.status != "waitlisted":
        return None
    ahead = (
        await session.exec(
            select(func.count()).where(
                Registration.event_id == reg.event_id,
                Registration.status == "waitlisted",
                Registration.position < reg.position,
            )
        )
    ).one()
    return int(ahead) + 1


async def register(
    db: Database,
    settings: Settings,
    event_id: str,
    data: RegistrationIn,
    *,
    staff: Staff | None = None,
    now: datetime | None = None,
) -> tuple[Registration, int | None]:
    """A seat if one is free, else the waitlist; with its message, in one transaction
    serialised per event. Returns the registration and its waitlist position."""
    now = now or utcnow()
    if refusal := sms_refusal(data.phone, settings):
        raise PhoneRefused(str(refusal))
    email = str(data.email).lower() if data.email else None
    async with db.session() as session:
        event = await _lock_event(session, db, event_id)
        if event.status != "published":
            raise Conflict("Prijave na ta dogodek niso odprte. / Registration for this event is not open.")
        if last_end(event) <= now:
            raise Conflict("Dogodek je že mimo. / The event is over.")
        active = await _active(session, event.id)
        for other in active:
            if (email and other.email == email) or (data.phone and other.phone == data.phone):
                # Its link goes again to the contacts given then (never to those typed now), and
                # the answer carries neither its link nor its data: whoever knows someone's
                # address learns no more than the seat count shows (docs/security.md).
                notice = _notice(settings, event, other, position=await _waitlist_position(session, other))
                _tell(session, other.status, notice)
                await session.commit()
                raise AlreadyRegistered(ALREADY_REGISTERED)
        confirmed = sum(1 for r in active if r.status == "confirmed")
        last = (
            await session.exec(select(func.max(Registration.position)).where(Registration.event_id == event.id))
        ).one()
        seat = domain.seat_for_next(event.capacity, confirmed)
        reg = Registration(
            event_id=event.id,
            name=data.name,
            email=email,
            phone=data.phone,
            language=data.language,
            channel=data.channel if staff is not None else "web",
            status="confirmed" if seat else "waitlisted",
            position=int(last or 0) + 1,
            created_at=now,
            created_by=staff.subject if staff else None,
            confirmed_at=now if seat else None,
        )
        session.add(reg)
        position = None if seat else sum(1 for r in active if r.status == "waitlisted") + 1
        _tell(session, "confirmed" if seat else "waitlisted", _notice(settings, event, reg, position=position))
        await session.commit()
    return reg, position


async def _promote(
    session: AsyncSession, settings: Settings, event: Event, active: list[Registration]
) -> list[Registration]:
    confirmed = sum(1 for r in active if r.status == "confirmed")
    waiting = [r for r in active if r.status == "waitlisted"]
    promoted = waiting[: domain.seats_to_fill(event.capacity, confirmed, len(waiting))]
    now = utcnow()
    for reg in promoted:
        reg.status = "confirmed"
        reg.confirmed_at = now
        session.add(reg)
        _tell(session, "promoted", _notice(settings, event, reg))
    return promoted


async def get_registration(db: Database, registration_id: str) -> tuple[Registration, Event, int | None]:
    async with db.session() as session:
        reg = await session.get(Registration, registration_id)
        if reg is None:
            raise NotFound(registration_id)
        event = await session.get(Event, reg.event_id)
        position = await _waitlist_position(session, reg)
    assert event is not None
    return reg, event, position


async def cancel_registration(
    db: Database, settings: Settings, registration_id: str, *, by: Literal["registrant", "staff"]
) -> tuple[Registration, list[Registration]]:
    """Free the seat and give it to the first on the waitlist, in the same transaction.
    Cancelling twice changes nothing."""
    async with db.session() as session:
        reg = await session.get(Registration, registration_id)
        if reg is None:
            raise NotFound(registration_id)
        event = await _lock_event(session, db, reg.event_id)
        await session.refresh(reg)  # read again under the event's lock
        if reg.status == "cancelled":
            session.expunge(reg)  # keep its loaded fields: the rollback would expire them
            await session.rollback()
            return reg, []
        reg.status = "cancelled"
        reg.cancelled_at = utcnow()
        session.add(reg)
        _tell(session, "cancelled", _notice(settings, event, reg, cancelled_by=by))
        promoted: list[Registration] = []
        if event.status == "published":
            promoted = await _promote(session, settings, event, await _active(session, event.id))
        await session.commit()
    return reg, promoted


async def list_registrations(db: Database, event_id: str) -> list[tuple[Registration, int | None]]:
    async with db.session() as session:
        rows = list(
            (
                await session.exec(
                    select(Registration).where(Registration.event_id == event_id).order_by(col(Registration.position))
                )
            ).all()
        )
    out = []
    waiting = 0
    for reg in rows:
        if reg.status == "waitlisted":
            waiting += 1
        out.append((reg, waiting if reg.status == "waitlisted" else None))
    return out


def registrations_csv(event: Event, rows: list[tuple[Registration, int | None]]) -> bytes:
    """Attendee list: UTF-8 with BOM, semicolons (a Slovenian Excel opens it as a table);
    written by the platform's one CSV writer, so a name like `=HYPERLINK(…)` stays text."""
    header = [
        "zap. št.",
        "ime in priimek",
        "e-pošta",
        "telefon",
        "stanje",
        "čakalna lista",
        "prijava prek",
        "prijavljen",
    ]
    return csv_text(
        (
            [
                reg.position,
                reg.name,
                reg.email or "",
                reg.phone or "",
                domain.REGISTRATION_SL.get(reg.status, reg.status),
                position or "",
                domain.CHANNEL_SL.get(reg.channel, reg.channel),
                reg.created_at.astimezone(domain.TZ).strftime("%d. %m. %Y %H:%M"),
            ]
            for reg, position in rows
        ),
        header=header,
    ).encode("utf-8")


# --------------------------------------------------------------------------------------
# Attendance
# --------------------------------------------------------------------------------------
def attendance_dates(event: Event) -> list[domain.Occurrence]:
    """The dates attendance can be named by: a series' own dates (not cancelled), by their
    series start; the one date of a single event."""
    if not event.rrule:
        return [domain.Occurrence(event.starts_at, event.ends_at)]
    return domain.occurrences(event.starts_at, event.ends_at, event.rrule, exdates_of(event))


def attendance_date(event: Event, wanted: datetime | None = None, now: datetime | None = None) -> datetime:
    """The name (series start) of the date attendance is recorded for; Conflict when that date
    (or, without `wanted`, the event) has not started yet or does not exist."""
    now = now or utcnow()
    try:
        name, _held = domain.attendance_occurrence(attendance_dates(event), moved_of(event), now, wanted)
    except ValueError:
        raise Conflict(
            f"Dogodek nima termina {format_datetime(wanted or now)}. / The event has no date starting {wanted}."
        ) from None
    except LookupError as exc:
        starts = exc.args[0] if exc.args and exc.args[0] else event.starts_at
        raise Conflict(
            f"Udeležbo lahko vpišete, ko se dogodek začne ({format_datetime(starts)}). "
            f"/ Attendance can be recorded once the event has started ({starts.isoformat()})."
        ) from None
    return name


async def record_attendance(
    db: Database,
    event_id: str,
    counts: dict[str, int],
    staff: Staff,
    *,
    occurrence: datetime | None = None,
    now: datetime | None = None,
) -> AttendanceOut:
    """How many came to one date, by age band; replaces what was recorded for that date.
    Refused (Conflict) before that date has started."""
    now = now or utcnow()
    async with db.session() as session:
        event = await _lock_event(session, db, event_id)
        if event.status == "cancelled":
            raise Conflict("Dogodek je odpovedan. / The event is cancelled.")
        name = attendance_date(event, occurrence, now)
        old = await session.exec(select(Attendance).where(Attendance.event_id == event_id))
        for row in old.all():
            if row.occurrence == name:
                await session.delete(row)
        await session.flush()
        for band, count in counts.items():
            session.add(
                Attendance(
                    event_id=event_id,
                    occurrence=name,
                    age_band=band,
                    count=count,
                    recorded_by=staff.subject,
                    recorded_at=now,
                )
            )
        await session.commit()
    return await get_attendance(db, event_id)


async def get_attendance(db: Database, event_id: str) -> AttendanceOut:
    async with db.session() as session:
        event = await session.get(Event, event_id)
        rows = (
            await session.exec(
                select(Attendance).where(Attendance.event_id == event_id).order_by(col(Attendance.occurrence))
            )
        ).all()
    moved = moved_of(event) if event is not None else {}
    totals = dict.fromkeys(domain.ATTENDANCE_BANDS, 0)
    by_date: dict[datetime, dict[str, int]] = {}
    for row in rows:
        totals[row.age_band] = totals.get(row.age_band, 0) + row.count
        by_date.setdefault(row.occurrence, {})[row.age_band] = row.count
    dates = [
        AttendanceDate(
            occurrence=name,
            starts_at=moved[name].starts_at if name in moved else name,
            counts=counts,
            total=sum(counts.values()),
        )
        for name, counts in by_date.items()
    ]
    return AttendanceOut(bands=list(domain.ATTENDANCE_BANDS), counts=totals, total=sum(totals.values()), dates=dates)


# --------------------------------------------------------------------------------------
# Reminders: once per confirmed registration, across replicas
# --------------------------------------------------------------------------------------
async def send_reminders(db: Database, settings: Settings, *, now: datetime | None = None, batch: int = 200) -> int:
    """Write `events.event.reminder-due` for every confirmed registration of a published
    event that starts within 24 hours and was not reminded yet. Each registration is claimed
    by setting `reminder_sent_at` in the same transaction as its message: on PostgreSQL
    another replica skips the rows this one holds (FOR UPDATE SKIP LOCKED) and finds them
    claimed after commit; SQLite serialises writers (BEGIN IMMEDIATE).

    A recurring event is reminded before its next occurrence once per registration (the
    registration is for the series)."""
    now = now or utcnow()
    async with db.session() as session:
        query = (
            select(Registration, Event)
            .join(Event, col(Event.id) == col(Registration.event_id))
            .where(
                Registration.status == "confirmed",
                col(Registration.reminder_sent_at).is_(None),
                Event.status == "published",
                Event.starts_at <= now + REMINDER_LEAD,
            )
            .order_by(col(Event.starts_at))
            .limit(batch)
        )
        if not db.is_sqlite:
            query = query.with_for_update(skip_locked=True, of=Registration)  # type: ignore[arg-type]
        rows = list((await session.exec(query)).all())
        sent = 0
        for reg, event in rows:
            upcoming = dates_of(event, since=now, until=now + REMINDER_LEAD)
            if not upcoming or upcoming[0].starts_at <= now:
                if not dates_of(event, since=now):
                    reg.reminder_sent_at = now  # over: nothing to remind of, never look again
                    session.add(reg)
                continue
            reg.reminder_sent_at = now
            session.add(reg)
            occurrence = upcoming[0]
            notice = _notice(settings, event, reg).model_copy(
                update={"starts_at": occurrence.starts_at, "ends_at": occurrence.ends_at}
            )
            _tell(session, "reminder-due", notice)
            sent += 1
        await session.commit()
    return sent
