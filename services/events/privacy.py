"""events: what it holds about a person, found, exported and erased (the frame: shared/privacy.py).

Registrations keep their place and status (the seat counts and figures), and events stay
(they are public), but neither names nor reaches the person any more: registrants' and
organisers' contacts go, their names are masked wherever free text holds them, and so are
the outbox's copies of the messages about them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from shared.db import Database
from shared.models import utcnow
from shared.privacy import (
    ERASED,
    Person,
    contact_filter,
    forget_bus_records,
    identities_in_outbox,
    identities_of,
    mask_outbox,
    mask_text_columns,
)
from shared.settings import Settings

from .models import Event, Registration
from .repository import last_end

FREE_TEXT = (
    Registration.name,
    Event.title,
    Event.description,
    Event.organiser,
    Event.venue,
    Event.room_note,
    Event.cancel_reason,
)


async def find(db: Database, person: Person) -> Person:
    mine = contact_filter(person, Registration.email, Registration.phone)
    async with db.session() as session:
        if mine is not None:
            rows = (await session.exec(select(Registration).where(mine))).all()
            person = person.with_(**identities_of(rows))
        return await identities_in_outbox(session, person)


async def export(db: Database, person: Person) -> dict[str, Any]:
    async with db.session() as session:
        registrations = []
        if (mine := contact_filter(person, Registration.email, Registration.phone)) is not None:
            rows = (
                await session.exec(
                    select(Registration, Event.title, Event.starts_at)
                    .join(Event, col(Event.id) == col(Registration.event_id))
                    .where(mine)
                    .order_by(col(Registration.created_at))
                )
            ).all()
            registrations = [
                {
                    "event": title,
                    "event_starts_at": starts_at.isoformat(),
                    **r.model_dump(
                        mode="json", include={"name", "email", "phone", "status", "created_at", "cancelled_at"}
                    ),
                }
                for r, title, starts_at in rows
            ]
        organised = []
        if (theirs := contact_filter(person, Event.organiser_email, Event.organiser_phone)) is not None:
            events = (await session.exec(select(Event).where(theirs))).all()
            organised = [
                e.model_dump(
                    mode="json", include={"title", "starts_at", "organiser", "organiser_email", "organiser_phone"}
                )
                for e in events
            ]
    return {"registrations": registrations, "events_organised": organised}


async def erase(db: Database, person: Person, settings: Settings | None = None) -> dict[str, int]:
    registrations = organisers = 0
    async with db.session() as session:
        if (mine := contact_filter(person, Registration.email, Registration.phone)) is not None:
            result = await session.exec(sa.update(Registration).where(mine).values(name=ERASED, email=None, phone=None))
            registrations = int(result.rowcount or 0)
        if person.emails:
            done = await session.exec(
                sa.update(Event)
                .where(sa.func.lower(Event.organiser_email).in_(sorted(person.emails)))
                .values(organiser_email=None)
            )
            organisers += int(done.rowcount or 0)
        if person.phones:
            done = await session.exec(
                sa.update(Event)
                .where(col(Event.organiser_phone).in_(sorted(person.phones)))
                .values(organiser_phone=None)
            )
            organisers += int(done.rowcount or 0)
        masked = await mask_text_columns(session, person, FREE_TEXT)
        outbox = await mask_outbox(session, person)
        await session.commit()
    await db.flush_deleted_data()
    return {"registrations": registrations, "organisers": organisers, "texts_masked": masked, "outbox_messages": outbox}


async def retain(db: Database, settings: Settings, now: datetime | None = None) -> dict[str, int]:
    """`KRANJ_RECORD_RETENTION_DAYS` after an event's last date ended, its registrations keep
    their place and status but no name or contact, and the organiser's contact goes; sent
    outbox messages older than that are deleted."""
    cutoff = (now or utcnow()) - timedelta(days=settings.record_retention_days)
    async with db.session() as session:
        candidates = (await session.exec(select(Event).where(col(Event.starts_at) < cutoff))).all()
        over = [e.id for e in candidates if last_end(e) < cutoff]
        registrations = organisers = 0
        if over:
            done = await session.exec(
                sa.update(Registration)
                .where(
                    col(Registration.event_id).in_(over),
                    sa.or_(
                        col(Registration.email).is_not(None),
                        col(Registration.phone).is_not(None),
                        col(Registration.name) != ERASED,
                    ),
                )
                .values(name=ERASED, email=None, phone=None)
            )
            registrations = int(done.rowcount or 0)
            done = await session.exec(
                sa.update(Event)
                .where(
                    col(Event.id).in_(over),
                    sa.or_(col(Event.organiser_email).is_not(None), col(Event.organiser_phone).is_not(None)),
                )
                .values(organiser_email=None, organiser_phone=None)
            )
            organisers = int(done.rowcount or 0)
        bus = await forget_bus_records(session, cutoff)
        await session.commit()
    if registrations or organisers or bus["outbox_messages"]:  # the inbox's records name no one
        await db.flush_deleted_data()
    return {"registrations": registrations, "organisers": organisers, **bus}
