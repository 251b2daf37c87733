"""events: the HTML pages (Jinja2, no JavaScript) and feeds; the JSON API is in api.py."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from shared.auth import (
    Staff,
    authorize,
    may,
    page_staff,
)
from shared.contracts import KS_NAMES, ks_name
from shared.contracts.events import AGE_GROUPS
from shared.i18n import plural
from shared.web.forms import LANDING, Errors, field_errors, form_errors
from shared.web.ratelimit import rate_limit
from shared.web.site import chosen_ks, remember_ks

from . import calendar, domain, service
from .api import (  # the helpers the API and the pages share
    ICS,
    NO_EVENT,
    NO_REGISTRATION,
    _csv,
    _ctx,
    _filters,
    _load,
    record_of,
)
from .service import (
    EventIn,
    EventPatch,
    RegistrationIn,
)

pages = APIRouter(include_in_schema=False)


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
    return RedirectResponse(f"/events/prijava/{token}?nova=1{LANDING}", status_code=303)


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
