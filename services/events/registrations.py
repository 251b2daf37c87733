"""Registering for an event and cancelling a registration: a seat while one is free, else
the waitlist; a cancellation promotes the first on the waitlist in the same transaction
(serialised per event, see service.py). Also the attendee list as CSV.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.auth import Staff
from shared.contact import sms_refusal
from shared.db import Database
from shared.errors import Bilingual
from shared.models import utcnow
from shared.settings import Settings
from shared.web.csv_export import csv_text

from . import domain
from .errors import AlreadyRegistered, Conflict, NotFound, PhoneRefused
from .messages import registration_notice, tell_registrant
from .models import Event, Registration
from .repository import active_registrations, last_end, lock_event, waitlist_position
from .schemas import RegistrationIn

ALREADY_REGISTERED = Bilingual(
    "Prijava s tem e-naslovom ali telefonom že obstaja. Povezavo do nje smo znova poslali na e-naslov oziroma "
    "telefon, vpisan ob prijavi.",
    "A registration with this email or phone exists; we have sent its link again to the contact given then.",
)


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
        raise PhoneRefused(refusal)
    email = str(data.email).lower() if data.email else None
    async with db.session() as session:
        event = await lock_event(session, db, event_id)
        if event.status != "published":
            raise Conflict(Bilingual("Prijave na ta dogodek niso odprte.", "Registration for this event is not open."))
        if last_end(event) <= now:
            raise Conflict(Bilingual("Dogodek je že mimo.", "The event is over."))
        active = await active_registrations(session, event.id)
        for other in active:
            if (email and other.email == email) or (data.phone and other.phone == data.phone):
                # Its link goes again to the contacts given then (never to those typed now), and
                # the answer carries neither its link nor its data: whoever knows someone's
                # address learns no more than the seat count shows (docs/security.md).
                notice = registration_notice(settings, event, other, position=await waitlist_position(session, other))
                tell_registrant(session, other.status, notice)
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
        tell_registrant(
            session, "confirmed" if seat else "waitlisted", registration_notice(settings, event, reg, position=position)
        )
        await session.commit()
    return reg, position


async def promote(
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
        tell_registrant(session, "promoted", registration_notice(settings, event, reg))
    return promoted


async def cancel_registration(
    db: Database, settings: Settings, registration_id: str, *, by: Literal["registrant", "staff"]
) -> tuple[Registration, list[Registration]]:
    """Free the seat and give it to the first on the waitlist, in the same transaction.
    Cancelling twice changes nothing."""
    async with db.session() as session:
        reg = await session.get(Registration, registration_id)
        if reg is None:
            raise NotFound(registration_id)
        event = await lock_event(session, db, reg.event_id)
        await session.refresh(reg)  # read again under the event's lock
        if reg.status == "cancelled":
            session.expunge(reg)  # keep its loaded fields: the rollback would expire them
            await session.rollback()
            return reg, []
        reg.status = "cancelled"
        reg.cancelled_at = utcnow()
        session.add(reg)
        tell_registrant(session, "cancelled", registration_notice(settings, event, reg, cancelled_by=by))
        promoted: list[Registration] = []
        if event.status == "published":
            promoted = await promote(session, settings, event, await active_registrations(session, event.id))
        await session.commit()
    return reg, promoted


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
