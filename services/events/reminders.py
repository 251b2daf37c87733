"""Reminders: once per confirmed registration, across replicas."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import col, select

from shared.db import Database
from shared.models import utcnow
from shared.settings import Settings

from .messages import registration_notice, tell_registrant
from .models import Event, Registration
from .repository import dates_of

REMINDER_LEAD = timedelta(hours=24)


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
            query = query.with_for_update(skip_locked=True, of=Registration)
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
            notice = registration_notice(settings, event, reg).model_copy(
                update={"starts_at": occurrence.starts_at, "ends_at": occurrence.ends_at}
            )
            tell_registrant(session, "reminder-due", notice)
            sent += 1
        await session.commit()
    return sent
