"""Changing one date of a recurring event: moving it to another time or cancelling it, the
rest of the series staying; every registrant is told.
"""

from __future__ import annotations

from datetime import UTC, datetime

from shared.contracts.events import EVENT_UPDATED
from shared.db import Database
from shared.errors import Bilingual
from shared.i18n import format_datetime
from shared.models import utcnow
from shared.outbox import add_to_outbox
from shared.settings import Settings

from . import domain
from .errors import CANCELLED_UNCHANGEABLE, Conflict
from .messages import SOURCE, event_changed, registration_notice, tell_registrant
from .models import Event
from .repository import active_registrations, exdates_of, lock_event, moved_of


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
        event = await lock_event(session, db, event_id)
        if event.status == "cancelled":
            raise Conflict(CANCELLED_UNCHANGEABLE)
        if not event.rrule:
            raise Conflict(
                Bilingual(
                    "Dogodek se ne ponavlja: spremenite njegov čas.", "Not a recurring event: change its time instead."
                )
            )
        original = occurrence.astimezone(UTC)
        series = domain.occurrences(event.starts_at, event.ends_at, event.rrule, exdates_of(event))
        if original not in {o.starts_at for o in series}:
            raise Conflict(
                Bilingual(
                    f"Dogodek nima termina {format_datetime(original)}.",
                    f"The series has no occurrence starting {original}.",
                )
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
            active = await active_registrations(session, event.id)
            waiting = 0
            for reg in active:
                waiting += reg.status == "waitlisted"
                notice = registration_notice(
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
                tell_registrant(session, "event-changed", notice)
            add_to_outbox(
                session,
                EVENT_UPDATED,
                event_changed(
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
