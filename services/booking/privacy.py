"""booking: what it holds about a person, found, exported and erased (the frame: shared/privacy.py).

Bookings keep their room, times, category and attendees for the room-use figures, but no
longer name or reach the person: name and contacts go, a purpose or reason that names them
is masked, and so are the outbox's copies of the messages about them."""

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

from .models import Booking, Room

FREE_TEXT = (Booking.name, Booking.purpose, Booking.reason)


async def find(db: Database, person: Person) -> Person:
    async with db.session() as session:
        if (mine := contact_filter(person, Booking.email, Booking.phone)) is not None:
            rows = (await session.exec(select(Booking).where(mine))).all()
            person = person.with_(**identities_of(rows))
        return await identities_in_outbox(session, person)


async def export(db: Database, person: Person) -> dict[str, Any]:
    bookings: list[dict[str, Any]] = []
    if (mine := contact_filter(person, Booking.email, Booking.phone)) is not None:
        async with db.session() as session:
            rows = (
                await session.exec(
                    select(Booking, Room.name)
                    .join(Room, col(Room.id) == col(Booking.room_id))
                    .where(mine)
                    .order_by(col(Booking.starts_at))
                )
            ).all()
        bookings = [
            {
                "room": room,
                **b.model_dump(
                    mode="json",
                    include={"starts_at", "ends_at", "purpose", "name", "email", "phone", "status", "created_at"},
                ),
            }
            for b, room in rows
        ]
    return {"bookings": bookings}


async def erase(db: Database, person: Person, settings: Settings | None = None) -> dict[str, int]:
    bookings = 0
    async with db.session() as session:
        if (mine := contact_filter(person, Booking.email, Booking.phone)) is not None:
            result = await session.exec(sa.update(Booking).where(mine).values(name=ERASED, email=None, phone=None))
            bookings = int(result.rowcount or 0)
        masked = await mask_text_columns(session, person, FREE_TEXT)
        outbox = await mask_outbox(session, person)
        await session.commit()
    await db.flush_deleted_data()
    return {"bookings": bookings, "texts_masked": masked, "outbox_messages": outbox}


async def retain(db: Database, settings: Settings, now: datetime | None = None) -> dict[str, int]:
    """`KRANJ_RECORD_RETENTION_DAYS` after a booking ended, it keeps room, times, purpose and
    category for the figures but no name or contact; sent outbox messages older than that
    are deleted."""
    cutoff = (now or utcnow()) - timedelta(days=settings.record_retention_days)
    async with db.session() as session:
        done = await session.exec(
            sa.update(Booking)
            .where(
                col(Booking.ends_at) < cutoff,
                sa.or_(col(Booking.email).is_not(None), col(Booking.phone).is_not(None), col(Booking.name) != ERASED),
            )
            .values(name=ERASED, email=None, phone=None)
        )
        bus = await forget_bus_records(session, cutoff)
        await session.commit()
    bookings = int(done.rowcount or 0)
    if bookings or bus["outbox_messages"]:  # the inbox's records name no one
        await db.flush_deleted_data()
    return {"bookings": bookings, **bus}
