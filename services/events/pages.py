"""events: the public HTML pages (Jinja2, no JavaScript) and the feeds: the list of events,
an event with its sign-up form, a registrant's own page; the iCalendar and Atom feeds. The
staff editor is in staff_pages.py, the JSON API in api.py."""

from __future__ import annotations

from datetime import date
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from shared import clock
from shared.contracts import KS_NAMES, ks_name
from shared.contracts.events import AGE_GROUPS
from shared.i18n import format_span, plural
from shared.models import utcnow
from shared.settings import Settings
from shared.web.forms import LANDING, Confirmation, Errors, confirmed, field_errors, form_errors
from shared.web.ratelimit import rate_limit
from shared.web.share import share
from shared.web.site import chosen_ks, remember_ks

from . import calendar, domain, messages, registrations, repository
from .errors import Conflict, NotFound
from .models import Event, Registration
from .schemas import RegistrationIn
from .web import (
    ICS,
    NO_EVENT,
    NO_REGISTRATION,
    context,
    event_filter,
    load_event,
    when_choices,
)

pages = APIRouter(include_in_schema=False)


# ======================================================================================
# Feeds
# ======================================================================================
def _ics(body: bytes, filename: str) -> Response:
    return Response(body, media_type=ICS, headers={"Content-Disposition": f'inline; filename="{filename}"'})


@pages.get("/events/calendar.ics")
async def city_calendar(request: Request) -> Response:
    ctx = context(request)
    events = await repository.list_all_published(ctx.db)
    base = ctx.settings.public_base("events")
    return _ics(calendar.events_ics(events, base, "Kranj ZA vse — dogodki"), "kranj-dogodki.ics")


@pages.get("/events/ks/{ks}/calendar.ics")
async def ks_calendar(ks: str, request: Request) -> Response:
    if ks not in KS_NAMES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"Neznana KS {ks!r}. / Unknown KS.")
    ctx = context(request)
    events = [e for e in await repository.list_all_published(ctx.db) if e.ks in (ks, "*")]
    base = ctx.settings.public_base("events")
    return _ics(calendar.events_ics(events, base, f"KS {ks_name(ks)} — dogodki"), f"dogodki-{ks}.ics")


@pages.get("/events/feed.atom")
async def atom_feed(request: Request, ks: str | None = None) -> Response:
    ctx = context(request)
    ks = ks if ks in KS_NAMES else None
    events = [e for e in await repository.list_all_published(ctx.db) if ks is None or e.ks in (ks, "*")]
    base = ctx.settings.public_base("events")
    title = f"Novi dogodki v KS {ks_name(ks)}" if ks else "Novi dogodki — Kranj ZA vse"
    self_url = f"{base}/events/feed.atom" + (f"?ks={ks}" if ks else "")
    newest = sorted(events, key=lambda e: e.published_at or e.created_at, reverse=True)[:50]
    return Response(
        calendar.events_atom(newest, base, title=title, self_url=self_url), media_type="application/atom+xml"
    )


@pages.get("/events/{event_id}/event.ics")
async def event_ics(event_id: str, request: Request) -> Response:
    ctx = context(request)
    event = await load_event(ctx, event_id)
    if event.status not in ("published", "cancelled"):
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_EVENT)
    base = ctx.settings.public_base("events")
    return Response(
        calendar.events_ics([event], base, event.title),
        media_type=ICS,
        headers={"Content-Disposition": f'attachment; filename="dogodek-{event_id}.ics"'},
    )


def calendar_links(settings: Settings, ks: str | None) -> dict[str, str]:
    """The calendar a resident subscribes to (`webcal://`: the phone's calendar app opens
    it and keeps it up to date) and the same feed as a plain download: the KS's, or the
    whole city's for `ks=None` or a city-wide event."""
    base = settings.public_base("events")
    path = f"/events/ks/{ks}/calendar.ics" if ks and ks != "*" else "/events/calendar.ics"
    return {"webcal": "webcal://" + base.split("://", 1)[-1] + path, "ics": path}


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


def _when_links(
    ks: str | None, age: str | None, topic: str | None, since: date | None, until: date | None
) -> list[dict[str, object]]:
    """The ready-made spans of days as links that keep the other choices; the one shown now
    is marked (aria-current)."""
    links = []
    marked = False
    for choice in when_choices(clock.local_now().date()):
        query = urlencode({k: str(v) for k, v in (("ks", ks), ("starost", age), ("tema", topic),
                                                  ("od", choice.first), ("do", choice.last)) if v})  # fmt: skip
        # one marked: on a Sunday "Ta vikend" is the same day as "Danes"
        current = not marked and (choice.first, choice.last) == (since, until)
        marked = marked or current
        links.append({"label": choice.label, "href": f"/events?{query}" if query else "/events", "current": current})
    return links


@pages.get("/events", response_class=HTMLResponse)
async def events_page(
    request: Request,
    ks: str | None = None,
    starost: str | None = None,
    tema: str | None = None,
    od: str | None = None,
    do: str | None = None,
) -> HTMLResponse:
    ctx = context(request)
    picked, ks = ks, chosen_ks(request, ks)  # no `ks` in the address: the KS this browser picked before
    age = starost if starost in AGE_GROUPS else None
    topic = (tema or "").strip().lower() or None
    since, until = _page_date(od), _page_date(do)
    events = await repository.list_published(ctx.db, filters=event_filter(ks, age, topic, since, until))
    all_topics = sorted({t for e in await repository.list_published(ctx.db) for t in e.topics})
    nexts = {e.id: repository.next_occurrence(e, event_filter(None, None, None, since, None).since) for e in events}
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
            "when_links": _when_links(ks, age, topic, since, until),
            "topics": all_topics,
            "age_groups": domain.AGE_GROUP_SL,
            "calendar": calendar_links(ctx.settings, ks),
        },
    )
    return remember_ks(request, page, picked, ctx.settings)


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
    ctx = context(request)
    event = await load_event(ctx, event_id)
    if event.status not in ("published", "cancelled", "pending-room"):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Dogodek ni objavljen. / The event is not published.")
    taken = await repository.seats_taken(ctx.db, event_id)
    upcoming = repository.dates_of(event, since=utcnow())
    more = 0 if every_date else max(0, len(upcoming) - DATES_SHOWN)
    when = upcoming[0] if upcoming else domain.Occurrence(event.starts_at, event.ends_at)
    where = "vsa Mestna občina Kranj" if event.ks == "*" else f"KS {ks_name(event.ks)}"
    repeats = " · ponavlja se" if event.rrule else ""
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
            "exdates": repository.exdates_of(event),
            "description": domain.render_description(event.description),
            "age_groups": domain.AGE_GROUP_SL,
            "form": form or {},
            "errors": errors or Errors(),
            "open": event.status == "published" and bool(upcoming),
            "calendar": calendar_links(ctx.settings, event.ks),
            "share": share(
                ctx.settings,
                "events",
                f"/events/{event.id}",
                kind="event",
                title=("ODPOVEDANO: " if event.status == "cancelled" else "") + event.title,
                description=f"{format_span(when.starts_at, when.ends_at)}{repeats} · {event.venue} · {where}",
            ),
        },
        status_code=status_code,
    )


@pages.get("/events/osebje")  # here, before /events/{event_id} (the staff pages are in staff_pages.py)
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


def registration_form_errors(exc: ValidationError) -> list[str]:
    return form_errors(exc, _FIELD_SL, _CONTACT_SL)


def registration_errors(exc: ValidationError) -> Errors:
    """The registration form's errors by field (the ids of event.html's inputs)."""
    return field_errors(exc, _FIELD_SL, _CONTACT_SL)


@pages.post("/events/{event_id}/prijava", response_class=HTMLResponse, dependencies=[rate_limit("registration")])
async def register_form(event_id: str, request: Request) -> Response:
    """Sign-up without JavaScript: errors re-render the page in Slovenian; success redirects
    to the registrant's own page (confirmed or waitlisted, with the cancel button)."""
    ctx = context(request)
    raw = await request.form()
    form = {k: str(v).strip() for k, v in raw.items() if isinstance(v, str)}
    try:
        body = RegistrationIn(
            name=form.get("name", ""), email=form.get("email") or None, phone=form.get("phone") or None
        )
    except ValidationError as exc:
        return await _event_page(request, event_id, form=form, errors=registration_errors(exc), status_code=422)
    await load_event(ctx, event_id)
    try:
        reg, _ = await registrations.register(ctx.db, ctx.settings, event_id, body)
    except Conflict as exc:
        errors = Errors({"name": exc.message.sl})
        return await _event_page(request, event_id, form=form, errors=errors, status_code=exc.status)
    token = messages.registration_token(ctx.settings, reg.id)
    return RedirectResponse(f"/events/prijava/{token}?nova=1{LANDING}", status_code=303)


async def _by_token(request: Request, token: str) -> tuple[Registration, Event, int | None]:
    ctx = context(request)
    registration_id = messages.registration_id_from_token(ctx.settings, token)
    if registration_id is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Povezava ni veljavna. / The link is not valid.")
    try:
        return await repository.get_registration(ctx.db, registration_id)
    except NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_REGISTRATION) from None


@pages.get("/events/prijava/{token}", response_class=HTMLResponse)
async def registration_page(token: str, request: Request, nova: str | None = None) -> HTMLResponse:
    reg, event, position = await _by_token(request, token)
    return context(request).templates.TemplateResponse(
        request,
        "registration.html",
        {"reg": reg, "event": event, "position": position, "token": token, "new": bool(nova)},
    )


# Who waits on the list, for the sentence about the freed seat.
WAITING = {"one": "oseba", "two": "osebi", "few": "osebe", "other": "oseb"}


def cancel_registration_follows(reg: Registration, event: Event, waiting: int, *, own: bool) -> list[str]:
    """What cancelling a registration will do, in plain sentences: for the registrant
    (`own`, "vaša prijava") or for staff cancelling someone's; `waiting` is how many are on
    the event's waiting list now."""
    whose = "Vaša prijava" if own else f"Prijava osebe {reg.name}"
    if reg.status == "waitlisted":
        follows = [f"{whose} na dogodek »{event.title}« bo preklicana in umaknjena s čakalne liste."]
    else:
        follows = [f"{whose} na dogodek »{event.title}« bo preklicana in njeno mesto se sprosti."]
        if event.status == "published" and waiting:
            follows.append(
                f"Mesto dobi prvi na čakalni listi (na njej je {plural(waiting, WAITING)}); o tem ga obvestimo."
            )
        elif event.status == "published":
            follows.append("Na čakalni listi ni nikogar, zato mesto ostane prosto za nove prijave.")
    if reg.email or reg.phone:
        follows.append(
            "Potrdilo o preklicu dobite po e-pošti ali SMS."
            if own
            else "Prijavljeni dobi obvestilo o preklicu po e-pošti ali SMS."
        )
    follows.append(
        "Dokler so mesta prosta, se lahko znova prijavite."
        if own
        else "Dokler so mesta prosta, se lahko znova prijavi."
    )
    return follows


async def _cancel_question(request: Request, token: str, reg: Registration, event: Event) -> Response:
    ctx = context(request)
    rows = await repository.list_registrations(ctx.db, event.id)
    waiting = sum(1 for r, _ in rows if r.status == "waitlisted")
    return Confirmation(
        title="Ali res želite preklicati prijavo?",
        follows=cancel_registration_follows(reg, event, waiting, own=True),
        action=f"/events/prijava/{token}/preklic",
        yes="Da, prekliči prijavo",
        back=f"/events/prijava/{token}",
    ).page(ctx.templates, request)


@pages.get("/events/prijava/{token}/preklic", response_class=HTMLResponse)
async def registration_cancel_page(token: str, request: Request) -> Response:
    """The question before a registrant's cancellation: what will follow, yes or back."""
    reg, event, _ = await _by_token(request, token)
    if reg.status == "cancelled":
        return RedirectResponse(f"/events/prijava/{token}", status_code=303)
    return await _cancel_question(request, token, reg, event)


@pages.post("/events/prijava/{token}/preklic", dependencies=[rate_limit("link")])
async def registration_cancel(token: str, request: Request) -> Response:
    """The "Prekliči prijavo" button asks first (the page above); its "Da, prekliči prijavo"
    (`potrdi=da`) cancels."""
    reg, event, _ = await _by_token(request, token)
    if not confirmed(await request.form()):
        if reg.status == "cancelled":
            return RedirectResponse(f"/events/prijava/{token}", status_code=303)
        return await _cancel_question(request, token, reg, event)
    ctx = context(request)
    await registrations.cancel_registration(ctx.db, ctx.settings, reg.id, by="registrant")
    return RedirectResponse(f"/events/prijava/{token}", status_code=303)
