"""What leaves the events service about an event: its links (the page, the iCalendar file,
the registrant's signed link), the API's answers (`EventOut`, `RegistrationOut`) and the
bus messages (a registrant's notice, an event's change).
"""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from shared.contracts.events import (
    REGISTRATION_MESSAGE_TYPES,
    EventChanged,
    EventDate,
    MovedOccurrence,
    Registrant,
    RegistrationNotice,
)
from shared.links import SignedIds
from shared.outbox import add_to_outbox
from shared.settings import Settings

from . import domain
from .models import Event, Registration
from .repository import ACTIVE, dates_of, exdates_of, moved_of
from .schemas import EventOut, RegistrationOut

SOURCE = "/kranj/events"


TOKEN_SALT = "kranj.events.registration-link.v1"


def event_url(settings: Settings, event_id: str) -> str:
    return f"{settings.public_base('events')}/events/{event_id}"


def ics_url(settings: Settings, event_id: str) -> str:
    return f"{event_url(settings, event_id)}/event.ics"


def registration_token(settings: Settings, registration_id: str) -> str:
    return SignedIds(settings, TOKEN_SALT).sign(registration_id)


def registration_id_from_token(settings: Settings, token: str) -> str | None:
    return SignedIds(settings, TOKEN_SALT).read(token)


def registration_url(settings: Settings, registration_id: str) -> str:
    """The registration's own page: what it is, its place on the waiting list."""
    return f"{settings.public_base('events')}/events/prijava/{registration_token(settings, registration_id)}"


def cancel_url(settings: Settings, registration_id: str) -> str:
    """Straight to the question "Ali res želite preklicati prijavo?" (yes, or back to the
    registration's page): the email's button and the SMS link cancel in two steps, as a
    room request's cancel_url does (services/booking/messages.py)."""
    return registration_url(settings, registration_id) + "/preklic"


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
        dates=event_dates(event),
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
        status=reg.status,
        waitlist_position=position if reg.status == "waitlisted" else None,
        created_at=reg.created_at,
        cancel_url=cancel_url(settings, reg.id) if reg.status in ACTIVE else None,
        name=reg.name if personal else None,
        email=reg.email if personal else None,
        phone=reg.phone if personal else None,
        channel=reg.channel if personal else None,
    )


def registration_notice(
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
        url=event_url(settings, event.id),
        ics_url=ics_url(settings, event.id),
        cancel_url=cancel_url(settings, reg.id) if reg.status in ACTIVE else None,
        status=reg.status,
        waitlist_position=position if reg.status == "waitlisted" else None,
        channel=reg.channel,
        registrant=Registrant(name=reg.name, email=reg.email, phone=reg.phone, language=reg.language),
        **extra,
    )


def tell_registrant(session: AsyncSession, kind: str, notice: RegistrationNotice) -> None:
    add_to_outbox(session, REGISTRATION_MESSAGE_TYPES[kind], notice, source=SOURCE, subject=notice.registration_id)


def event_dates(event: Event) -> list[EventDate]:
    """Every date of the event, expanded here so no consumer needs an RRULE engine."""
    return [EventDate(starts_at=o.starts_at, ends_at=o.ends_at) for o in dates_of(event)]


def event_changed(settings: Settings, event: Event, *, registrations: int, **extra: Any) -> EventChanged:
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
        audience=event.audience,
        topics=event.topics,
        rrule=event.rrule,
        exdates=exdates_of(event),
        moved=[
            MovedOccurrence(original=k, starts_at=v.starts_at, ends_at=v.ends_at) for k, v in moved_of(event).items()
        ],
        dates=event_dates(event),
        url=event_url(settings, event.id),
        status=event.status,
        registrations=registrations,
        **extra,
    )
