"""events: the JSON API (`/api/v1/…`): staff writes, public reads, registrations, attendance
(thin: translate, call the use cases). The pages are in pages.py and staff_pages.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Body, HTTPException, Query, Request, status
from fastapi.responses import Response

from shared.auth import (
    Grant,
    MaybeStaff,
    Permit,
    Staff,
    authorize,
    current_staff,
)
from shared.errors import Refused
from shared.web.ratelimit import RATE_LIMITED, rate_limit

from . import attendance, messages, occurrences, registrations, repository, service
from .errors import Conflict, NotFound
from .models import Event
from .schemas import (
    AttendanceIn,
    AttendanceOut,
    CancelIn,
    EventIn,
    EventOut,
    EventPatch,
    OccurrenceCancel,
    OccurrenceMove,
    RegistrationIn,
    RegistrationOut,
)
from .web import (
    NO_REGISTRATION,
    context,
    event_filter,
    event_record,
    load_event,
    record_of,
    registrations_csv_response,
)

api = APIRouter(prefix="/api/v1", tags=["events"])


Create = Annotated[Grant, Permit("events.create")]
# The staff member allowed the action on the event of the path (shared/permissions.py).
Publish = Annotated[Grant, Permit("events.publish", record=event_record)]
Edit = Annotated[Grant, Permit("events.edit", record=event_record)]
CancelEvent = Annotated[Grant, Permit("events.cancel", record=event_record)]
Registrants = Annotated[Grant, Permit("events.registrants.read", record=event_record)]
AttendanceWrite = Annotated[Grant, Permit("events.attendance.write", record=event_record)]
AttendanceRead = Annotated[Grant, Permit("events.attendance.read", record=event_record)]


def _conflict(exc: Refused) -> HTTPException:
    """409, or 422 for a phone the platform will not text (`PhoneRefused`); the detail is
    both languages ("sl / en")."""
    return HTTPException(exc.status, str(exc))


# ======================================================================================
# Events (staff writes, public reads)
# ======================================================================================
@api.post(
    "/events", status_code=status.HTTP_201_CREATED, response_model=EventOut, summary="Create a draft event (staff)"
)
async def create_event(body: EventIn, request: Request, staff: Create) -> EventOut:
    staff.require(None, body.ks)
    ctx = context(request)
    event = await service.create_event(ctx.db, staff, body)
    return messages.to_out(ctx.settings, event, personal=True)


@api.post(
    "/events/{event_id}/publish",
    response_model=EventOut,
    summary="Publish an event (staff)",
    responses={409: {"description": "Cancelled, or it waits for its room (booking has not confirmed it)."}},
)
async def publish_event(event_id: str, request: Request, staff: Publish) -> EventOut:
    return await _staff_change(
        request, staff, event_id, lambda ctx: service.publish_event(ctx.db, ctx.settings, event_id)
    )


async def _staff_change(
    request: Request, staff: Staff, event_id: str, change: Callable[[Any], Awaitable[Event]]
) -> EventOut:
    """A staff change of one event (the route's `Permit` has checked the staff member against
    the event's KS and owner); `change(ctx)` runs the use case; a state that does not allow it
    is 409; the answer carries personal data."""
    ctx = context(request)
    try:
        event = await change(ctx)
    except Conflict as exc:
        raise _conflict(exc) from None
    return messages.to_out(ctx.settings, event, personal=True)


async def _update(event_id: str, patch: EventPatch, request: Request, staff: Staff) -> EventOut:
    return await _staff_change(
        request, staff, event_id, lambda ctx: service.update_event(ctx.db, ctx.settings, event_id, patch)
    )


@api.patch(
    "/events/{event_id}",
    response_model=EventOut,
    summary="Change some fields of an event (staff)",
    description="A published event announces `events.event.updated`; when time, place or dates change, every "
    "registrant is told (`events.registration.event-changed`). More seats promote the waitlist.",
    responses={409: {"description": "The change is not possible (a cancelled event, or fewer seats than registered)."}},
)
async def patch_event(event_id: str, body: EventPatch, request: Request, staff: Edit) -> EventOut:
    return await _update(event_id, body, request, staff)


@api.put(
    "/events/{event_id}",
    response_model=EventOut,
    summary="Replace an event's fields (staff; KS stays)",
    responses={
        409: {
            "description": "Another KS, or the change is not possible (a cancelled event, fewer seats than registered)."
        }
    },
)
async def put_event(event_id: str, body: EventIn, request: Request, staff: Edit) -> EventOut:
    ctx = context(request)
    event = await load_event(ctx, event_id)
    current = event.ks
    staff.require_record(record_of(event), body.ks)  # the event's KS now and the one the body names
    if body.ks != current:
        raise HTTPException(status.HTTP_409_CONFLICT, "KS dogodka ni mogoče spremeniti. / The KS cannot change.")
    data = body.model_dump(exclude={"ks", "room_id"})
    data["rrule"] = data["rrule"] or ""
    return await _update(event_id, EventPatch(**data), request, staff)


@api.post("/events/{event_id}/cancel", response_model=EventOut, summary="Cancel an event (staff)")
async def cancel_event(
    event_id: str, request: Request, staff: CancelEvent, body: Annotated[CancelIn | None, Body()] = None
) -> EventOut:
    reason = body.reason if body else ""
    return await _staff_change(
        request, staff, event_id, lambda ctx: service.cancel_event(ctx.db, ctx.settings, event_id, reason)
    )


@api.post(
    "/events/{event_id}/occurrences/move",
    response_model=EventOut,
    summary="Move one occurrence of a recurring event (staff)",
    description="The occurrence is named by the start the series gives it; the rest of the series stays. A published "
    "event announces `events.event.updated` (changes: `moved`) and every registrant is told the old and new time. "
    "Calendars carry it as a RECURRENCE-ID override.",
    responses={409: {"description": "Not a recurring event, no such occurrence, or the event is cancelled."}},
)
async def move_occurrence(event_id: str, body: OccurrenceMove, request: Request, staff: Edit) -> EventOut:
    return await _staff_change(
        request,
        staff,
        event_id,
        lambda ctx: occurrences.change_occurrence(
            ctx.db, ctx.settings, event_id, body.occurrence, move_to=(body.starts_at, body.ends_at)
        ),
    )


@api.post(
    "/events/{event_id}/occurrences/cancel",
    response_model=EventOut,
    summary="Cancel one occurrence of a recurring event (staff)",
    description="Adds the date to `exdates` (a moved occurrence is cancelled where it went). A published event "
    "announces `events.event.updated` (changes: `exdates`) and every registrant is told, with the reason.",
    responses={409: {"description": "Not a recurring event, no such occurrence, or the event is cancelled."}},
)
async def cancel_occurrence(event_id: str, body: OccurrenceCancel, request: Request, staff: Edit) -> EventOut:
    return await _staff_change(
        request,
        staff,
        event_id,
        lambda ctx: occurrences.change_occurrence(ctx.db, ctx.settings, event_id, body.occurrence, reason=body.reason),
    )


@api.get("/events", response_model=list[EventOut], summary="Published upcoming events")
async def list_events(
    request: Request,
    ks: Annotated[str | None, Query(description="KS slug")] = None,
    age: Annotated[str | None, Query(description="Age group: otroci, mladi, odrasli, starejsi, vsi")] = None,
    topic: Annotated[str | None, Query(description="Topic slug")] = None,
    since: Annotated[date | None, Query(alias="from", description="From this day (Europe/Ljubljana)")] = None,
    until: Annotated[date | None, Query(alias="to", description="Until this day, inclusive")] = None,
) -> list[EventOut]:
    ctx = context(request)
    events = await repository.list_published(ctx.db, filters=event_filter(ks, age, topic, since, until))
    return [messages.to_out(ctx.settings, e) for e in events]


@api.get(
    "/events/{event_id}",
    response_model=EventOut,
    summary="One event (drafts need a staff token allowed `events.drafts.read` on it)",
    responses={
        401: {"description": "A draft, and no staff token."},
        403: {"description": "A draft, and the staff token may not read it (another KS, or another organiser's)."},
    },
)
async def get_event(
    event_id: str, request: Request, staff: Annotated[Staff | None, MaybeStaff("events.drafts.read")]
) -> EventOut:
    ctx = context(request)
    event = await load_event(ctx, event_id)
    if event.status not in ("published", "cancelled"):
        authorize(staff or current_staff(request), "events.drafts.read", record_of(event))
    return messages.to_out(ctx.settings, event, await repository.seats_taken(ctx.db, event_id))


# ======================================================================================
# Registrations
# ======================================================================================
@api.post(
    "/events/{event_id}/registrations",
    status_code=status.HTTP_201_CREATED,
    response_model=RegistrationOut,
    summary="Register for an event (resident; staff may register someone by phone)",
    description="`confirmed` while seats are free, else `waitlisted`. The answer carries the signed `cancel_url`.",
    dependencies=[rate_limit("registration")],
    responses={
        403: {
            "description": "A staff token that may not register people for this event (`events.registrations.write`)."
        },
        409: {
            "description": "The event takes no registrations (a draft, cancelled, over, or without registration), "
            "or the email or phone already has a registration for it: its link is sent again to the contacts given "
            "then, and the answer carries nothing of it."
        },
        429: RATE_LIMITED,
    },
)
async def register(
    event_id: str,
    body: RegistrationIn,
    request: Request,
    staff: Annotated[Staff | None, MaybeStaff("events.registrations.write")],
) -> RegistrationOut:
    ctx = context(request)
    event = await load_event(ctx, event_id)
    if staff is not None:
        staff = authorize(staff, "events.registrations.write", record_of(event))
    try:
        reg, position = await registrations.register(ctx.db, ctx.settings, event_id, body, staff=staff)
    except Conflict as exc:
        raise _conflict(exc) from None
    return messages.registration_out(ctx.settings, reg, position=position)


@api.post(
    "/registrations/{registration_id}/cancel",
    response_model=RegistrationOut,
    summary="Cancel a registration (the registrant's signed `?token=`, or a staff token)",
    description="Frees the seat; the first on the waitlist is confirmed in the same transaction and told.",
    dependencies=[rate_limit("link")],
    responses={
        401: {"description": "Neither a `token` nor a staff token."},
        403: {"description": "The `token` is not this registration's, or the staff token is for another KS."},
        429: RATE_LIMITED,
    },
)
async def cancel_registration(
    registration_id: str,
    request: Request,
    staff: Annotated[Staff | None, MaybeStaff("events.registrations.write")],
    token: Annotated[str | None, Query(description="The token of the registrant's signed cancel link.")] = None,
) -> RegistrationOut:
    ctx = context(request)
    by: Literal["registrant", "staff"] = "registrant"
    if token is not None:
        if messages.registration_id_from_token(ctx.settings, token) != registration_id:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "Povezava ni veljavna. / The token is not valid.")
    else:
        staff = staff or current_staff(request)
        try:
            _, event, _ = await repository.get_registration(ctx.db, registration_id)
        except NotFound:
            raise HTTPException(status.HTTP_404_NOT_FOUND, NO_REGISTRATION) from None
        authorize(staff, "events.registrations.write", record_of(event))
        by = "staff"
    try:
        reg, _promoted = await registrations.cancel_registration(ctx.db, ctx.settings, registration_id, by=by)
    except NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_REGISTRATION) from None
    return messages.registration_out(ctx.settings, reg)


@api.get(
    "/events/{event_id}/registrations",
    response_model=list[RegistrationOut],
    summary="Registrations of an event, in order of arrival (staff; personal data)",
)
async def list_registrations(event_id: str, request: Request, staff: Registrants) -> list[RegistrationOut]:
    ctx = context(request)
    rows = await repository.list_registrations(ctx.db, event_id)
    return [messages.registration_out(ctx.settings, r, position=p, personal=True) for r, p in rows]


@api.get(
    "/events/{event_id}/registrations.csv",
    summary="Attendee list as CSV for a Slovenian Excel (staff; UTF-8 with BOM, semicolons)",
    response_class=Response,
)
async def registrations_csv(event_id: str, request: Request, staff: Registrants) -> Response:
    return await registrations_csv_response(request, staff, event_id)


@api.put(
    "/events/{event_id}/attendance",
    response_model=AttendanceOut,
    summary="Record how many came to one date, by age band (staff)",
    description="Age bands are the platform's one set, the same as the surveys' `age_band`: 0-14, 15-29, 30-49, "
    "50-64, 65+. Recording a date again replaces its counts. Only once that date has started.",
    responses={
        409: {
            "description": "The event (or that date of the series) has not started yet, has no such "
            "date, or is cancelled."
        }
    },
)
async def put_attendance(event_id: str, body: AttendanceIn, request: Request, staff: AttendanceWrite) -> AttendanceOut:
    ctx = context(request)
    try:
        return await attendance.record_attendance(
            ctx.db, event_id, cast("dict[str, int]", dict(body.counts)), staff, occurrence=body.occurrence
        )
    except Conflict as exc:
        raise _conflict(exc) from None


@api.get(
    "/events/{event_id}/attendance",
    response_model=AttendanceOut,
    summary="Recorded attendance by age band, per date and in total (staff)",
)
async def get_attendance(event_id: str, request: Request, staff: AttendanceRead) -> AttendanceOut:
    ctx = context(request)
    return await attendance.get_attendance(ctx.db, event_id)
