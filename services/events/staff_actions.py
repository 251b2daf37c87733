"""events: the buttons of the staff editor (staff_pages.py), one route each, with the same
URLs as the editor's forms: publish, cancel the event, record attendance, register someone
by phone, move or cancel one date of a series, cancel a registration. Each declares its
action of the permission table (shared/permissions.py).

Destructive actions ask once: the first post of "Odpovej dogodek" or "Prekliči" (or a GET
of the same address) shows what will follow — how many registrants are told, what happens
to the seat — and only the confirmation page's "Da, …" (`potrdi=da`) does it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from shared.i18n import plural
from shared.web.forms import Confirmation, confirmed

from . import attendance, domain, occurrences, registrations, repository, service
from .errors import Conflict, NotFound
from .models import Event, Registration
from .pages import cancel_registration_follows, registration_form_errors
from .schemas import RegistrationIn
from .staff_pages import editor, event_form, staff_event_for
from .web import NO_REGISTRATION, context

staff_actions = APIRouter(include_in_schema=False)

# "Obvestilo pošljemo N prijavljenim" (dative)
TO_REGISTRANTS = {"one": "prijavljenemu", "two": "prijavljenima", "few": "prijavljenim", "other": "prijavljenim"}


def _back(event_id: str) -> RedirectResponse:
    return RedirectResponse(f"/events/osebje/{event_id}", status_code=303)


async def _form(request: Request) -> dict[str, str]:
    raw = await request.form()
    return {k: str(v).strip() for k, v in raw.items() if isinstance(v, str)}


# ======================================================================================
# Publish
# ======================================================================================
@staff_actions.post("/events/osebje/{event_id}/objavi", response_class=HTMLResponse)
async def publish(event_id: str, request: Request) -> Response:
    found = await staff_event_for(request, event_id, "events.publish")
    if isinstance(found, RedirectResponse):
        return found
    staff, event = found
    ctx = context(request)
    try:
        await service.publish_event(ctx.db, ctx.settings, event_id)
    except Conflict as exc:
        return await editor(request, staff, event, event_form(event), [exc.message.sl], 409)
    return _back(event_id)


# ======================================================================================
# Cancel the event (asks once)
# ======================================================================================
async def _cancel_event_question(request: Request, event: Event, reason: str) -> Response:
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


@staff_actions.get("/events/osebje/{event_id}/odpovej", response_class=HTMLResponse)
async def cancel_event_page(event_id: str, request: Request) -> Response:
    found = await staff_event_for(request, event_id, "events.cancel")
    if isinstance(found, RedirectResponse):
        return found
    _, event = found
    if event.status == "cancelled":
        return _back(event_id)
    return await _cancel_event_question(request, event, "")


@staff_actions.post("/events/osebje/{event_id}/odpovej", response_class=HTMLResponse)
async def cancel_event(event_id: str, request: Request) -> Response:
    found = await staff_event_for(request, event_id, "events.cancel")
    if isinstance(found, RedirectResponse):
        return found
    _, event = found
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
@staff_actions.post("/events/osebje/{event_id}/prisotnost", response_class=HTMLResponse)
async def record_attendance(event_id: str, request: Request) -> Response:
    found = await staff_event_for(request, event_id, "events.attendance.write")
    if isinstance(found, RedirectResponse):
        return found
    staff, event = found
    ctx = context(request)
    raw = await request.form()
    counts: dict[str, int] = {}
    for band in domain.ATTENDANCE_BANDS:
        value = str(raw.get(band) or "0").strip() or "0"
        if not value.isdigit() or int(value) > 100000:
            errors = ["Število udeležencev mora biti celo število (0 ali več)."]
            return await editor(request, staff, event, event_form(event), errors, 422)
        counts[band] = int(value)
    try:
        occurrence = datetime.fromisoformat(str(raw.get("occurrence"))) if raw.get("occurrence") else None
        if occurrence is not None and occurrence.tzinfo is None:
            raise ValueError(occurrence)
    except ValueError:
        return await editor(request, staff, event, event_form(event), ["Izberite termin."], 422)
    try:
        await attendance.record_attendance(ctx.db, event_id, counts, staff, occurrence=occurrence)
    except Conflict as exc:
        return await editor(request, staff, event, event_form(event), [exc.message.sl], 409)
    return _back(event_id)


# ======================================================================================
# Register someone (by phone, at the desk)
# ======================================================================================
@staff_actions.post("/events/osebje/{event_id}/prijava", response_class=HTMLResponse)
async def register_someone(event_id: str, request: Request) -> Response:
    found = await staff_event_for(request, event_id, "events.registrations.write")
    if isinstance(found, RedirectResponse):
        return found
    staff, event = found
    ctx = context(request)
    form = await _form(request)
    try:
        body = RegistrationIn(
            name=form.get("name", ""),
            email=form.get("email") or None,
            phone=form.get("phone") or None,
            channel="phone" if form.get("channel") == "phone" else "staff",
        )
        await registrations.register(ctx.db, ctx.settings, event_id, body, staff=staff)
    except ValidationError as exc:
        return await editor(request, staff, event, event_form(event), registration_form_errors(exc), 422)
    except Conflict as exc:
        return await editor(request, staff, event, event_form(event), [exc.message.sl], exc.status)
    return _back(event_id)


# ======================================================================================
# Move or cancel one date of a series
# ======================================================================================
def _move_to(form: dict[str, str]) -> tuple[datetime, datetime]:
    starts = datetime.fromisoformat(form.get("new_starts_at", "")).replace(tzinfo=domain.TZ)
    ends = datetime.fromisoformat(form.get("new_ends_at", "")).replace(tzinfo=domain.TZ)
    if ends <= starts:
        raise ValueError(ends)
    return starts, ends


@staff_actions.post("/events/osebje/{event_id}/termin", response_class=HTMLResponse)
async def change_date(event_id: str, request: Request) -> Response:
    found = await staff_event_for(request, event_id, "events.edit")
    if isinstance(found, RedirectResponse):
        return found
    staff, event = found
    ctx = context(request)
    form = await _form(request)
    errors = []
    occurrence: datetime | None
    try:
        occurrence = datetime.fromisoformat(form.get("occurrence", ""))
    except ValueError:
        occurrence = None
        errors.append("Izberite termin.")
    move_to = None
    if form.get("what") != "cancel" and occurrence is not None:
        try:
            move_to = _move_to(form)
        except ValueError:
            errors.append("Vpišite nov začetek in konec termina (konec po začetku).")
    if errors or occurrence is None:
        return await editor(request, staff, event, event_form(event), errors, 422)
    try:
        await occurrences.change_occurrence(
            ctx.db, ctx.settings, event_id, occurrence, move_to=move_to, reason=form.get("reason", "")
        )
    except Conflict as exc:
        return await editor(request, staff, event, event_form(event), [exc.message.sl], 409)
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


async def _cancel_registration_question(request: Request, reg: Registration, event: Event) -> Response:
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


async def _registration_for_staff(request: Request, event_id: str, registration_id: str) -> Any:
    found = await staff_event_for(request, event_id, "events.registrations.write")
    if isinstance(found, RedirectResponse):
        return found
    return await _registration_of(request, event_id, registration_id)


@staff_actions.get("/events/osebje/{event_id}/preklici-{registration_id}", response_class=HTMLResponse)
async def cancel_registration_page(event_id: str, registration_id: str, request: Request) -> Response:
    found = await _registration_for_staff(request, event_id, registration_id)
    if isinstance(found, RedirectResponse):
        return found
    reg, event = found
    if reg.status == "cancelled":
        return _back(event_id)
    return await _cancel_registration_question(request, reg, event)


@staff_actions.post("/events/osebje/{event_id}/preklici-{registration_id}", response_class=HTMLResponse)
async def cancel_registration(event_id: str, registration_id: str, request: Request) -> Response:
    found = await _registration_for_staff(request, event_id, registration_id)
    if isinstance(found, RedirectResponse):
        return found
    reg, event = found
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
