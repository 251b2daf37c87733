"""What the JSON API (api.py) and the HTML pages (pages.py, staff_pages.py) share: the
service's context of a request, an event loaded or 404, an event as a record of the
permission table, the list filters, and the attendee list as a CSV download."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from fastapi import HTTPException, Request, status
from fastapi.responses import Response

from shared.auth import Record, Staff, authorize
from shared.contracts import KS_NAMES
from shared.contracts.events import AGE_GROUPS

from . import domain, registrations, repository
from .errors import NotFound
from .models import Event
from .repository import EventFilter

NO_EVENT = "Dogodka ni. / No such event."
NO_REGISTRATION = "Prijave ni. / No such registration."
ICS = "text/calendar; charset=utf-8"


def context(request: Request) -> Any:
    """The service's `ServiceApp` (db, settings, templates) the request's app runs with."""
    return request.app.state.ctx


async def load_event(ctx: Any, event_id: str) -> Event:
    """The event, or 404."""
    try:
        return await repository.get_event(ctx.db, event_id)
    except NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_EVENT) from None


def record_of(event: Event) -> Record:
    """An event for the permission table: its KS, and who created it (organisers: own records)."""
    return Record(ks=event.ks, owner=event.created_by)


async def event_record(request: Request) -> Record:
    """The event of the path (`event_id`) as a record of the permission table, or 404: the
    loader of every route's declared action on one event (`Permit`, `StaffPage`)."""
    return record_of(await load_event(context(request), request.path_params["event_id"]))


def event_filter(
    ks: str | None, age: str | None, topic: str | None, since: date | None, until: date | None
) -> EventFilter:
    """The list's filters from the query (days in Europe/Ljubljana, `until` inclusive); 422
    for an unknown KS or age group."""
    if ks is not None and ks not in KS_NAMES:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"Neznana KS {ks!r}. / Unknown KS.")
    if age is not None and age not in AGE_GROUPS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"Neznana starostna skupina {age!r}. / Use one of {', '.join(AGE_GROUPS)}.",
        )
    return EventFilter(
        ks=ks,
        age=age,
        topic=topic,
        since=datetime.combine(since, time(0), domain.TZ) if since else None,
        until=datetime.combine(until + timedelta(days=1), time(0), domain.TZ) if until else None,
    )


@dataclass(frozen=True)
class WhenChoice:
    """A ready-made span of days for the events list: one tap instead of two date fields
    (which a phone's browser may ask for as month/day/year)."""

    label: str
    first: date | None  # None, None: everything coming
    last: date | None


def when_choices(today: date) -> list[WhenChoice]:
    """Danes, this weekend (today on a Saturday or Sunday), the next 7 days, the rest of
    this month, and everything coming; days in Europe/Ljubljana."""
    weekday = today.weekday()
    saturday = today if weekday >= 5 else today + timedelta(days=5 - weekday)
    sunday = saturday + timedelta(days=6 - saturday.weekday())
    month_end = (today.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    return [
        WhenChoice("Danes", today, today),
        WhenChoice("Ta vikend", max(saturday, today), sunday),
        WhenChoice("Naslednjih 7 dni", today, today + timedelta(days=6)),
        WhenChoice("Ta mesec", today, month_end),
        WhenChoice("Vsi prihajajoči", None, None),
    ]


async def registrations_csv_response(request: Request, staff: Staff, event_id: str) -> Response:
    """The attendee list of the event as a CSV download, for staff allowed to read its registrants."""
    ctx = context(request)
    event = await load_event(ctx, event_id)
    authorize(staff, "events.registrants.read", record_of(event))
    rows = await repository.list_registrations(ctx.db, event_id)
    return Response(
        registrations.registrations_csv(event, rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="prijave-{event_id}.csv"'},
    )
