"""What a KS volunteer does with one room (issue 19, item 5), each a form of its own under
`/rooms/osebje/prostori/{room_id}/…`:

- `serija`: a weekly series for a group (weekday, time, duration, from–until). The staff
  booking of the JSON API (`bookings.request_booking` with a weekly recurrence and
  `on_conflict=skip`): the dates that are taken, closed or against the room's rules are
  skipped, the others confirmed at once; the answer lists both.
- `zapora`: close the room for some days (renovation, a holiday) — it asks once, saying what
  becomes of the bookings and requests in that time (`rooms.add_closure` cancels them and
  their requesters are told).
- `pravila`: the room's rules, in staff_rules.py.

The forms follow the GOV.UK error pattern (shared/web/forms.py, _forms.html).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from shared import clock
from shared.auth import Grant, StaffPage
from shared.i18n import format_span, plural
from shared.web.forms import Confirmation, Errors, confirmed, field_errors

from . import bookings, domain, rooms
from .domain import Interval
from .errors import RuleBroken
from .figures import CATEGORY_SL, GROUP_SL
from .models import Room
from .schemas import BookingIn, Recurrence
from .staff_pages import FORM_ERRORS, HOME, page
from .web import ctx_of, room_or_404, room_record

room_pages = APIRouter(tags=["staff pages"])

Book = Annotated[Grant, StaffPage("booking.create", record=room_record)]
Edit = Annotated[Grant, StaffPage("rooms.edit", record=room_record)]

SERIES = HOME + "/{room_id}/serija"
CLOSE = HOME + "/{room_id}/zapora"

WEEKDAYS_SL = ("ponedeljek", "torek", "sreda", "četrtek", "petek", "sobota", "nedelja")
DURATIONS = tuple(range(30, 8 * 60 + 1, 30))  # minutes the series form offers
MAX_DATES = 60  # domain.occurrences' limit
TERMS = {"one": "termin", "two": "termina", "few": "termine", "other": "terminov"}  # accusative
HELD = {  # accusative: what a closure cancelled
    "one": "rezervacijo ali prošnjo",
    "two": "rezervaciji ali prošnji",
    "few": "rezervacije ali prošnje",
    "other": "rezervacij ali prošenj",
}
CONFIRMED = {
    "one": "potrjeno rezervacijo",
    "two": "potrjeni rezervaciji",
    "few": "potrjene rezervacije",
    "other": "potrjenih rezervacij",
}
REQUESTED = {"one": "prošnjo", "two": "prošnji", "few": "prošnje", "other": "prošenj"}


def duration_label(minutes: int) -> str:
    hours, rest = divmod(minutes, 60)
    return " ".join(p for p in (f"{hours} h" if hours else "", f"{rest} min" if rest else "") if p)


def _date(value: str) -> date | None:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        return None


def fields_of(form: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, str]:
    return {name: str(form.get(name) or "").strip() for name in names}


# ======================================================================================
# A weekly series for a group
# ======================================================================================
SERIES_FIELDS = (
    "name", "purpose", "group_kind", "category", "attendees", "email", "phone",
    "weekday", "start", "duration", "first", "last",
)  # fmt: skip
SERIES_MESSAGES = {
    "name": "Vpišite ime skupine ali organizatorja.",
    "purpose": "Napišite, za kaj bo skupina prostor uporabljala.",
    "group_kind": "Izberite, kdo uporablja prostor.",
    "category": "Izberite namen uporabe.",
    "attendees": "Vpišite pričakovano število udeležencev (vsaj 1).",
    "email": "E-poštni naslov ni pravilen.",
    "phone": "Telefonska številka ni pravilna (npr. 040 123 456).",
}


def series_blank() -> dict[str, str]:
    today = clock.local_now().date()
    values = dict.fromkeys(SERIES_FIELDS, "")
    values.update(group_kind="association", category="other", weekday="0", start="18:00", duration="120")
    values.update(first=(today + timedelta(days=7)).isoformat())
    return values


async def _series_page(
    request: Request,
    room: Room,
    values: dict[str, str],
    *,
    errors: Errors | None = None,
    result: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    context = {
        "room": room,
        "values": values,
        "errors": errors or Errors(),
        "result": result,
        "weekdays": WEEKDAYS_SL,
        "durations": [(m, duration_label(m)) for m in DURATIONS],
        "category_sl": CATEGORY_SL,
        "group_sl": GROUP_SL,
    }
    return page(request, "staff_series.html", context, status_code)


def series_dates(values: dict[str, str], errors: Errors) -> tuple[datetime, datetime, date] | None:
    """The first date's start and end and the last day, from the form's weekday, time,
    duration and period; the problems go into `errors`."""
    weekday = int(values["weekday"]) if values["weekday"].isdigit() and int(values["weekday"]) < 7 else None
    if weekday is None:
        errors.add("weekday", "Izberite dan v tednu.")
    try:
        start = domain.parse_hhmm(values["start"])
        if start >= domain.DAY_MINUTES:
            raise ValueError
    except ValueError:
        start = None
        errors.add("start", "Vpišite uro začetka, na primer 18:00.")
    duration = int(values["duration"]) if values["duration"].isdigit() else 0
    if duration not in DURATIONS:
        errors.add("duration", "Izberite, koliko časa traja posamezen termin.")
    first, last = _date(values["first"]), _date(values["last"])
    if first is None:
        errors.add("first", "Vpišite datum, od katerega naj termini veljajo.")
    if last is None:
        errors.add("last", "Vpišite datum, do katerega naj se termini ponavljajo.")
    elif first is not None and last < first:
        errors.add("last", "Zadnji datum mora biti isti dan ali po prvem.")
    if errors or weekday is None or start is None or first is None or last is None:
        return None
    day = first + timedelta(days=(weekday - first.weekday()) % 7)
    if day > last:
        errors.add("last", f"Med izbranima datumoma ni nobenega dne, ki bi bil {WEEKDAYS_SL[weekday]}.")
        return None
    if (last - day).days // 7 + 1 > MAX_DATES:
        errors.add("last", f"Serija ima lahko največ {MAX_DATES} terminov: izberite zgodnejši zadnji datum.")
        return None
    begins = domain.local_instant(day, start)
    return begins, domain.local_instant(day, start + duration), last


@room_pages.get(SERIES, response_class=HTMLResponse, summary="Book a weekly series for a group: the form (staff page)")
async def series_form(room_id: str, request: Request, grant: Book) -> HTMLResponse:
    room = await room_or_404(ctx_of(request), room_id)
    return await _series_page(request, room, series_blank())


@room_pages.post(
    SERIES,
    response_class=HTMLResponse,
    summary="Book a weekly series for a group; dates that are not free are skipped (staff page)",
    responses=FORM_ERRORS,
)
async def series_book(room_id: str, request: Request, grant: Book) -> Response:
    ctx = ctx_of(request)
    room = await room_or_404(ctx, room_id)
    values = fields_of(await request.form(), SERIES_FIELDS)
    errors = Errors()
    when = series_dates(values, errors)
    data: BookingIn | None = None
    try:
        data = BookingIn(
            room_id=room.id,
            starts_at=when[0] if when else clock.now() + timedelta(days=1),
            ends_at=when[1] if when else clock.now() + timedelta(days=1, hours=1),
            purpose=values["purpose"],
            category=values["category"] or "other",
            group_kind=values["group_kind"] or "association",
            name=values["name"],
            email=values["email"] or None,
            phone=values["phone"] or None,
            attendees=values["attendees"] or 0,
            recurrence=Recurrence(weekly_until=when[2]) if when else None,
            on_conflict="skip",
        )
    except ValidationError as exc:
        for name, message in field_errors(
            exc,
            SERIES_MESSAGES,
            [("or a phone number", "Vpišite e-poštni naslov ali telefon skupine, da jo lahko obveščamo.", "email")],
        ).items():
            errors.add(name, message)
    if errors or data is None:
        return await _series_page(request, room, values, errors=errors.ordered(SERIES_FIELDS), status_code=422)
    try:
        made = await bookings.request_booking(ctx.db, ctx.settings, data, staff=grant)
    except RuleBroken as exc:
        field = "phone" if any(v.rule == "sms-country" for v in exc.violations) else "first"
        if any(v.rule == "series-conflict" for v in exc.violations):
            why = " ".join(dict.fromkeys(v.sl for v in exc.violations if v.rule != "series-conflict"))
            message = (
                "Nobenega termina ni bilo mogoče rezervirati: prostor je takrat zaseden, zaprt ali "
                f"termin ni v skladu s pravili prostora ({why}) Izberite drug dan, uro ali obdobje."
            )
        else:
            message = " ".join(v.sl for v in exc.violations)
        errors.add(field, message)
        return await _series_page(request, room, values, errors=errors, status_code=422)
    result = {
        "booked": made.bookings,
        "skipped": [(s, [v.sl for v in why]) for s, why in zip(made.skipped, made.why_skipped, strict=True)],
        "booked_text": "Rezervirali smo " + plural(len(made.bookings), TERMS) + ".",
        "skipped_text": "Izpustili smo " + plural(len(made.skipped), TERMS) + "." if made.skipped else "",
    }
    return await _series_page(request, room, values, result=result)


# ======================================================================================
# Closing a room for a while (asks once)
# ======================================================================================
CLOSE_FIELDS = ("from_day", "to_day", "reason")


async def _close_page(
    request: Request,
    room: Room,
    values: dict[str, str],
    *,
    errors: Errors | None = None,
    done: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    upcoming = await rooms.upcoming_closures(ctx_of(request).db, room.id, clock.now())
    context = {"room": room, "values": values, "errors": errors or Errors(), "done": done, "upcoming": upcoming}
    return page(request, "staff_closure.html", context, status_code)


def closure_window(values: dict[str, str], errors: Errors) -> Interval | None:
    """Whole local days from `from_day` to `to_day` (both included)."""
    first, last = _date(values["from_day"]), _date(values["to_day"])
    if first is None:
        errors.add("from_day", "Vpišite prvi dan, ko bo prostor zaprt.")
    elif first < clock.local_now().date():
        errors.add("from_day", "Prvi dan zaprtja ne more biti v preteklosti.")
    if last is None:
        errors.add("to_day", "Vpišite zadnji dan, ko bo prostor zaprt.")
    elif first is not None and last < first:
        errors.add("to_day", "Zadnji dan mora biti isti dan ali po prvem.")
    if not values["reason"] or len(values["reason"]) > 300:
        errors.add("reason", "Napišite razlog, na primer obnova ali praznik (največ 300 znakov).")
    if errors or first is None or last is None:
        return None
    return Interval(domain.local_instant(first, 0), domain.local_instant(last + timedelta(days=1), 0))


@room_pages.get(CLOSE, response_class=HTMLResponse, summary="Close a room for some days: the form (staff page)")
async def close_form(room_id: str, request: Request, grant: Edit, zaprto: int | None = None) -> HTMLResponse:
    room = await room_or_404(ctx_of(request), room_id)
    done = None
    if zaprto is not None:
        done = "Prostor je zaprt za izbrano obdobje; krajani ga takrat ne morejo rezervirati."
        if zaprto > 0:
            done += f" Preklicali smo {plural(zaprto, HELD)}; prosilci dobijo obvestilo z razlogom."
    return await _close_page(request, room, dict.fromkeys(CLOSE_FIELDS, ""), done=done)


def _closure_question(room: Room, values: dict[str, str], window: Interval, held: list[Any]) -> Confirmation:
    last = (window.end - timedelta(days=1)).astimezone(domain.TZ)
    span = "od " + _day(window.start) + " do " + _day(last)
    follows = [
        f"Prostor {room.name} bo zaprt {span} (razlog: {values['reason']}). Krajani ga takrat ne bodo mogli rezervirati."
    ]
    confirmed_n = sum(1 for b in held if b.status == "confirmed")
    requested_n = len(held) - confirmed_n
    if held:
        parts = [plural(n, forms) for n, forms in ((confirmed_n, CONFIRMED), (requested_n, REQUESTED)) if n]
        follows.append(
            f"V tem času ima prostor {' in '.join(parts)}: vse bodo preklicane, prosilci pa dobijo obvestilo "
            "(po e-pošti ali SMS) z razlogom zaprtja."
        )
        for booking in held[:10]:
            state = "potrjena" if booking.status == "confirmed" else "čaka na odločitev"
            follows.append(f"{format_span(booking.starts_at, booking.ends_at)}: {booking.name} ({state})")
        if len(held) > 10:
            follows.append(f"… in še {len(held) - 10}.")
    else:
        follows.append("V tem času prostor nima rezervacij ali prošenj, zato nikogar ne obveščamo.")
    query = urlencode({"from_day": values["from_day"], "to_day": values["to_day"]})
    return Confirmation(
        title=f"Ali res želite zapreti prostor {room.name}?",
        follows=follows,
        action=f"{HOME}/{room.id}/zapora?{query}",
        yes="Da, zapri prostor",
        back=f"{HOME}/{room.id}/zapora",
        reason=values["reason"],
        reason_label="Razlog (prosilci ga dobijo v obvestilu)",
    )


def _day(moment: datetime) -> str:
    local = moment.astimezone(domain.TZ)
    return f"{local.day}. {local.month}. {local.year}"


@room_pages.post(
    CLOSE,
    response_class=HTMLResponse,
    summary="Close a room for some days; asks once, saying what becomes of its bookings then (staff page)",
    responses=FORM_ERRORS,
)
async def close_room(room_id: str, request: Request, grant: Edit) -> Response:
    ctx = ctx_of(request)
    room = await room_or_404(ctx, room_id)
    form = await request.form()
    values = fields_of(form, CLOSE_FIELDS)
    for name in ("from_day", "to_day"):  # the confirmation carries the days in its address
        values[name] = values[name] or str(request.query_params.get(name) or "").strip()
    errors = Errors()
    window = closure_window(values, errors)
    if window is None:
        return await _close_page(request, room, values, errors=errors.ordered(CLOSE_FIELDS), status_code=422)
    if not confirmed(form):
        held = await rooms.bookings_in_period(ctx.db, room.id, window)
        return _closure_question(room, values, window, held).page(ctx.templates, request)
    closed = await rooms.add_closure(ctx.db, ctx.settings, room.id, window.start, window.end, values["reason"], grant)
    return RedirectResponse(
        f"{HOME}/{room.id}/zapora?zaprto={len(closed.cancelled)}", status_code=status.HTTP_303_SEE_OTHER
    )
