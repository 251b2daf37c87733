"""events: the staff pages (Jinja2, no JavaScript): the list of a staff member's events and
the editor of one event — create, change, download the attendee list, ask for the room again.
The editor's buttons (publish, cancel, register someone by phone, move or cancel one date of
a series, record attendance, cancel a registration) are in staff_actions.py; reading the form
(the repeat picker, the KS's rooms) in staff_form.py.

Every page declares its action of the permission table (`shared.auth.StaffPage`, in the
OpenAPI document under "staff pages", so tests/security/test_permission_matrix.py covers it).
An event in a KS room tells staff plainly where its room stands (`domain.room_notice`): refused
with the reason, waiting for the KS, or not answered at all — never silently pending."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from shared.auth import Grant, StaffPage, may
from shared.contracts import KS_NAMES
from shared.models import utcnow
from shared.web.forms import Errors

from . import attendance, domain, repeat, repository, rooms, service, staff_form
from .errors import Conflict
from .models import Event
from .schemas import EventIn, EventPatch
from .staff_form import EventForm
from .web import context, event_record, record_of, registrations_csv_response

staff_pages = APIRouter(tags=["staff pages"])

SEE_OTHER: dict[int | str, dict[str, Any]] = {
    303: {"description": "Done: on to the event's page (HTML forms post and get redirected)."}
}
HTML_FORM: dict[str, Any] = {"content": {"text/html": {}}}
FORM_ERRORS: dict[int | str, dict[str, Any]] = {
    **SEE_OTHER,
    409: {"description": "The event's state does not allow it: the page again, saying why (HTML).", **HTML_FORM},
    422: {"description": "The form again, with what to correct at each field (HTML).", **HTML_FORM},
}
ROOM_CHANGEABLE = ("draft", "room-refused")

ListEvents = Annotated[Grant, StaffPage("events.list")]
Create = Annotated[Grant, StaffPage("events.create")]
Edit = Annotated[Grant, StaffPage("events.edit", record=event_record)]
Publish = Annotated[Grant, StaffPage("events.publish", record=event_record)]
Registrants = Annotated[Grant, StaffPage("events.registrants.read", record=event_record)]


def back(event_id: str) -> RedirectResponse:
    return RedirectResponse(f"/events/osebje/{event_id}", status_code=status.HTTP_303_SEE_OTHER)


def _kss(grant: Grant) -> list[str]:
    return ["*"] if grant.may_act_for("*") else [k for k in grant.ks if k in KS_NAMES]


async def room_notice(ctx: Any, event: Event) -> domain.RoomNotice | None:
    if not event.room_id:
        return None
    room = await rooms.room_named(ctx.db, ctx.settings, event.room_id)
    return domain.room_notice(
        event.status,
        room.name if room is not None else event.room_id,
        booking_id=event.booking_id,
        note=event.room_note,
        requested_at=event.room_requested_at,
        now=utcnow(),
    )


# ======================================================================================
# The list
# ======================================================================================
@staff_pages.get("/events/osebje/", response_class=HTMLResponse, summary="The events one may manage (staff page)")
async def staff_list(request: Request, grant: ListEvents) -> HTMLResponse:
    ctx = context(request)
    events = [e for e in await repository.list_for_staff(ctx.db, grant) if may(grant, "events.list", record_of(e))]
    notices = {e.id: await room_notice(ctx, e) for e in events}
    return ctx.templates.TemplateResponse(
        request,
        "staff_events.html",
        {"section": "dogodki", "events": events, "status_sl": domain.STATUS_SL, "notices": notices},
    )


# ======================================================================================
# The editor
# ======================================================================================
async def editor(
    request: Request,
    staff: Grant,
    event: Event | None,
    form: EventForm | None = None,
    errors: Errors | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The editor of `event` (None: a new one) with `form`'s values (default: the event's)."""
    ctx = context(request)
    form = form or (staff_form.form_of(event) if event is not None else staff_form.blank())
    extra: dict[str, Any] = {}
    if event is not None:
        extra["registrations"] = await repository.list_registrations(ctx.db, event.id)
        extra.update(await _attendance_form(ctx, event))
        extra["room_notice"] = await room_notice(ctx, event)
        extra["room"] = await rooms.room_named(ctx.db, ctx.settings, event.room_id) if event.room_id else None
        if event.rrule:  # the series' own dates (not cancelled), each with where it is held now
            moved = repository.moved_of(event)
            series = domain.occurrences(event.starts_at, event.ends_at, event.rrule, repository.exdates_of(event))
            extra["series"] = [(o, moved.get(o.starts_at)) for o in series if o.ends_at > utcnow()]
    dates = staff_form.dates_shown(form)
    offered = await rooms.rooms_of(ctx.db, ctx.settings, [event.ks] if event is not None else _kss(staff))
    by_ks: dict[str, list[rooms.RoomChoice]] = {}
    for room in offered:
        by_ks.setdefault(room.ks, []).append(room)
    return ctx.templates.TemplateResponse(
        request,
        "staff_event.html",
        {
            "section": "dogodki",
            "event": event,
            "form": form,
            "errors": errors or Errors(),
            "ks_choices": {s: n for s, n in KS_NAMES.items() if staff.may_act_for(s)},
            "city_wide": staff.may_act_for("*"),
            "rooms": offered,
            "rooms_by_ks": list(by_ks.items()),
            "room_changeable": event is None or event.status in ROOM_CHANGEABLE,
            "weekdays": repeat.WEEKDAYS,
            "repeat_dates": dates,
            "dates_editable": event is None or event.status != "published",
            "repeat_summary": repeat.describe(form.repeat),
            "skipped_count": sum(1 for _, skipped in dates if skipped),
            "age_groups": domain.AGE_GROUP_SL,
            "status_sl": domain.STATUS_SL,
            "reg_sl": domain.REGISTRATION_SL,
            "channel_sl": domain.CHANNEL_SL,
            **extra,
        },
        status_code=status_code,
    )


async def _attendance_form(ctx: Any, event: Event) -> dict[str, Any]:
    """The attendance part of the staff editor: what was recorded, the dates that have
    started (newest first; the newest is preselected), or when it can be recorded."""
    recorded_so_far = await attendance.get_attendance(ctx.db, event.id)
    now = utcnow()
    moved = repository.moved_of(event)
    dates = attendance.attendance_dates(event)
    started = sorted(
        ((o.starts_at, moved.get(o.starts_at, o)) for o in dates if moved.get(o.starts_at, o).starts_at <= now),
        key=lambda pair: pair[1].starts_at,
        reverse=True,
    )
    chosen = started[0][0] if started else None
    recorded = next((d.counts for d in recorded_so_far.dates if d.occurrence == chosen), {})
    first = min((moved.get(o.starts_at, o).starts_at for o in dates), default=event.starts_at)
    return {
        "attendance": recorded_so_far,
        "attendance_dates": started[:100],
        "attendance_values": recorded,
        "attendance_from": first,
        "attendance_labels": domain.ATTENDANCE_LABELS,
        "attendance_bands": domain.ATTENDANCE_BANDS,
    }


def _showing_dates(raw: Any) -> bool:
    """ "Pokaži termine": the picker's dates are shown, nothing is saved."""
    return str(raw.get("korak") or "") == "termini"


@staff_pages.get("/events/osebje/nov", response_class=HTMLResponse, summary="A new event: the editor (staff page)")
async def staff_new(request: Request, grant: Create) -> HTMLResponse:
    kss = [k for k in KS_NAMES if grant.may_act_for(k)]
    return await editor(request, grant, None, staff_form.blank(kss[0] if len(kss) == 1 else ""))


@staff_pages.post(
    "/events/osebje/nov",
    response_class=HTMLResponse,
    summary="Save a new event as a draft (staff page); korak=termini only shows the repeat picker's dates",
    responses=FORM_ERRORS,
)
async def staff_create(request: Request, grant: Create) -> Response:
    ctx = context(request)
    raw = await request.form()
    form = staff_form.read_form(raw)
    ks = form.get("ks")
    if ks in KS_NAMES or ks == "*":
        grant.require(None, ks)  # 403 for a KS the form never offered
    if _showing_dates(raw):
        return await editor(request, grant, None, form)
    offered = await rooms.rooms_of(ctx.db, ctx.settings, _kss(grant))
    values, errors = staff_form.model_values(form, offered, ks=ks)
    try:
        body = EventIn.model_validate(values)
    except ValidationError as exc:
        return await editor(request, grant, None, form, staff_form.event_errors(exc, errors), 422)
    if errors:
        return await editor(request, grant, None, form, staff_form.page_errors(errors), 422)
    event = await service.create_event(ctx.db, grant, body)
    return back(event.id)


@staff_pages.get(
    "/events/osebje/{event_id}", response_class=HTMLResponse, summary="The editor of one event (staff page)"
)
async def staff_event(event_id: str, request: Request, grant: Edit) -> HTMLResponse:
    return await editor(request, grant, await _event(request, event_id))


async def _event(request: Request, event_id: str) -> Event:
    return await repository.get_event(context(request).db, event_id)  # the StaffPage loader found it


@staff_pages.post(
    "/events/osebje/{event_id}",
    response_class=HTMLResponse,
    summary="Save changes to an event (staff page); korak=termini only shows the repeat picker's dates",
    responses=FORM_ERRORS,
)
async def staff_edit(event_id: str, request: Request, grant: Edit) -> Response:
    ctx = context(request)
    event = await _event(request, event_id)
    raw = await request.form()
    form = staff_form.read_form(raw)
    if event.status not in ROOM_CHANGEABLE:
        form.values["room_id"] = event.room_id or ""  # the room of a pending or published event stays
    if event.status == "published":  # its dates drop out one by one below ("Posamezen termin": asks once)
        form.repeat.skipped = set(repository.exdates_of(event))
    if _showing_dates(raw):
        return await editor(request, grant, event, form)
    offered = await rooms.rooms_of(ctx.db, ctx.settings, [event.ks])
    if event.room_id and event.room_id not in {r.id for r in offered}:  # its room, also if the copy lacks it
        offered.append(rooms.RoomChoice(event.room_id, event.ks, event.room_id, 1, True, (), ""))
    values, errors = staff_form.model_values(form, offered, ks=event.ks)
    try:
        body = EventIn.model_validate(values)
    except ValidationError as exc:
        return await editor(request, grant, event, form, staff_form.event_errors(exc, errors), 422)
    if errors:
        return await editor(request, grant, event, form, staff_form.page_errors(errors), 422)
    data = body.model_dump(exclude={"ks"})
    data["rrule"] = _same_rule(event, body) or ""
    data["room_id"] = data["room_id"] or ""
    try:
        await service.update_event(ctx.db, ctx.settings, event_id, EventPatch(**data))
    except Conflict as exc:
        return await editor(request, grant, event, form, Errors({"title": exc.message.in_language("sl")}), 409)
    return back(event_id)


def _same_rule(event: Event, body: EventIn) -> str | None:
    """The stored rule where the picker's gives the same dates (a rule written by the JSON API,
    e.g. with COUNT): saving the page unchanged changes nothing and tells no registrant."""
    rule = body.rrule
    if rule and event.rrule and rule != event.rrule:
        mine = repeat.all_dates(rule, body.starts_at, body.ends_at)
        if mine == repeat.all_dates(event.rrule, body.starts_at, body.ends_at):
            return event.rrule
    return rule


@staff_pages.post(
    "/events/osebje/{event_id}/prostor-znova",
    response_class=HTMLResponse,
    summary="Ask booking for the event's room once more (staff page; an event whose request was not answered)",
    responses=FORM_ERRORS,
)
async def ask_room_again(event_id: str, request: Request, grant: Publish) -> Response:
    ctx = context(request)
    try:
        await service.ask_for_room_again(ctx.db, ctx.settings, event_id)
    except Conflict as exc:
        event = await _event(request, event_id)
        return await editor(request, grant, event, None, Errors({"objava": exc.message.in_language("sl")}), 409)
    return back(event_id)


@staff_pages.get(
    "/events/osebje/{event_id}/prijave.csv",
    summary="The attendee list of an event (CSV for Excel; staff page)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
async def staff_csv(event_id: str, request: Request, grant: Registrants) -> Response:
    return await registrations_csv_response(request, grant, event_id)
