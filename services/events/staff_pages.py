"""events: the staff pages (Jinja2, no JavaScript): the list of a staff member's events and
the editor of one event — create, change, download the attendee list. The editor's buttons
(publish, cancel, register someone by phone, move or cancel one date of a series, record
attendance, cancel a registration) are in staff_actions.py. Each action is checked against
the permission table (shared/permissions.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from shared.auth import (
    Staff,
    authorize,
    may,
    page_staff,
)
from shared.contracts import KS_NAMES
from shared.models import utcnow
from shared.web.forms import form_errors

from . import attendance, domain, repository, service
from .errors import Conflict
from .models import Event
from .schemas import SERIES_IN_A_ROOM, EventIn, EventPatch
from .web import (
    context,
    load_event,
    record_of,
    registrations_csv_response,
)

staff_pages = APIRouter(include_in_schema=False)


# ======================================================================================
# Pages: staff
# ======================================================================================
def _local_input(moment: datetime) -> str:
    return moment.astimezone(domain.TZ).strftime("%Y-%m-%dT%H:%M")


def event_form(event: Event | None) -> dict[str, str]:
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
        "exdates": "\n".join(_local_input(d) for d in repository.exdates_of(event)),
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
            ("cannot hold a KS room", SERIES_IN_A_ROOM.sl),
            ("RRULE", "Ponavljanje ni pravilno zapisano."),
            ("series", "Ponavljanje ni pravilno zapisano."),
        ],
    )


@staff_pages.get("/events/osebje/", response_class=HTMLResponse)
async def staff_list(request: Request) -> Response:
    staff = page_staff(request)
    if isinstance(staff, RedirectResponse):
        return staff
    ctx = context(request)
    events = [e for e in await repository.list_for_staff(ctx.db, staff) if may(staff, "events.list", record_of(e))]
    return ctx.templates.TemplateResponse(
        request, "staff_events.html", {"events": events, "status_sl": domain.STATUS_SL}
    )


async def editor(
    request: Request,
    staff: Staff,
    event: Event | None,
    form: dict[str, str],
    errors: list[str],
    status_code: int = 200,
) -> Response:
    ctx = context(request)
    extra: dict[str, Any] = {}
    if event is not None:
        extra["registrations"] = await repository.list_registrations(ctx.db, event.id)
        extra.update(await _attendance_form(ctx, event))
        if event.rrule:  # the series' own dates (not cancelled), each with where it is held now
            moved = repository.moved_of(event)
            series = domain.occurrences(event.starts_at, event.ends_at, event.rrule, repository.exdates_of(event))
            extra["series"] = [(o, moved.get(o.starts_at)) for o in series if o.ends_at > utcnow()]
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


@staff_pages.get("/events/osebje/nov", response_class=HTMLResponse)
async def staff_new(request: Request) -> Response:
    staff = page_staff(request)
    if isinstance(staff, RedirectResponse):
        return staff
    authorize(staff, "events.create")
    return await editor(request, staff, None, event_form(None), [])


@staff_pages.post("/events/osebje/nov", response_class=HTMLResponse)
async def staff_create(request: Request) -> Response:
    staff = page_staff(request)
    if isinstance(staff, RedirectResponse):
        return staff
    authorize(staff, "events.create")
    ctx = context(request)
    raw = await request.form()
    form = {k: str(v).strip() for k, v in raw.items() if isinstance(v, str)}
    audience = [str(v) for v in raw.getlist("audience")]
    try:
        body = EventIn.model_validate(_parse_event_form(form, audience))
    except ValidationError as exc:
        form["audience"] = " ".join(audience)
        return await editor(request, staff, None, form, _event_errors(exc), 422)
    authorize(staff, "events.create", new_ks=body.ks)
    event = await service.create_event(ctx.db, staff, body)
    return RedirectResponse(f"/events/osebje/{event.id}", status_code=303)


async def staff_event_for(request: Request, event_id: str, action: str) -> tuple[Staff, Event] | RedirectResponse:
    """The signed-in staff member allowed `action` on the event (403 otherwise), or the
    redirect to the login page."""
    staff = page_staff(request)
    if isinstance(staff, RedirectResponse):
        return staff
    event = await load_event(context(request), event_id)
    return authorize(staff, action, record_of(event)), event


@staff_pages.get("/events/osebje/{event_id}", response_class=HTMLResponse)
async def staff_event(event_id: str, request: Request) -> Response:
    found = await staff_event_for(request, event_id, "events.edit")
    if isinstance(found, RedirectResponse):
        return found
    staff, event = found
    return await editor(request, staff, event, event_form(event), [])


@staff_pages.post("/events/osebje/{event_id}", response_class=HTMLResponse)
async def staff_edit(event_id: str, request: Request) -> Response:
    found = await staff_event_for(request, event_id, "events.edit")
    if isinstance(found, RedirectResponse):
        return found
    staff, event = found
    ctx = context(request)
    raw = await request.form()
    form = {k: str(v).strip() for k, v in raw.items() if isinstance(v, str)}
    audience = [str(v) for v in raw.getlist("audience")]
    values = _parse_event_form({**form, "ks": event.ks}, audience)
    try:
        body = EventIn.model_validate(values)
    except ValidationError as exc:
        form["audience"] = " ".join(audience)
        return await editor(request, staff, event, form, _event_errors(exc), 422)
    data = body.model_dump(exclude={"ks", "room_id"})
    data["rrule"] = data["rrule"] or ""
    try:
        await service.update_event(ctx.db, ctx.settings, event_id, EventPatch(**data))
    except Conflict as exc:
        return await editor(request, staff, event, form, [exc.message.sl], 409)
    return RedirectResponse(f"/events/osebje/{event_id}", status_code=303)


@staff_pages.get("/events/osebje/{event_id}/prijave.csv")
async def staff_csv(event_id: str, request: Request) -> Response:
    staff = page_staff(request)
    if isinstance(staff, RedirectResponse):
        return staff
    return await registrations_csv_response(request, staff, event_id)
