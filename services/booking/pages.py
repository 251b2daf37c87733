"""booking: the HTML pages (Jinja2, no JavaScript) and feeds; the JSON API is in api.py."""

from __future__ import annotations

from datetime import date, timedelta
from itertools import groupby
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from shared import clock
from shared.web import ServiceApp
from shared.web.forms import LANDING, Errors, field_errors, form_errors
from shared.web.ratelimit import rate_limit
from shared.web.site import chosen_ks, remember_ks

from . import bookings, decisions, domain, messages, room_view, rooms
from .errors import Conflict, NotFound, RuleBroken
from .figures import CATEGORY_SL, GROUP_SL
from .models import Booking, Room
from .schemas import BookingIn
from .web import NO_ROOM, booking_or_404, ctx_of, room_or_404

pages = APIRouter(include_in_schema=False)


# ======================================================================================
# Pages
# ======================================================================================
@pages.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/rooms", status_code=307)


@pages.get("/rooms", response_class=HTMLResponse)
async def rooms_page(request: Request, ks: str | None = None) -> HTMLResponse:
    ctx = ctx_of(request)
    picked, ks = ks, chosen_ks(request, ks)  # no `ks` in the address: the KS this browser picked before
    found = await rooms.list_rooms(ctx.db, ks)
    by_ks = [(slug, list(group)) for slug, group in groupby(found, key=lambda r: r.ks)]
    page = ctx.templates.TemplateResponse(request, "rooms.html", {"by_ks": by_ks, "count": len(found), "ks": ks})
    return remember_ks(request, page, picked, ctx.settings)


# --- residents: a room's week, the request form, the requester's link ------------------
@pages.get("/rooms/prosnja/{token}", response_class=HTMLResponse)
async def requester_page(token: str, request: Request) -> Response:
    ctx = ctx_of(request)
    booking, room = await _requester_booking(ctx, token)
    return ctx.templates.TemplateResponse(
        request, "booking_status.html", {"booking": booking, "room": room, "token": token}
    )


@pages.post("/rooms/prosnja/{token}/preklic", response_class=HTMLResponse, dependencies=[rate_limit("link")])
async def requester_cancel(token: str, request: Request) -> Response:
    ctx = ctx_of(request)
    booking, room = await _requester_booking(ctx, token)
    try:
        booking = await decisions.cancel(ctx.db, ctx.settings, booking.id, by="requester")
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc.message)) from None
    return RedirectResponse(f"/rooms/prosnja/{token}{LANDING}", status_code=303)


@pages.get("/rooms/prosnja/{token}/preklic", response_class=HTMLResponse)
async def requester_cancel_page(token: str, request: Request) -> Response:
    ctx = ctx_of(request)
    booking, room = await _requester_booking(ctx, token)
    return ctx.templates.TemplateResponse(
        request, "booking_status.html", {"booking": booking, "room": room, "token": token, "confirm_cancel": True}
    )


async def _requester_booking(ctx: ServiceApp, token: str) -> tuple[Booking, Room]:
    booking_id = messages.booking_id_from_token(ctx.settings, token)
    if booking_id is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Povezava ni veljavna. / The link is not valid.")
    return await booking_or_404(ctx, booking_id)


@pages.get("/rooms/{room_id}/calendar.ics")
async def room_calendar(room_id: str, request: Request) -> Response:
    from .calendar import room_ics

    ctx = ctx_of(request)
    room = await room_or_404(ctx, room_id)
    since = clock.now() - timedelta(days=30)
    rows = await bookings.list_bookings(ctx.db, room_id=room_id, since=since)
    holding = [b for b, _r in rows if b.status in ("requested", "confirmed")]
    return Response(
        room_ics(room, holding, ctx.settings.public_base("booking")),
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": f'inline; filename="{room_id}.ics"'},
    )


def _day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


async def _room_page(
    request: Request,
    room_id: str,
    *,
    day: str | None,
    form: dict[str, str] | None = None,
    errors: Errors | None = None,
    status_code: int = 200,
) -> Response:
    """The room, its coming days with their free time (one line each) and the request form
    right under them: a day, a start and a duration."""
    ctx = ctx_of(request)
    form = form or {}
    now = clock.now()
    rules = domain.Rules.from_room(await room_or_404(ctx, room_id))
    start = room_view.shown_from(rules, now, _day(day or form.get("datum")))
    chosen = _day(form.get("datum"))
    if chosen is not None and chosen < start:  # a day no longer bookable stays shown, with the form's choice
        start = chosen
    try:
        room, rules, avail = await bookings.room_availability(ctx.db, room_id, room_view.window(start), now=now)
    except NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_ROOM) from None
    days = room_view.coming_days(rules, avail, start)
    first = room_view.first_bookable_day(rules, now)
    later = start + timedelta(days=room_view.DAYS_SHOWN)
    return ctx.templates.TemplateResponse(
        request,
        "room.html",
        {
            "room": room,
            "days": days,
            "free_text": room_view.free_text,
            "chosen_day": form.get("datum", ""),
            "starts": room_view.start_times(rules, days, form.get("od", "")),
            "durations": room_view.durations(rules),
            "earlier": max(first, start - timedelta(days=room_view.DAYS_SHOWN)) if start > first else None,
            "later": later if domain.local_instant(later, 0) <= now + rules.max_ahead else None,
            "form": form,
            "errors": errors or Errors(),
            "category_sl": CATEGORY_SL,
            "group_sl": GROUP_SL,
            "office": _week_text(room.office_hours),
            "opening": _week_text(room.opening_hours),
            "duration_label": room_view.duration_label,
        },
        status_code=status_code,
    )


_DAY_SL = {
    "mon": "ponedeljek",
    "tue": "torek",
    "wed": "sreda",
    "thu": "četrtek",
    "fri": "petek",
    "sat": "sobota",
    "sun": "nedelja",
}


def _week_text(hours: dict[str, Any]) -> list[str]:
    parsed = domain.parse_week(hours)
    return [
        f"{_DAY_SL[key]}: " + ", ".join(f"{domain.fmt_minutes(a)}–{domain.fmt_minutes(b)}" for a, b in parsed[i])
        for i, key in enumerate(domain.WEEKDAYS)
        if parsed.get(i)
    ]


@pages.get("/rooms/{room_id}", response_class=HTMLResponse)
async def room_page(
    room_id: str,
    request: Request,
    dan: str | None = None,
    teden: str | None = None,
    datum: str | None = None,
    od: str | None = None,
    do: str | None = None,
    trajanje: str | None = None,
) -> Response:
    """`dan` (or an old link's `teden`): the first of the days shown; `datum`, `od` and
    `trajanje` (or an old link's `do`) fill in the form."""
    trajanje = trajanje or (room_view.duration_of(od, do) if od and do else None)
    form = {k: v for k, v in {"datum": datum, "od": od, "trajanje": trajanje}.items() if v}
    return await _room_page(request, room_id, day=dan or teden or datum, form=form)


_FIELD_SL = {
    "name": "Vpišite ime in priimek ali ime skupine.",
    "purpose": "Napišite, za kaj boste prostor uporabili.",
    "email": "E-poštni naslov ni pravilen.",
    "phone": "Telefonska številka ni pravilna (npr. 040 123 456).",
    "attendees": "Vpišite pričakovano število udeležencev (vsaj 1).",
    "category": "Izberite namen uporabe.",
    "group_kind": "Izberite, kdo prosi za prostor.",
}


_BY_MESSAGE_SL = [
    (
        "or a phone number",
        "Vpišite e-poštni naslov ali telefonsko številko, da vas lahko obvestimo o odločitvi.",
        "email",
    ),
    ("ends_at", "Izberite, koliko časa boste prostor uporabljali.", "trajanje"),
]
# The request form's fields in the order of room.html (the ids of its inputs).
_FORM_ORDER = (
    "datum", "od", "trajanje", "purpose", "category", "group_kind", "attendees", "name", "email", "phone",
)  # fmt: skip
# Which field a broken room rule concerns (the rest concern the chosen start).
_RULE_FIELD = {
    "capacity": "attendees",
    "sms-country": "phone",
    "min-duration": "trajanje",
    "max-duration": "trajanje",
    "pending-limit": "email",
}


def _form_errors(exc: ValidationError) -> list[str]:
    return form_errors(exc, _FIELD_SL, _BY_MESSAGE_SL)


def _request_errors(exc: ValidationError) -> Errors:
    """The request form's errors by field (room.html's input ids)."""
    return field_errors(exc, _FIELD_SL, _BY_MESSAGE_SL, default_field="datum").ordered(_FORM_ORDER)


def _time_errors(form: dict[str, str]) -> tuple[Errors, int]:
    """The day, the start and the duration, each checked on its own; and the duration in
    minutes (from `trajanje`, or the end time `do` of an older form)."""
    errors = Errors()
    try:
        date.fromisoformat(form.get("datum", ""))
    except ValueError:
        errors.add("datum", "Izberite dan.")
    try:
        start = domain.parse_hhmm(form.get("od", ""))
    except ValueError:
        errors.add("od", "Izberite uro začetka, na primer 18.00.")
        start = 0
    minutes = 0
    try:
        if form.get("trajanje"):
            minutes = int(form["trajanje"])
        elif form.get("do"):
            minutes = domain.parse_hhmm(form["do"]) - start
    except ValueError:
        minutes = 0
    if minutes <= 0 and "od" not in errors:
        errors.add("trajanje", "Izberite, koliko časa boste prostor uporabljali.")
    return errors, minutes


@pages.post("/rooms/{room_id}/rezervacija", response_class=HTMLResponse, dependencies=[rate_limit("booking")])
async def room_request(room_id: str, request: Request) -> Response:
    """The request form without JavaScript: errors re-render the page in Slovenian; success
    redirects to the requester's status page (the pending state)."""
    ctx = ctx_of(request)
    raw = await request.form()
    form = {k: str(v).strip() for k, v in raw.items() if isinstance(v, str)}
    errors, minutes = _time_errors(form)
    if errors:
        return await _room_page(request, room_id, day=None, form=form, errors=errors, status_code=422)
    day = date.fromisoformat(form["datum"])
    start = domain.local_instant(day, domain.parse_hhmm(form["od"]))
    end = start + timedelta(minutes=minutes)
    form["trajanje"] = str(minutes)
    try:
        body = BookingIn(
            room_id=room_id,
            starts_at=start,
            ends_at=end,
            purpose=form.get("purpose", ""),
            category=form.get("category") or "other",
            group_kind=form.get("group_kind") or "individual",
            name=form.get("name", ""),
            email=form.get("email") or None,
            phone=form.get("phone") or None,
            attendees=form.get("attendees") or 0,
        )
    except ValidationError as exc:
        return await _room_page(request, room_id, day=None, form=form, errors=_request_errors(exc), status_code=422)
    await room_or_404(ctx, room_id)
    try:
        made = await bookings.request_booking(ctx.db, ctx.settings, body)
    except RuleBroken as exc:
        for v in exc.violations:
            errors.add(_RULE_FIELD.get(v.rule, "od"), v.sl)
        errors = errors.ordered(_FORM_ORDER)
        return await _room_page(request, room_id, day=None, form=form, errors=errors, status_code=exc.status)
    token = messages.requester_token(ctx.settings, made.bookings[0].id)
    return RedirectResponse(f"/rooms/prosnja/{token}{LANDING}", status_code=303)
