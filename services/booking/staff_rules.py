"""A room's rules for a KS volunteer, `/rooms/osebje/prostori/{room_id}/pravila` (issue 19,
item 5): seats, opening hours and the KS office hours per weekday, the shortest and longest
booking, how far ahead, the tidying-up gap, and whether requests need approval. The same use
case as the JSON API's `PATCH /api/v1/rooms/{room_id}` (`rooms.update_room`, `RoomRulesIn`);
the form follows the GOV.UK error pattern.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from shared.auth import Grant, StaffPage
from shared.web.forms import Errors, field_errors

from . import domain, rooms
from .errors import Conflict
from .models import Room
from .schemas import RoomRulesIn
from .staff_pages import FORM_ERRORS, HOME, page
from .staff_rooms import WEEKDAYS_SL, fields_of
from .web import ctx_of, room_or_404, room_record

rules_pages = APIRouter(tags=["staff pages"])

Edit = Annotated[Grant, StaffPage("rooms.edit", record=room_record)]
RULES = HOME + "/{room_id}/pravila"

# ======================================================================================
# The room's rules
# ======================================================================================
NUMBERS = {
    "capacity": "Vpišite število mest v prostoru (1–1000).",
    "min_duration_minutes": "Najkrajša rezervacija: vpišite od 15 do 1440 minut.",
    "max_duration_minutes": "Najdaljša rezervacija: vpišite od 15 do 1440 minut.",
    "min_notice_hours": "Vpišite, koliko ur vnaprej je treba rezervirati (0–1440).",
    "max_ahead_days": "Vpišite, koliko dni vnaprej je mogoče rezervirati (1–1095).",
    "buffer_minutes": "Vpišite minute za pospravljanje med rezervacijami (0–240).",
    "request_ttl_hours": "Vpišite, v koliko urah odločite o prošnji (1–720).",
}
HOURS_FIELDS = tuple(f"{kind}_{day}" for kind in ("open", "office") for day in domain.WEEKDAYS)
RULES_FIELDS = ("capacity", *HOURS_FIELDS, *tuple(NUMBERS)[1:], "requires_approval")
HOURS_WRONG = "Vpišite ure kot 8.00–22.00 (več obdobij ločite z vejico) ali pustite prazno."
SPAN_RE = re.compile(r"^(\d{1,2})(?:[.:](\d{2}))?\s*[-–—]\s*(\d{1,2})(?:[.:](\d{2}))?$")


def hours_text(spans: list[list[str]] | None) -> str:
    out = []
    for a, b in spans or []:
        out.append(f"{domain.fmt_minutes(domain.parse_hhmm(a))}–{domain.fmt_minutes(domain.parse_hhmm(b))}")
    return ", ".join(out)


def parse_hours(text: str) -> list[list[str]]:
    """`8.00–12.00, 16–20` -> [["08:00", "12:00"], ["16:00", "20:00"]]; ValueError if not so."""
    spans = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        found = SPAN_RE.match(part)
        if not found:
            raise ValueError(part)
        h1, m1, h2, m2 = found.groups()
        start, end = f"{int(h1):02d}:{m1 or '00'}", f"{int(h2):02d}:{m2 or '00'}"
        if domain.parse_hhmm(end) <= domain.parse_hhmm(start):
            raise ValueError(part)
        spans.append([start, end])
    return spans


def rules_values(room: Room) -> dict[str, str]:
    values = {name: str(getattr(room, name)) for name in NUMBERS}
    for day in domain.WEEKDAYS:
        values[f"open_{day}"] = hours_text(room.opening_hours.get(day))
        values[f"office_{day}"] = hours_text(room.office_hours.get(day))
    values["requires_approval"] = "da" if room.requires_approval else "ne"
    return values


async def _rules_page(
    request: Request,
    room: Room,
    values: dict[str, str],
    *,
    errors: Errors | None = None,
    done: bool = False,
    status_code: int = 200,
) -> HTMLResponse:
    context = {
        "room": room,
        "values": values,
        "errors": errors or Errors(),
        "done": done,
        "weekdays": list(zip(domain.WEEKDAYS, WEEKDAYS_SL, strict=True)),
        "labels": NUMBERS,
    }
    return page(request, "staff_rules.html", context, status_code)


@rules_pages.get(RULES, response_class=HTMLResponse, summary="A room's rules: the form (staff page)")
async def rules_form(room_id: str, request: Request, grant: Edit, shranjeno: int | None = None) -> HTMLResponse:
    room = await room_or_404(ctx_of(request), room_id)
    return await _rules_page(request, room, rules_values(room), done=bool(shranjeno))


def rules_changes(values: dict[str, str], errors: Errors) -> RoomRulesIn | None:
    data: dict[str, Any] = {"opening_hours": {}, "office_hours": {}}
    for name, message in NUMBERS.items():
        if not re.fullmatch(r"\d{1,6}", values[name]):
            errors.add(name, message)
        else:
            data[name] = int(values[name])
    for kind, key in (("open", "opening_hours"), ("office", "office_hours")):
        for day in domain.WEEKDAYS:
            try:
                spans = parse_hours(values[f"{kind}_{day}"])
            except ValueError:
                errors.add(f"{kind}_{day}", HOURS_WRONG)
                continue
            if spans:
                data[key][day] = spans
    data["requires_approval"] = values["requires_approval"] != "ne"
    try:
        changes = RoomRulesIn.model_validate(data)
    except ValidationError as exc:
        for name, message in field_errors(exc, NUMBERS).items():
            errors.add(name, message)
        return None
    return None if errors else changes


@rules_pages.post(
    RULES, response_class=HTMLResponse, summary="Change a room's rules (staff page)", responses=FORM_ERRORS
)
async def rules_save(room_id: str, request: Request, grant: Edit) -> Response:
    ctx = ctx_of(request)
    room = await room_or_404(ctx, room_id)
    values = fields_of(await request.form(), RULES_FIELDS)
    errors = Errors()
    changes = rules_changes(values, errors)
    if changes is not None:
        try:
            await rooms.update_room(ctx.db, room.id, changes, grant)
        except Conflict as exc:
            errors.add("max_duration_minutes", exc.message.in_language("sl"))
        else:
            return RedirectResponse(f"{HOME}/{room.id}/pravila?shranjeno=1", status_code=status.HTTP_303_SEE_OTHER)
    return await _rules_page(request, room, values, errors=errors.ordered(RULES_FIELDS), status_code=422)
