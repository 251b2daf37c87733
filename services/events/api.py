"""HTTP surface of events: staff API, public API, feeds and pages (thin: translate, call service)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from shared.auth import (
    Grant,
    MaybeStaff,
    Permit,
    Record,
    Staff,
    authorize,
    current_staff,
    may,
    page_staff,
)
from shared.contracts import KS_NAMES, ks_name
from shared.contracts.events import AGE_GROUPS
from shared.i18n import plural
from shared.web.forms import Errors, field_errors, form_errors
from shared.web.ratelimit import RATE_LIMITED, rate_limit
from shared.web.site import chosen_ks, remember_ks

from . import calendar, domain, service
from .service import (
    AttendanceIn,
    AttendanceOut,
    CancelIn,
    EventFilter,
    EventIn,
    EventOut,
    EventPatch,
    OccurrenceCancel,
    OccurrenceMove,
    RegistrationIn,
    RegistrationOut,
)

api = APIRouter(prefix="/api/v1", tags=["events"])
pages = APIRouter(include_in_schema=False)

NO_EVENT = "Dogodka ni. / No such event."
NO_REGISTRATION = "Prijave ni. / No such registration."
ICS = "text/calendar; charset=utf-8"


def _ctx(request: Request) -> Any:
    return request.app.state.ctx


async def _load(ctx: Any, event_id: str) -> service.Event:
    try:
        return await service.get_event(ctx.db, event_id)
    except service.NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_EVENT) from None


def record_of(event: service.Event) -> Record:
    """An event for the permission table: its KS, and who created it (organisers: own records)."""
    return Record(ks=event.ks, owner=event.created_by)


async def event_record(request: Request) -> Record:
    return record_of(await _load(_ctx(request), request.path_params["event_id"]))


def _on_event(action: str) -> Any:
    """The staff member allowed `action` on the event of the path (shared/permissions.py)."""
    return Annotated[Grant, Permit(action, record=event_record)]


Create = Annotated[Grant, Permit("events.create")]
Publish = _on_event("events.publish")
Edit = _on_event("events.edit")
CancelEvent = _on_event("events.cancel")
Registrants = _on_event("events.registrants.read")
AttendanceWrite = _on_event("events.attendance.write")
AttendanceRead = _on_event("events.attendance.read")


def _conflict(exc: Exception) -> HTTPException:
    """409, or 422 for a phone the platform will not text (`service.PhoneRefused`)."""
    return HTTPException(getattr(exc, "status", status.HTTP_409_CONFLICT), str(exc))


# ======================================================================================
# Events (staff writes, public reads)
# ======================================================================================
@api.post(
    "/events", status_code=status.HTTP_201_CREATED, response_model=EventOut, summary="Create a draft event (staff)"
)
async def create_event(body: EventIn, request: Request, staff: Create) -> EventOut:
    staff.require(None, body.ks)
    ctx = _ctx(request)
    event = await service.create_event(ctx.db, staff, body)
    return service.to_out(ctx.settings, event, personal=True)


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
    request: Request, staff: Staff, event_id: str, change: Callable[[Any], Awaitable[service.Event]]
) -> EventOut:
    """A staff change of one event (the route's `Permit` has checked the staff member against
    the event's KS and owner); `change(ctx)` runs the use case; a state that does not allow it
    is 409; the answer carries personal data."""
    ctx = _ctx(request)
    try:
        event = await change(ctx)
    except service.Conflict as exc:
        raise _conflict(exc) from None
    return service.to_out(ctx.settings, event, personal=True)


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
    ctx = _ctx(request)
    event = await _load(ctx, event_id)
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
        lambda ctx: service.change_occurrence(
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
        lambda ctx: service.change_occurrence(ctx.db, ctx.settings, event_id, body.occurrence, reason=body.reason),
    )


def _filters(ks: str | None, age: str | None, topic: str | None, since: date | None, until: date | None) -> EventFilter:
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


@api.get("/events", response_model=list[EventOut], summary="Published upcoming events")
async def list_events(
    request: Request,
    ks: Annotated[str | None, Query(description="KS slug")] = None,
    age: Annotated[str | None, Query(description="Age group: otroci, mladi, odrasli, starejsi, vsi")] = None,
    topic: Annotated[str | None, Query(description="Topic slug")] = None,
    since: Annotated[date | None, Query(alias="from", description="From this day (Europe/Ljubljana)")] = None,
    until: Annotated[date | None, Query(alias="to", description="Until this day, inclusive")] = None,
) -> list[EventOut]:
    ctx = _ctx(request)
    events = await service.list_published(ctx.db, filters=_filters(ks, age, topic, since, until))
    return [service.to_out(ctx.settings, e) for e in events]


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
    ctx = _ctx(request)
    event = await _load(ctx, event_id)
    if event.status not in ("published", "cancelled"):
        authorize(staff or current_staff(request), "events.drafts.read", record_of(event))
    return service.to_out(ctx.settings, event, await service.seats_taken(ctx.db, event_id))


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
    ctx = _ctx(request)
    event = await _load(ctx, event_id)
    if staff is not None:
        staff = authorize(staff, "events.registrations.write", record_of(event))
    try:
        reg, position = await service.register(ctx.db, ctx.settings, event_id, body, staff=staff)
    except service.Conflict as exc:
        raise _conflict(exc) from None
    return service.registration_out(ctx.settings, reg, position=position)


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
    ctx = _ctx(request)
    by = "registrant"
    if token is not None:
        if service.registration_id_from_token(ctx.settings, token) != registration_id:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "Povezava ni veljavna. / The token is not valid.")
    else:
        staff = staff or current_staff(request)
        try:
            _, event, _ = await service.get_registration(ctx.db, registration_id)
        except service.NotFound:
            raise HTTPException(status.HTTP_404_NOT_FOUND, NO_REGISTRATION) from None
        authorize(staff, "events.registrations.write", record_of(event))
        by = "staff"
    try:
        reg, _promoted = await service.cancel_registration(ctx.db, ctx.settings, registration_id, by=by)  # type: ignore[arg-type]
    except service.NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_REGISTRATION) from None
    return service.registration_out(ctx.settings, reg)


@api.get(
    "/events/{event_id}/registrations",
    response_model=list[RegistrationOut],
    summary="Registrations of an event, in order of arrival (staff; personal data)",
)
async def list_registrations(event_id: str, request: Request, staff: Registrants) -> list[RegistrationOut]:
    ctx = _ctx(request)
    rows = await service.list_registrations(ctx.db, event_id)
    return [service.registration_out(ctx.settings, r, position=p, personal=True) for r, p in rows]


@api.get(
    "/events/{event_id}/registrations.csv",
    summary="Attendee list as CSV for a Slovenian Excel (staff; UTF-8 with BOM, semicolons)",
    response_class=Response,
)
async def registrations_csv(event_id: str, request: Request, staff: Registrants) -> Response:
    return await _csv(request, staff, event_id)


async def _csv(request: Request, staff: Staff, event_id: str) -> Response:
    ctx = _ctx(request)
    event = await _load(ctx, event_id)
    authorize(staff, "events.registrants.read", record_of(event))
    rows = await service.list_registrations(ctx.db, event_id)
    return Response(
        service.registrations_csv(event, rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="prijave-{event_id}.csv"'},
    )


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
    ctx = _ctx(request)
    try:
        return await service.record_attendance(ctx.db, event_id, dict(body.counts), staff, occurrence=body.occurrence)
    except service.Conflict as exc:
        raise _conflict(exc) from None


@api.get(
    "/events/{event_id}/attendance",
    response_model=AttendanceOut,
    summary="Recorded attendance by age band, per date and in total (staff)",
)
async def get_attendance(event_id: str, request: Request, staff: AttendanceRead) -> AttendanceOut:
    ctx = _ctx(request)
    return await service.get_attendance(ctx.db, event_id)


# ======================================================================================
# Feeds
# ======================================================================================
def _ics(body: bytes, filename: str) -> Response:
    return Response(body, media_type=ICS, headers={"Content-Disposition": f'inline; filename="{filename}"'})


@pages.get("/events/calendar.ics")
async def city_calendar(request: Request) -> Response:
    ctx = _ctx(request)
    events = await service.list_all_published(ctx.db)
    base = ctx.settings.public_base("events")
    return _ics(calendar.events_ics(events, base, "Kranj ZA vse — dogodki"), "kranj-dogodki.ics")


@pages.get("/events/ks/{ks}/calendar.ics")
async def ks_calendar(ks: str, request: Request) -> Response:
    if ks not in KS_NAMES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"Neznana KS {ks!r}. / Unknown KS.")
    ctx = _ctx(request)
    events = [e for e in await service.list_all_published(ctx.db) if e.ks in (ks, "*")]
    base = ctx.settings.public_base("events")
    return _ics(calendar.events_ics(events, base, f"KS {ks_name(ks)} — dogodki"), f"dogodki-{ks}.ics")


@pages.get("/events/feed.atom")
async def atom_feed(request: Request, ks: str | None = None) -> Response:
    ctx = _ctx(request)
    ks = ks if ks in KS_NAMES else None
    events = [e for e in await service.list_all_published(ctx.db) if ks is None or e.ks in (ks, "*")]
    base = ctx.settings.public_base("events")
    title = f"Novi dogodki v KS {ks_name(ks)}" if ks else "Novi dogodki — Kranj ZA vse"
    self_url = f"{base}/events/feed.atom" + (f"?ks={ks}" if ks else "")
    newest = sorted(events, key=lambda e: e.published_at or e.created_at, reverse=True)[:50]
    return Response(
        calendar.events_atom(newest, base, title=title, self_url=self_url), media_type="application/atom+xml"
    )


@pages.get("/events/{event_id}/event.ics")
async def event_ics(event_id: str, request: Request) -> Response:
    ctx = _ctx(request)
    event = await _load(ctx, event_id)
    if event.status not in ("published", "cancelled"):
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_EVENT)
    base = ctx.settings.public_base("events")
    return Response(
        calendar.events_ics([event], base, event.title),
        media_type=ICS,
        headers={"Content-Disposition": f'attachment; filename="dogodek-{event_id}.ics"'},
    )


# ======================================================================================
# Pages: residents
# ======================================================================================
@pages.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/events", status_code=307)


def _page_date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@pages.get("/events", response_class=HTMLResponse)
async def events_page(
    request: Request,
    ks: str | None = None,
    starost: str | None = None,
    tema: str | None = None,
    od: str | None = None,
    do: str | None = None,
) -> HTMLResponse:
    ctx = _ctx(request)
    picked, ks = ks, chosen_ks(request, ks)  # no `ks` in the address: the KS this browser picked before
    age = starost if starost in AGE_GROUPS else None
    topic = (tema or "").strip().lower() or None
    since, until = _page_date(od), _page_date(do)
    events = await service.list_published(ctx.db, filters=_filters(ks, age, topic, since, until))
    all_topics = sorted({t for e in await service.list_published(ctx.db) for t in e.topics})
    nexts = {e.id: service.next_occurrence(e, _filters(None, None, None, since, None).since) for e in events}
    page = ctx.templates.TemplateResponse(
        request,
        "events.html",
        {
            "events": events,
            "nexts": nexts,
            "ks": ks,
            "age": age,
            "topic": topic,
            "od": since.isoformat() if since else "",
            "do": until.isoformat() if until else "",
            "topics": all_topics,
            "age_groups": domain.AGE_GROUP_SL,
        },
    )
    return remember_ks(request, page, picked, ctx.settings)  # type: ignore[return-value]


DATES_SHOWN = 12
MORE_DATES = {"one": "termin", "two": "termina", "few": "termini", "other": "terminov"}


async def _event_page(
    request: Request,
    event_id: str,
    *,
    form: dict[str, str] | None = None,
    errors: Errors | None = None,
    status_code: int = 200,
    every_date: bool = False,
) -> HTMLResponse:
    ctx = _ctx(request)
    event = await _load(ctx, event_id)
    if event.status not in ("published", "cancelled", "pending-room"):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Dogodek ni objavljen. / The event is not published.")
    taken = await service.seats_taken(ctx.db, event_id)
    upcoming = service.dates_of(event, since=service.utcnow())
    more = 0 if every_date else max(0, len(upcoming) - DATES_SHOWN)
    return ctx.templates.TemplateResponse(
        request,
        "event.html",
        {
            "event": event,
            "taken": taken,
            "free": None if event.capacity is None else max(0, event.capacity - taken),
            "upcoming": upcoming if every_date else upcoming[:DATES_SHOWN],
            "more_dates": plural(more, MORE_DATES) if more else "",
            "every_date": every_date,
            "exdates": service.exdates_of(event),
            "description": domain.render_description(event.description),
            "age_groups": domain.AGE_GROUP_SL,
            "form": form or {},
            "errors": errors or Errors(),
            "open": event.status == "published" and bool(upcoming),
        },
        status_code=status_code,
    )


@pages.get("/events/osebje")
async def staff_home() -> RedirectResponse:
    return RedirectResponse("/events/osebje/", status_code=307)


@pages.get("/events/{event_id}", response_class=HTMLResponse)
async def event_page(event_id: str, request: Request, vsi: str | None = None) -> HTMLResponse:
    """`?vsi=1` lists every coming date of a series (else the first 12 and how many more)."""
    return await _event_page(request, event_id, every_date=bool(vsi))


_FIELD_SL = {
    "name": "Vpišite ime in priimek.",
    "email": "E-poštni naslov ni pravilen (npr. ime@primer.si).",
    "phone": "Telefonska številka ni pravilna (npr. 040 123 456).",
}


_CONTACT_SL = [
    ("or a phone number", "Vpišite e-poštni naslov ali telefonsko številko, da vas lahko obvestimo.", "email")
]


def _form_errors(exc: ValidationError) -> list[str]:
    return form_errors(exc, _FIELD_SL, _CONTACT_SL)


def _registration_errors(exc: ValidationError) -> Errors:
    """The registration form's errors by field (the ids of event.html's inputs)."""
    return field_errors(exc, _FIELD_SL, _CONTACT_SL)


@pages.post("/events/{event_id}/prijava", response_class=HTMLResponse, dependencies=[rate_limit("registration")])
async def register_form(event_id: str, request: Request) -> Response:
    """Sign-up without JavaScript: errors re-render the page in Slovenian; success redirects
    to the registrant's own page (confirmed or waitlisted, with the cancel button)."""
    ctx = _ctx(request)
    raw = await request.form()
    form = {k: str(v).strip() for k, v in raw.items() if isinstance(v, str)}
    try:
        body = RegistrationIn(
            name=form.get("name", ""), email=form.get("email") or None, phone=form.get("phone") or None
        )
    except ValidationError as exc:
        return await _event_page(request, event_id, form=form, errors=_registration_errors(exc), status_code=422)
    await _load(ctx, event_id)
    try:
        reg, _ = await service.register(ctx.db, ctx.settings, event_id, body)
    except service.Conflict as exc:
        errors = Errors({"name": str(exc).split(" / ")[0]})
        return await _event_page(request, event_id, form=form, errors=errors, status_code=exc.status)
    token = service.registration_token(ctx.settings, reg.id)
    return RedirectResponse(f"/events/prijava/{token}?nova=1", status_code=303)


async def _by_token(request: Request, token: str) -> tuple[service.Registration, service.Event, int | None]:
    ctx = _ctx(request)
    registration_id = service.registration_id_from_token(ctx.settings, token)
    if registration_id is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Povezava ni veljavna. / The link is not valid.")
    try:
        return await service.get_registration(ctx.db, registration_id)
    except service.NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_REGISTRATION) from None


@pages.get("/events/prijava/{token}", response_class=HTMLResponse)
async def registration_page(token: str, request: Request, nova: str | None = None) -> HTMLResponse:
    reg, event, position = await _by_token(request, token)
    return _ctx(request).templates.TemplateResponse(
        request,
        "registration.html",
        {"reg": reg, "event": event, "position": position, "token": token, "new": bool(nova)},
    )


@pages.post("/events/prijava/{token}/preklic", dependencies=[rate_limit("link")])
async def registration_cancel(token: str, request: Request) -> Response:
    reg, _event, _ = await _by_token(request, token)
    ctx = _ctx(request)
    await service.cancel_registration(ctx.db, ctx.settings, reg.id, by="registrant")
    return RedirectResponse(f"/events/prijava/{token}", status_code=303)


# ======================================================================================
# Pages: staff
# ======================================================================================
def _local_input(moment: datetime) -> str:
    return moment.astimezone(domain.TZ).strftime("%Y-%m-%dT%H:%M")


def _event_form(event: service.Event | None) -> dict[str, str]:
    if event is None:
        return {"ks": "", "audience": "vsi"}
    return {
        "ks": event.ks,
        "title": event.title,
        "description": event.description,
        "starts_at": _local_input(event.starts_at),
        "ends_at": _local_input(event.ends_at),
        "venue": event.venue,
        "capacity": str(event.capacity or ""),
        "audience": " ".join(event.audience),
        "topics": ", ".join(event.topics),
        "organiser": event.organiser,
        "organiser_email": event.organiser_email or "",
        "organiser_phone": event.organiser_phone or "",
        "room_id": event.room_id or "",
        "accessibility": event.accessibility,
        "rrule": event.rrule or "",
        "exdates": "\n".join(_local_input(d) for d in service.exdates_of(event)),
    }


def _parse_event_form(form: dict[str, str], raw_audience: list[str]) -> dict[str, Any]:
    def local(value: str) -> datetime | str:
        try:
            return datetime.fromisoformat(value).replace(tzinfo=domain.TZ)
        except ValueError:
            return value

    return {
        "ks": form.get("ks", ""),
        "title": form.get("title", ""),
        "description": form.get("description", ""),
        "starts_at": local(form.get("starts_at", "")),
        "ends_at": local(form.get("ends_at", "")),
        "venue": form.get("venue", ""),
        "capacity": form.get("capacity") or None,
        "audience": raw_audience or ["vsi"],
        "topics": [t.strip() for t in form.get("topics", "").split(",") if t.strip()],
        "organiser": form.get("organiser", ""),
        "organiser_email": form.get("organiser_email") or None,
        "organiser_phone": form.get("organiser_phone") or None,
        "room_id": form.get("room_id") or None,
        "accessibility": form.get("accessibility", ""),
        "rrule": form.get("rrule") or None,
        "exdates": [local(x.strip()) for x in form.get("exdates", "").splitlines() if x.strip()],
    }


_EVENT_FIELD_SL = {
    "ks": "Izberite krajevno skupnost.",
    "title": "Vpišite naslov dogodka.",
    "starts_at": "Vpišite začetek (datum in ura).",
    "ends_at": "Vpišite konec (datum in ura).",
    "venue": "Vpišite kraj dogodka.",
    "capacity": "Število mest mora biti celo število, vsaj 1.",
    "topics": "Teme so kratke besede brez presledkov (npr. delavnica, kultura).",
    "rrule": "Ponavljanje ni pravilno zapisano (npr. FREQ=WEEKLY;UNTIL=20270630).",
    "exdates": "Odpovedani termini: en datum in ura v vrstici.",
    "organiser_email": "E-poštni naslov organizatorja ni pravilen.",
    "organiser_phone": "Telefonska številka organizatorja ni pravilna (npr. 041 123 456).",
    "room_id": "Oznaka prostora je predolga.",
}


def _event_errors(exc: ValidationError) -> list[str]:
    return form_errors(
        exc,
        _EVENT_FIELD_SL,
        [
            ("ends_at", "Konec mora biti za začetkom."),
            ("cannot hold a KS room", service.SERIES_IN_A_ROOM.split(" / ")[0]),
            ("RRULE", "Ponavljanje ni pravilno zapisano."),
            ("series", "Ponavljanje ni pravilno zapisano."),
        ],
    )


@pages.get("/events/osebje/", response_class=HTMLResponse)
async def staff_list(request: Request) -> Response:
    staff = page_staff(request)
    if isinstance(staff, RedirectResponse):
        return staff
    ctx = _ctx(request)
    events = [e for e in await service.list_for_staff(ctx.db, staff) if may(staff, "events.list", record_of(e))]
    return ctx.templates.TemplateResponse(
        request, "staff_events.html", {"events": events, "status_sl": domain.STATUS_SL}
    )


async def _editor(
    request: Request,
    staff: Staff,
    event: service.Event | None,
    form: dict[str, str],
    errors: list[str],
    status_code: int = 200,
) -> Response:
    ctx = _ctx(request)
    extra: dict[str, Any] = {}
    if event is not None:
        extra["registrations"] = await service.list_registrations(ctx.db, event.id)
        extra.update(await _attendance_form(ctx, event))
        if event.rrule:  # the series' own dates (not cancelled), each with where it is held now
            moved = service.moved_of(event)
            series = domain.occurrences(event.starts_at, event.ends_at, event.rrule, service.exdates_of(event))
            extra["series"] = [(o, moved.get(o.starts_at)) for o in series if o.ends_at > service.utcnow()]
    ks_choices = {s: n for s, n in KS_NAMES.items() if staff.may_act_for(s)}
    return ctx.templates.TemplateResponse(
        request,
        "staff_event.html",
        {
            "event": event,
            "form": form,
            "errors": errors,
            "ks_choices": ks_choices,
            "city_wide": staff.may_act_for("*"),
            "age_groups": domain.AGE_GROUP_SL,
            "status_sl": domain.STATUS_SL,
            "reg_sl": domain.REGISTRATION_SL,
            "channel_sl": domain.CHANNEL_SL,
            **extra,
        },
        status_code=status_code,
    )


async def _attendance_form(ctx: Any, event: service.Event) -> dict[str, Any]:
    """The attendance part of the staff editor: what was recorded, the dates that have
    started (newest first; the newest is preselected), or when it can be recorded."""
    attendance = await service.get_attendance(ctx.db, event.id)
    now = service.utcnow()
    moved = service.moved_of(event)
    dates = service.attendance_dates(event)
    started = sorted(
        ((o.starts_at, moved.get(o.starts_at, o)) for o in dates if moved.get(o.starts_at, o).starts_at <= now),
        key=lambda pair: pair[1].starts_at,
        reverse=True,
    )
    chosen = started[0][0] if started else None
    recorded = next((d.counts for d in attendance.dates if d.occurrence == chosen), {})
    first = min((moved.get(o.starts_at, o).starts_at for o in dates), default=event.starts_at)
    return {
        "attendance": attendance,
        "attendance_dates": started[:100],
        "attendance_values": recorded,
        "attendance_from": first,
        "attendance_labels": domain.ATTENDANCE_LABELS,
        "attendance_bands": domain.ATTENDANCE_BANDS,
    }


@pages.get("/events/osebje/nov", response_class=HTMLResponse)
async def staff_new(request: Request) -> Response:
    staff = page_staff(request)
    if isinstance(staff, RedirectResponse):
        return staff
    authorize(staff, "events.create")
    return await _editor(request, staff, None, _event_form(None), [])


@pages.post("/events/osebje/nov", response_class=HTMLResponse)
async def staff_create(request: Request) -> Response:
    staff = page_staff(request)
    if isinstance(staff, RedirectResponse):
        return staff
    authorize(staff, "events.create")
    ctx = _ctx(request)
    raw = await request.form()
    form = {k: str(v).strip() for k, v in raw.items() if isinstance(v, str)}
    audience = [str(v) for v in raw.getlist("audience")]
    try:
        body = EventIn.model_validate(_parse_event_form(form, audience))
    except ValidationError as exc:
        form["audience"] = " ".join(audience)
        return await _editor(request, staff, None, form, _event_errors(exc), 422)
    authorize(staff, "events.create", new_ks=body.ks)
    event = await service.create_event(ctx.db, staff, body)
    return RedirectResponse(f"/events/osebje/{event.id}", status_code=303)


# What each button of the staff editor does, as an action of the permission table.
PAGE_ACTIONS = {
    "objavi": "events.publish",
    "odpovej": "events.cancel",
    "prisotnost": "events.attendance.write",
    "prijava": "events.registrations.write",
    "termin": "events.edit",
}


async def _staff_event(request: Request, event_id: str, action: str) -> tuple[Staff, service.Event] | RedirectResponse:
    staff = page_staff(request)
    if isinstance(staff, RedirectResponse):
        return staff
    event = await _load(_ctx(request), event_id)
    return authorize(staff, action, record_of(event)), event


@pages.get("/events/osebje/{event_id}", response_class=HTMLResponse)
async def staff_event(event_id: str, request: Request) -> Response:
    found = await _staff_event(request, event_id, "events.edit")
    if isinstance(found, RedirectResponse):
        return found
    staff, event = found
    return await _editor(request, staff, event, _event_form(event), [])


@pages.post("/events/osebje/{event_id}", response_class=HTMLResponse)
async def staff_edit(event_id: str, request: Request) -> Response:
    found = await _staff_event(request, event_id, "events.edit")
    if isinstance(found, RedirectResponse):
        return found
    staff, event = found
    ctx = _ctx(request)
    raw = await request.form()
    form = {k: str(v).strip() for k, v in raw.items() if isinstance(v, str)}
    audience = [str(v) for v in raw.getlist("audience")]
    values = _parse_event_form({**form, "ks": event.ks}, audience)
    try:
        body = EventIn.model_validate(values)
    except ValidationError as exc:
        form["audience"] = " ".join(audience)
        return await _editor(request, staff, event, form, _event_errors(exc), 422)
    data = body.model_dump(exclude={"ks", "room_id"})
    data["rrule"] = data["rrule"] or ""
    try:
        await service.update_event(ctx.db, ctx.settings, event_id, EventPatch(**data))
    except service.Conflict as exc:
        return await _editor(request, staff, event, form, [str(exc).split(" / ")[0]], 409)
    return RedirectResponse(f"/events/osebje/{event_id}", status_code=303)


@pages.post("/events/osebje/{event_id}/{action}", response_class=HTMLResponse)
async def staff_action(event_id: str, action: str, request: Request) -> Response:
    permission = "events.registrations.write" if action.startswith("preklici-") else PAGE_ACTIONS.get(action)
    if permission is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Ni take strani.")
    found = await _staff_event(request, event_id, permission)
    if isinstance(found, RedirectResponse):
        return found
    staff, event = found
    ctx = _ctx(request)
    raw = await request.form()
    if action == "objavi":
        try:
            await service.publish_event(ctx.db, ctx.settings, event_id)
        except service.Conflict as exc:
            return await _editor(request, staff, event, _event_form(event), [str(exc).split(" / ")[0]], 409)
    elif action == "odpovej":
        await service.cancel_event(ctx.db, ctx.settings, event_id, str(raw.get("reason") or "").strip())
    elif action == "prisotnost":
        counts: dict[str, int] = {}
        for band in domain.ATTENDANCE_BANDS:
            value = str(raw.get(band) or "0").strip() or "0"
            if not value.isdigit() or int(value) > 100000:
                errors = ["Število udeležencev mora biti celo število (0 ali več)."]
                return await _editor(request, staff, event, _event_form(event), errors, 422)
            counts[band] = int(value)
        try:
            occurrence = datetime.fromisoformat(str(raw.get("occurrence"))) if raw.get("occurrence") else None
            if occurrence is not None and occurrence.tzinfo is None:
                raise ValueError(occurrence)
        except ValueError:
            return await _editor(request, staff, event, _event_form(event), ["Izberite termin."], 422)
        try:
            await service.record_attendance(ctx.db, event_id, counts, staff, occurrence=occurrence)
        except service.Conflict as exc:
            return await _editor(request, staff, event, _event_form(event), [str(exc).split(" / ")[0]], 409)
    elif action == "prijava":
        form = {k: str(v).strip() for k, v in raw.items() if isinstance(v, str)}
        try:
            body = RegistrationIn(
                name=form.get("name", ""),
                email=form.get("email") or None,
                phone=form.get("phone") or None,
                channel="phone" if form.get("channel") == "phone" else "staff",
            )
            await service.register(ctx.db, ctx.settings, event_id, body, staff=staff)
        except ValidationError as exc:
            return await _editor(request, staff, event, _event_form(event), _form_errors(exc), 422)
        except service.Conflict as exc:
            return await _editor(request, staff, event, _event_form(event), [str(exc).split(" / ")[0]], exc.status)
    elif action == "termin":
        form = {k: str(v).strip() for k, v in raw.items() if isinstance(v, str)}
        errors = []
        try:
            occurrence = datetime.fromisoformat(form.get("occurrence", ""))
        except ValueError:
            occurrence = None
            errors.append("Izberite termin.")
        move_to = None
        if form.get("what") != "cancel" and occurrence is not None:
            try:
                starts = datetime.fromisoformat(form.get("new_starts_at", "")).replace(tzinfo=domain.TZ)
                ends = datetime.fromisoformat(form.get("new_ends_at", "")).replace(tzinfo=domain.TZ)
                if ends <= starts:
                    raise ValueError
                move_to = (starts, ends)
            except ValueError:
                errors.append("Vpišite nov začetek in konec termina (konec po začetku).")
        if errors or occurrence is None:
            return await _editor(request, staff, event, _event_form(event), errors, 422)
        try:
            await service.change_occurrence(
                ctx.db, ctx.settings, event_id, occurrence, move_to=move_to, reason=form.get("reason", "")
            )
        except service.Conflict as exc:
            return await _editor(request, staff, event, _event_form(event), [str(exc).split(" / ")[0]], 409)
    elif action.startswith("preklici-"):
        registration_id = action.removeprefix("preklici-")
        try:
            if (await service.get_registration(ctx.db, registration_id))[1].id != event_id:
                raise service.NotFound(registration_id)  # only a registration of this event
            await service.cancel_registration(ctx.db, ctx.settings, registration_id, by="staff")
        except service.NotFound:
            raise HTTPException(status.HTTP_404_NOT_FOUND, NO_REGISTRATION) from None
    else:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Ni take strani.")
    return RedirectResponse(f"/events/osebje/{event_id}", status_code=303)


@pages.get("/events/osebje/{event_id}/prijave.csv")
async def staff_csv(event_id: str, request: Request) -> Response:
    staff = page_staff(request)
    if isinstance(staff, RedirectResponse):
        return staff
    return await _csv(request, staff, event_id)
