"""Loading and querying events and registrations, and an event's dates (its series with the
cancelled dates left out and the moved ones where they went).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.auth import Staff
from shared.db import Database
from shared.models import utcnow

from . import domain
from .errors import NotFound
from .models import Event, Registration

ACTIVE = ("confirmed", "waitlisted")


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


def last_end(event: Event) -> datetime:
    dates = dates_of(event)
    return max(d.ends_at for d in dates) if dates else event.ends_at


async def get_event(db: Database, event_id: str) -> Event:
    async with db.session() as session:
        event = await session.get(Event, event_id)
    if event is None:
        raise NotFound(event_id)
    return event


async def lock_event(session: AsyncSession, db: Database, event_id: str) -> Event:
    query = select(Event).where(Event.id == event_id)
    if not db.is_sqlite:
        query = query.with_for_update()  # serialises every writer of this event's seats
    event = (await session.exec(query)).first()
    if event is None:
        raise NotFound(event_id)
    return event


async def active_registrations(session: AsyncSession, event_id: str) -> list[Registration]:
    rows = await session.exec(
        select(Registration)
        .where(Registration.event_id == event_id, col(Registration.status).in_(ACTIVE))
        .order_by(col(Registration.position))
    )
    return list(rows.all())


async def waitlist_position(session: AsyncSession, reg: Registration) -> int | None:
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


async def get_registration(db: Database, registration_id: str) -> tuple[Registration, Event, int | None]:
    async with db.session() as session:
        reg = await session.get(Registration, registration_id)
        if reg is None:
            raise NotFound(registration_id)
        event = await session.get(Event, reg.event_id)
        position = await waitlist_position(session, reg)
    assert event is not None
    return reg, event, position


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
