"""events: the buttons of the staff editor (staff_pages.py), one route each, with the same
URLs as the editor's forms: publish, cancel the event, record attendance, register someone
by phone, move or cancel one date of a series, cancel a registration. Each declares its
action of the permission table (shared/permissions.py) with `shared.auth.StaffPage`, in the
OpenAPI document under "staff pages".

Destructive actions ask once: the first post of "Odpovej dogodek", "Prekliči" or of
cancelling one date of a series (or a GET of the same address) shows what will follow — how
many registrants are told, what happens to the seat — and only the confirmation page's
"Da, …" (`potrdi=da`) does it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from shared.auth import Grant, StaffPage
from shared.i18n import format_span, plural
from shared.web.forms import Confirmation, Errors, confirmed

from . import attendance, domain, occurrences, registrations, repository, service
from .errors import Conflict, NotFound
from .models import Event, Registration
from .pages import cancel_registration_follows, registration_errors
from .schemas import RegistrationIn
from .staff_pages import FORM_ERRORS, SEE_OTHER, back, editor
from .web import NO_REGISTRATION, context, event_record

staff_actions = APIRouter(tags=["staff pages"])

Publish = Annotated[Grant, StaffPage("events.publish", record=event_record)]
CancelEvent = Annotated[Grant, StaffPage("events.cancel", record=event_record)]
Edit = Annotated[Grant, StaffPage("events.edit", record=event_record)]
AttendanceWrite = Annotated[Grant, StaffPage("events.attendance.write", record=event_record)]
RegistrationsWrite = Annotated[Grant, StaffPage("events.registrations.write", record=event_record)]
CONFIRM: dict[int | str, dict[str, Any]] = {
    **SEE_OTHER,
    200: {"description": "What will follow, and the one question (HTML).", "content": {"text/html": {}}},
}

# "Obvestilo pošljemo N prijavljenim" (dative)
TO_REGISTRANTS = {"one": "prijavljenemu", "two": "prijavljenima", "few": "prijavljenim", "other": "prijavljenim"}


_back = back


async def _form(request: Request) -> dict[str, str]:
    raw = await request.form()
    return {k: str(v).strip() for k, v in raw.items() if isinstance(v, str)}


# ======================================================================================
# Publish
# ======================================================================================
async def _event(request: Request, event_id: str) -> Event:
    return await repository.get_event(context(request).db, event_id)  # the StaffPage loader found it


@staff_actions.post(
    "/events/osebje/{event_id}/objavi",
    response_class=HTMLResponse,
    summary="Publish an event (staff page): an event in a KS room asks booking for it first",
    responses=FORM_ERRORS,
)
async def publish(event_id: str, request: Request, grant: Publish) -> Response:
    ctx = context(request)
    try:
        await service.publish_event(ctx.db, ctx.settings, event_id)
    except Conflict as exc:
        event = await _event(request, event_id)
        return await editor(request, grant, event, None, Errors({"objava": exc.message.in_language("sl")}), 409)
    return _back(event_id)


# ======================================================================================
# Cancel the event (asks once)
# ======================================================================================
async def _cancel_event_question(request: Request, event: Event, reason: str) -> HTMLResponse:
    ctx = context(request)
    active = [reg for reg, _ in await repository.list_registrations(ctx.db, event.id) if reg.status != "cancelled"]
    follows = [f"Dogodek »{event.title}« bo odpovedan{', vsi njegovi termini' if event.rrule else ''}."]
    if active:
        follows.append(f"Obvestilo o odpovedi (po e-pošti ali SMS) pošljemo {plural(len(active), TO_REGISTRANTS)}.")
    else:
        follows.append("Prijavljenih ni, zato obvestil o odpovedi ne pošiljamo.")
    follows.append("Prosta mesta se ne bodo več ponujala; novih prijav ne bo mogoče oddati.")
    if event.room_id and event.status in ("pending-room", "published"):
        follows.append(f"Rezervacija prostora {event.room_id} bo sproščena.")
    follows.append("Odpovedi ni mogoče preklicati.")
    return Confirmation(
        title=f"Ali res želite odpovedati dogodek »{event.title}«?",
        follows=follows,
        action=f"/events/osebje/{event.id}/odpovej",
        yes="Da, odpovej dogodek",
        back=f"/events/osebje/{event.id}",
        reason=reason,
        reason_label="Razlog (prijavljeni ga dobijo v obvestilu; neobvezno)",
    ).page(ctx.templates, request)


@staff_actions.get(
    "/events/osebje/{event_id}/odpovej",
    response_class=HTMLResponse,
    summary="Cancelling an event: what will follow, and the one question (staff page)",
    responses=SEE_OTHER,
)
async def cancel_event_page(event_id: str, request: Request, grant: CancelEvent) -> Response:
    event = await _event(request, event_id)
    if event.status == "cancelled":
        return _back(event_id)
    return await _cancel_event_question(request, event, "")


@staff_actions.post(
    "/events/osebje/{event_id}/odpovej",
    response_class=HTMLResponse,
    summary="Cancel an event (staff page): the first post asks, potrdi=da cancels",
    responses=CONFIRM,
)
async def cancel_event(event_id: str, request: Request, grant: CancelEvent) -> Response:
    event = await _event(request, event_id)
    form = await _form(request)
    if not confirmed(form):
        if event.status == "cancelled":
            return _back(event_id)
        return await _cancel_event_question(request, event, form.get("reason", ""))
    ctx = context(request)
    await service.cancel_event(ctx.db, ctx.settings, event_id, form.get("reason", ""))
    return _back(event_id)


# ======================================================================================
# Attendance
# ======================================================================================
@staff_actions.post(
    "/events/osebje/{event_id}/prisotnost",
    response_class=HTMLResponse,
    summary="Record how many came to one date, by age band (staff page)",
    responses=FORM_ERRORS,
)
async def record_attendance(event_id: str, request: Request, grant: AttendanceWrite) -> Response:
    ctx = context(request)
    event = await _event(request, event_id)
    raw = await request.form()
    counts: dict[str, int] = {}
    for band in domain.ATTENDANCE_BANDS:
        value = str(raw.get(band) or "0").strip() or "0"
        if not value.isdigit() or int(value) > 100000:
            field = "a-" + band.replace("+", "plus")
            errors = Errors({field: "Število udeležencev mora biti celo število (0 ali več)."})
            return await editor(request, grant, event, None, errors, 422)
        counts[band] = int(value)
    try:
        occurrence = datetime.fromisoformat(str(raw.get("occurrence"))) if raw.get("occurrence") else None
        if occurrence is not None and occurrence.tzinfo is None:
            raise ValueError(occurrence)
    except ValueError:
        return await editor(request, grant, event, None, Errors({"a-occurrence": "Izberite termin."}), 422)
    try:
        await attendance.record_attendance(ctx.db, event_id, counts, grant, occurrence=occurrence)
    except Conflict as exc:
        return await editor(request, grant, event, None, Errors({"udelezba": exc.message.in_language("sl")}), 409)
    return _back(event_id)


# ======================================================================================
# Register someone (by phone, at the desk)
# ======================================================================================
@staff_actions.post(
    "/events/osebje/{event_id}/prijava",
    response_class=HTMLResponse,
    summary="Register someone by phone or at the desk (staff page)",
    responses=FORM_ERRORS,
)
async def register_someone(event_id: str, request: Request, grant: RegistrationsWrite) -> Response:
    ctx = context(request)
    event = await _event(request, event_id)
    form = await _form(request)
    try:
        body = RegistrationIn(
            name=form.get("name", ""),
            email=form.get("email") or None,
            phone=form.get("phone") or None,
            channel="phone" if form.get("channel") == "phone" else "staff",
        )
        await registrations.register(ctx.db, ctx.settings, event_id, body, staff=grant)
    except ValidationError as exc:
        errors = Errors({f"r-{field}": message for field, message in registration_errors(exc).items()})
        return await editor(request, grant, event, None, errors, 422)
    except Conflict as exc:
        return await editor(request, grant, event, None, Errors({"r-name": exc.message.in_language("sl")}), exc.status)
    return _back(event_id)


# ======================================================================================
# Move or cancel one date of a series (cancelling asks once)
# ======================================================================================
def _move_to(form: dict[str, str]) -> tuple[datetime, datetime]:
    starts = datetime.fromisoformat(form.get("new_starts_at", "")).replace(tzinfo=domain.TZ)
    ends = datetime.fromisoformat(form.get("new_ends_at", "")).replace(tzinfo=domain.TZ)
    if ends <= starts:
        raise ValueError(ends)
    return starts, ends


def _occurrence(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else None


async def _cancel_date_question(request: Request, event: Event, occurrence: datetime, reason: str) -> HTMLResponse:
    ctx = context(request)
    series = domain.occurrences(event.starts_at, event.ends_at, event.rrule, repository.exdates_of(event))
    dates = {o.starts_at: o for o in series}
    moved = repository.moved_of(event)
    held = moved.get(occurrence) or dates.get(occurrence) or domain.Occurrence(occurrence, occurrence)
    when = format_span(held.starts_at, held.ends_at)
    active = [reg for reg, _ in await repository.list_registrations(ctx.db, event.id) if reg.status != "cancelled"]
    follows = [f"Termin {when} dogodka »{event.title}« odpade; ostali termini ostanejo."]
    if event.status == "published" and active:
        follows.append(f"Obvestilo (po e-pošti ali SMS) pošljemo {plural(len(active), TO_REGISTRANTS)}.")
    elif event.status == "published":
        follows.append("Prijavljenih ni, zato obvestil ne pošiljamo.")
    follows.append("Odpovedanega termina ni mogoče vrniti na tej strani.")
    return Confirmation(
        title=f"Ali res želite odpovedati termin {when}?",
        follows=follows,
        action=f"/events/osebje/{event.id}/termin?odpade={quote(occurrence.isoformat())}",
        yes="Da, odpovej termin",
        back=f"/events/osebje/{event.id}",
        reason=reason,
        reason_label="Razlog (prijavljeni ga dobijo v obvestilu; neobvezno)",
    ).page(ctx.templates, request)


@staff_actions.post(
    "/events/osebje/{event_id}/termin",
    response_class=HTMLResponse,
    summary="Move one date of a series, or cancel it (staff page; cancelling asks first, potrdi=da cancels)",
    responses={**FORM_ERRORS, **CONFIRM},
)
async def change_date(event_id: str, request: Request, grant: Edit, odpade: str | None = None) -> Response:
    ctx = context(request)
    event = await _event(request, event_id)
    form = await _form(request)
    asked = _occurrence(odpade or "")
    if asked is not None and confirmed(form):  # "Da, odpovej termin" on the question's page
        try:
            await occurrences.change_occurrence(ctx.db, ctx.settings, event_id, asked, reason=form.get("reason", ""))
        except Conflict as exc:
            return await editor(request, grant, event, None, Errors({"occurrence": exc.message.in_language("sl")}), 409)
        return _back(event_id)
    errors = Errors()
    occurrence = _occurrence(form.get("occurrence", ""))
    if occurrence is None:
        errors.add("occurrence", "Izberite termin.")
    move_to = None
    if form.get("what") != "cancel" and occurrence is not None:
        try:
            move_to = _move_to(form)
        except ValueError:
            errors.add("new_starts_at", "Vpišite nov začetek in konec termina (konec po začetku).")
    if errors or occurrence is None:
        return await editor(request, grant, event, None, errors, 422)
    if move_to is None:  # cancelling one date asks once
        return await _cancel_date_question(request, event, occurrence, form.get("reason", ""))
    try:
        await occurrences.change_occurrence(
            ctx.db, ctx.settings, event_id, occurrence, move_to=move_to, reason=form.get("reason", "")
        )
    except Conflict as exc:
        return await editor(request, grant, event, None, Errors({"occurrence": exc.message.in_language("sl")}), 409)
    return _back(event_id)


# ======================================================================================
# Cancel a registration (asks once)
# ======================================================================================
async def _registration_of(request: Request, event_id: str, registration_id: str) -> tuple[Registration, Event]:
    """A registration of this event (404 for another event's or none)."""
    try:
        reg, event, _ = await repository.get_registration(context(request).db, registration_id)
    except NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_REGISTRATION) from None
    if event.id != event_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_REGISTRATION)
    return reg, event


async def _cancel_registration_question(request: Request, reg: Registration, event: Event) -> HTMLResponse:
    ctx = context(request)
    rows = await repository.list_registrations(ctx.db, event.id)
    waiting = sum(1 for r, _ in rows if r.status == "waitlisted")
    return Confirmation(
        title=f"Ali res želite preklicati prijavo: {reg.name}?",
        follows=cancel_registration_follows(reg, event, waiting, own=False),
        action=f"/events/osebje/{event.id}/preklici-{reg.id}",
        yes="Da, prekliči prijavo",
        back=f"/events/osebje/{event.id}",
    ).page(ctx.templates, request)


@staff_actions.get(
    "/events/osebje/{event_id}/preklici-{registration_id}",
    response_class=HTMLResponse,
    summary="Cancelling a registration: what will follow, and the one question (staff page)",
    responses=SEE_OTHER,
)
async def cancel_registration_page(
    event_id: str, registration_id: str, request: Request, grant: RegistrationsWrite
) -> Response:
    reg, event = await _registration_of(request, event_id, registration_id)
    if reg.status == "cancelled":
        return _back(event_id)
    return await _cancel_registration_question(request, reg, event)


@staff_actions.post(
    "/events/osebje/{event_id}/preklici-{registration_id}",
    response_class=HTMLResponse,
    summary="Cancel a registration (staff page): the first post asks, potrdi=da cancels",
    responses=CONFIRM,
)
async def cancel_registration(
    event_id: str, registration_id: str, request: Request, grant: RegistrationsWrite
) -> Response:
    reg, event = await _registration_of(request, event_id, registration_id)
    if not confirmed(await request.form()):
        if reg.status == "cancelled":
            return _back(event_id)
        return await _cancel_registration_question(request, reg, event)
    ctx = context(request)
    try:
        await registrations.cancel_registration(ctx.db, ctx.settings, registration_id, by="staff")
    except NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_REGISTRATION) from None
    return _back(event_id)
