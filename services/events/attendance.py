"""How many came to each date of an event, by age band: recorded by staff once the date has
started, read back per date and in total.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col, select

from shared.auth import Staff
from shared.db import Database
from shared.errors import Bilingual
from shared.i18n import format_datetime
from shared.models import utcnow

from . import domain
from .errors import Conflict
from .models import Attendance, Event
from .repository import exdates_of, lock_event, moved_of
from .schemas import AttendanceDate, AttendanceOut


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
            Bilingual(
                f"Dogodek nima termina {format_datetime(wanted or now)}.", f"The event has no date starting {wanted}."
            )
        ) from None
    except LookupError as exc:
        starts = exc.args[0] if exc.args and exc.args[0] else event.starts_at
        raise Conflict(
            Bilingual(
                f"Udeležbo lahko vpišete, ko se dogodek začne ({format_datetime(starts)}).",
                f"Attendance can be recorded once the event has started ({starts.isoformat()}).",
            )
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
        event = await lock_event(session, db, event_id)
        if event.status == "cancelled":
            raise Conflict(Bilingual("Dogodek je odpovedan.", "The event is cancelled."))
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
