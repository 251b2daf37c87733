"""Use cases of an event itself: create, publish, change and cancel it, and the round trip
with the booking service for its KS room. Each opens one transaction and writes rows and
outbox messages together.

Never more confirmed registrations than seats: registering, cancelling and changing an
event run in ONE transaction serialised per event — on SQLite by `BEGIN IMMEDIATE`
(shared.db: the file's write lock is taken before the first read), on PostgreSQL by
`SELECT … FROM events WHERE id = … FOR UPDATE` (`repository.lock_event`) — so the seat
count read is the truth until commit. Registering, cancelling a registration and the
waitlist are in registrations.py; one date of a series in occurrences.py; attendance in
attendance.py; reminders in reminders.py.
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from shared.auth import Staff
from shared.contracts import EVENT_PUBLISHED, EventPublished
from shared.contracts.booking import ROOM_RELEASED, ROOM_REQUESTED, BookingChanged, RoomReleased, RoomRequested
from shared.contracts.events import EVENT_CANCELLED, EVENT_UPDATED
from shared.db import Database
from shared.errors import Bilingual
from shared.models import utcnow
from shared.outbox import add_to_outbox
from shared.settings import Settings

from . import domain
from .errors import CANCELLED_UNCHANGEABLE, Conflict
from .messages import SOURCE, event_changed, event_dates, event_url, registration_notice, tell_registrant
from .models import Event
from .registrations import promote
from .repository import active_registrations, last_end, lock_event
from .schemas import SERIES_IN_A_ROOM, EventIn, EventPatch


async def create_event(db: Database, staff: Staff, data: EventIn) -> Event:
    values = data.model_dump()
    values["exdates"] = [d.isoformat() for d in domain.parse_exdates(data.exdates)]
    event = Event(**values, created_by=staff.subject)
    async with db.session() as session:
        session.add(event)
        await session.commit()
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
            url=event_url(settings, event.id),
            rrule=event.rrule,
            dates=event_dates(event),
        ),
        source=SOURCE,
        subject=event.id,
    )


async def publish_event(db: Database, settings: Settings, event_id: str) -> Event:
    """draft -> published and its `events.event.published` outbox row, in one transaction.
    Publishing an already published event changes nothing (safe to retry)."""
    async with db.session() as session:
        event = await lock_event(session, db, event_id)
        if event.status == "published":
            return event
        if event.status not in ("draft", "room-refused"):
            raise Conflict(
                Bilingual(
                    f"Dogodka s stanjem '{domain.STATUS_SL.get(event.status, event.status)}' ni mogoče objaviti.",
                    f"A {event.status} event cannot be published.",
                )
            )
        if last_end(event) <= utcnow():
            raise Conflict(Bilingual("Dogodek je že mimo.", "The event has already ended."))
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
    event.room_requested_at = utcnow()
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
            event_url=event_url(settings, event.id),
        ),
        source=SOURCE,
        subject=event.id,
    )


async def ask_for_room_again(db: Database, settings: Settings, event_id: str) -> Event:
    """Send an event's room request once more (`pending-room` only): what staff do when booking
    has not answered (the request may have been lost or dead-lettered). Booking answers a
    request it holds already by repeating its answer, so asking twice books nothing twice."""
    async with db.session() as session:
        event = await lock_event(session, db, event_id)
        if event.status != "pending-room" or not event.room_id:
            raise Conflict(
                Bilingual(
                    "Zahtevo za prostor je mogoče poslati znova le, ko dogodek čaka na prostor.",
                    "Only an event waiting for its room can ask for it again.",
                )
            )
        _ask_for_room(session, settings, event)
        await session.commit()
    return event


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


ROOM_FIXED = Bilingual(
    "Prostor KS lahko zamenjate le pri osnutku ali ko prostor ni bil odobren; dogodek, ki je že objavljen ali čaka "
    "na prostor, najprej odpovejte.",
    "The room can change only while the event is a draft or its room was refused.",
)


NOTIFY_CHANGES = ("starts_at", "ends_at", "venue", "rrule", "exdates")


SEQUENCE_CHANGES = {"title", "starts_at", "ends_at", "venue", "rrule", "exdates"}


ROOM_WAITING_NOTE = (
    "Prostor za novi termin čaka na potrditev KS."  # staff read it (room_note: Slovenian, as booking sends)
)


async def update_event(db: Database, settings: Settings, event_id: str, patch: EventPatch) -> Event:
    """Change an event. A published event announces `events.event.updated`; when its time,
    place or dates change every confirmed or waitlisted registrant is told one by one; more
    seats promote the waitlist."""
    changes = patch.model_dump(exclude_unset=True)
    async with db.session() as session:
        event = await lock_event(session, db, event_id)
        if event.status == "cancelled":
            raise Conflict(CANCELLED_UNCHANGEABLE)
        before = {"starts_at": event.starts_at, "ends_at": event.ends_at, "venue": event.venue}
        changed: list[str] = []
        for key, value in changes.items():
            if key == "exdates":
                value = [d.isoformat() for d in domain.parse_exdates(value or [])]
            if key in ("rrule", "room_id"):
                value = value or None
            if key == "room_id" and value != event.room_id and event.status not in ("draft", "room-refused"):
                raise Conflict(ROOM_FIXED)
            if value is None and key not in ("capacity", "rrule", "room_id"):
                continue
            if getattr(event, key) != value:
                setattr(event, key, value)
                changed.append(key)
        if event.ends_at <= event.starts_at:
            raise Conflict(Bilingual("Konec je pred začetkom.", "ends_at must be after starts_at."))
        if event.rrule and event.room_id:
            raise Conflict(SERIES_IN_A_ROOM)
        if event.rrule and ("rrule" in changed or "starts_at" in changed):
            try:
                event.rrule = domain.validate_rrule(event.rrule, event.starts_at)
            except ValueError as exc:
                raise Conflict(Bilingual("Ponavljanje ni pravilno zapisano.", f"Bad rrule: {exc}")) from exc
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
            active = await active_registrations(session, event.id)
            if "capacity" in changed:
                await promote(session, settings, event, active)
                active = await active_registrations(session, event.id)
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
                    tell_registrant(
                        session,
                        "event-changed",
                        registration_notice(
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
                event_changed(settings, event, registrations=len(active) if tell else 0, changes=changed, **previous),
                source=SOURCE,
                subject=event.id,
            )
        await session.commit()
    return event


async def cancel_event(db: Database, settings: Settings, event_id: str, reason: str = "") -> Event:
    """Cancel an event; everyone registered is told (one `events.registration.event-changed`
    each, change = cancelled) and the followers by `events.event.cancelled`."""
    async with db.session() as session:
        event = await lock_event(session, db, event_id)
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
        active = await active_registrations(session, event.id)
        for reg in active:
            reg.status = "cancelled"
            reg.cancelled_at = event.cancelled_at
            session.add(reg)
            tell_registrant(
                session,
                "event-changed",
                registration_notice(
                    settings, event, reg, change="cancelled", reason=reason or None, cancelled_by="event-cancelled"
                ),
            )
        if was_public:
            add_to_outbox(
                session,
                EVENT_CANCELLED,
                event_changed(settings, event, registrations=len(active), reason=reason or None),
                source=SOURCE,
                subject=event.id,
            )
        await session.commit()
    return event
