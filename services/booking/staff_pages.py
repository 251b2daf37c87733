"""booking's staff console (issue 19, item 5): the KS's rooms `/rooms/osebje/prostori` with
what a volunteer does with each (staff_rooms.py: a weekly series for a group, closing the
room for a while, its rules), the requests awaiting a decision `/rooms/osebje/prosnje`
(approve, or reject with a reason the requester receives) and the room-use figures
`/rooms/osebje/uporaba`.

Every route declares its action of the permission table (`shared.auth.StaffPage`, published
as `x-permission`, so tests/security/test_permission_matrix.py covers it); a browser without
a session is sent to `/login?next=<this page>`. The writes go through the same use cases as
the JSON API (`web.decide` → decisions.py).
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from shared.auth import Grant, Record, StaffPage, may
from shared.contracts import KS_NAMES
from shared.web.forms import Errors

from . import bookings, rooms
from .errors import Conflict
from .figures import CATEGORY_SL, GROUP_SL
from .models import Room
from .web import booking_record, ctx_of, decision, ks_scope, usage_figures

staff_pages = APIRouter(tags=["staff pages"])

HOME = "/rooms/osebje/prostori"
REQUESTS = "/rooms/osebje/prosnje"
FIGURES = "/rooms/osebje/uporaba"

SEE_OTHER: dict[int | str, dict[str, Any]] = {
    303: {"description": "Done: on to the page that shows it (HTML forms post and get redirected)."}
}
FORM_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"description": "The form again, with what to correct (HTML).", "content": {"text/html": {}}},
    **SEE_OTHER,
}
STATE_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {
        "description": "The request was decided meanwhile (or expired): the page again, saying so (HTML).",
        "content": {"text/html": {}},
    }
}

Read = Annotated[Grant, StaffPage("booking.read")]
Decide = Annotated[Grant, StaffPage("booking.approve", record=booking_record)]
Figures = Annotated[Grant, StaffPage("booking.figures.read")]

DONE = {"odobri": "Prošnja je odobrena.", "zavrni": "Prošnja je zavrnjena; prosilec dobi obvestilo z razlogom."}
REASON_MISSING = "Napišite razlog zavrnitve: prosilec ga dobi v obvestilu."


def page(request: Request, template: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    context = {"section": "prostori", **context}
    return ctx_of(request).templates.TemplateResponse(request, template, context, status_code=status_code)


def own_ks(grant: Grant) -> list[str]:
    """The KS whose rooms the staff member runs (every KS for a city admin)."""
    scope = ks_scope(grant, None)
    return list(KS_NAMES) if scope is None else [k for k in scope if k in KS_NAMES]


async def rooms_of(request: Request, grant: Grant) -> list[Room]:
    scope = ks_scope(grant, None)
    found = await rooms.list_rooms(ctx_of(request).db)
    return found if scope is None else [r for r in found if r.ks in scope]


# ======================================================================================
# The KS's rooms
# ======================================================================================
@staff_pages.get(
    HOME, response_class=HTMLResponse, summary="The rooms one runs, with what to do with each (staff page)"
)
async def rooms_page(request: Request, grant: Read) -> HTMLResponse:
    found = await rooms_of(request, grant)
    waiting = await bookings.list_bookings(ctx_of(request).db, status="requested", ks=ks_scope(grant, None))
    per_room = Counter(room.id for _booking, room in waiting)
    context = {
        "rooms": found,
        "waiting": per_room,
        "waiting_total": len(waiting),
        "may": {
            action: {room.id: may(grant, action, Record(ks=room.ks)) for room in found}
            for action in ("booking.create", "rooms.edit")
        },
        "may_figures": may(grant, "booking.figures.read"),
    }
    return page(request, "staff_rooms.html", context)


# ======================================================================================
# Requests awaiting a decision: approve, or reject with a reason
# ======================================================================================
async def _requests(
    request: Request, grant: Grant, *, done: str | None = None, errors: Errors | None = None, status_code: int = 200
) -> HTMLResponse:
    rows = await bookings.list_bookings(ctx_of(request).db, status="requested", ks=ks_scope(grant, None))
    context = {
        "rows": rows,
        "done": DONE.get(done or ""),
        "errors": errors or Errors(),
        "category_sl": CATEGORY_SL,
        "group_sl": GROUP_SL,
        "may_decide": {b.id: may(grant, "booking.approve", Record(ks=r.ks)) for b, r in rows},
    }
    return page(request, "staff_requests.html", context, status_code)


@staff_pages.get(REQUESTS, response_class=HTMLResponse, summary="Room requests awaiting a decision (staff page)")
async def requests_page(request: Request, grant: Read, done: str | None = None) -> HTMLResponse:
    return await _requests(request, grant, done=done)


async def _decide(request: Request, grant: Grant, booking_id: str, action: str, reason: str | None) -> Response:
    try:
        await decision(request, booking_id, grant, action, reason)
    except Conflict as exc:
        errors = Errors({f"r-{booking_id}": exc.message.in_language("sl")})
        return await _requests(request, grant, errors=errors, status_code=409)
    done = "odobri" if action == "approve" else "zavrni"
    return RedirectResponse(f"{REQUESTS}?done={done}", status_code=status.HTTP_303_SEE_OTHER)


@staff_pages.post(
    f"{REQUESTS}/{{booking_id}}/odobri",
    response_class=HTMLResponse,
    summary="Approve a room request (staff page)",
    responses={**SEE_OTHER, **STATE_CONFLICT},
)
async def approve(booking_id: str, request: Request, grant: Decide) -> Response:
    return await _decide(request, grant, booking_id, "approve", None)


@staff_pages.post(
    f"{REQUESTS}/{{booking_id}}/zavrni",
    response_class=HTMLResponse,
    summary="Reject a room request with a reason the requester receives (staff page)",
    responses={**FORM_ERRORS, **STATE_CONFLICT},
)
async def reject(booking_id: str, request: Request, grant: Decide) -> Response:
    form = await request.form()
    reason = str(form.get("reason") or "").strip()
    if not reason or len(reason) > 1000:
        errors = Errors(
            {f"r-{booking_id}": REASON_MISSING if not reason else "Razlog je predolg (največ 1000 znakov)."}
        )
        return await _requests(request, grant, errors=errors, status_code=422)
    return await _decide(request, grant, booking_id, "reject", reason)


# ======================================================================================
# Room-use figures
# ======================================================================================
MONTHS_SL = (
    "januar", "februar", "marec", "april", "maj", "junij",
    "julij", "avgust", "september", "oktober", "november", "december",
)  # fmt: skip


def period_label(start: date, period: str) -> str:
    """`december 2026`, or `teden od 30. 11. 2026`."""
    if period == "week":
        return f"teden od {start.day}. {start.month}. {start.year}"
    return f"{MONTHS_SL[start.month - 1]} {start.year}"


@staff_pages.get(FIGURES, response_class=HTMLResponse, summary="Room-use figures with a chart (staff page)")
async def figures_page(
    request: Request, grant: Figures, obdobje: Literal["week", "month"] = "month", ks: str | None = None
) -> HTMLResponse:
    ks = ks if ks in KS_NAMES else None
    rows = await usage_figures(request, grant, obdobje, None, None, ks)
    totals: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = totals.setdefault(
            row["room_id"], {"name": row["room_name"], "ks": row["ks"], "hours": 0.0, "bookings": 0}
        )
        entry["hours"] += row["hours_outside_office_hours"]
        entry["bookings"] += row["bookings"]
    bars = sorted(totals.values(), key=lambda e: -e["hours"])[:30]
    top = max([b["hours"] for b in bars] + [1.0])
    query = f"period={obdobje}" + (f"&ks={ks}" if ks else "")
    for row in rows:
        row["period_label"] = period_label(date.fromisoformat(row["period_start"]), obdobje)
    context = {
        "rows": rows,
        "bars": bars,
        "top": top,
        "period": obdobje,
        "ks": ks,
        "kss": own_ks(grant),
        "query": query,
    }
    return page(request, "staff_figures.html", context)
