"""The one permission table of the platform: role × action × scope.

Every staff route of every service declares the action it performs (`shared.auth.Permit`,
published in the OpenAPI documents as `x-permission`); `shared.auth` decides from this table
alone whether a staff member may perform it, and on which records:

- `all`        — any KS (the city's administrators);
- `own-ks`     — records of the KS the staff member acts for: the KS the record belongs to
                 now and, for a write that moves it, the KS it will belong to afterwards;
- `own-record` — as `own-ks`, and only records the staff member created themselves
                 (an event's `created_by` is the staff subject that created it).

A role that has no entry for an action may not perform it (403). docs/security.md carries
this table as Markdown (`markdown()`; tests/security/test_permission_matrix.py checks that
the document matches and that every staff endpoint answers as the table says).
"""

from __future__ import annotations

from typing import Literal

Scope = Literal["all", "own-ks", "own-record"]
ROLES: tuple[str, ...] = ("admin", "ks-staff", "organiser")
SCOPES: tuple[str, ...] = ("all", "own-ks", "own-record")

_ALL: Scope = "all"
_KS: Scope = "own-ks"
_OWN: Scope = "own-record"

# staff of a KS: everything of their KS
_STAFF = {"admin": _ALL, "ks-staff": _KS}
# ... and organisers their own events
_ORGANISER = {**_STAFF, "organiser": _OWN}

# action -> (what it is, {role: scope})
TABLE: dict[str, tuple[str, dict[str, Scope]]] = {
    # events
    "events.create": ("Create a draft event", {**_STAFF, "organiser": _KS}),
    "events.drafts.read": ("Read an event that is not published (a draft)", _ORGANISER),
    "events.edit": ("Change an event; move or cancel one date of a series", _ORGANISER),
    "events.publish": ("Publish an event", _ORGANISER),
    "events.cancel": ("Cancel an event", _ORGANISER),
    "events.list": ("List the events one may manage (staff pages)", _ORGANISER),
    "events.registrants.read": ("Registrations of an event with contact data (list, CSV)", _ORGANISER),
    "events.registrations.write": ("Register someone (by phone, on paper) or cancel a registration", _ORGANISER),
    "events.attendance.write": ("Record attendance", _ORGANISER),
    "events.attendance.read": ("Read recorded attendance", _ORGANISER),
    # booking
    "rooms.edit": ("Import rooms, change a room's rules, close a room", _STAFF),
    "booking.read": ("Bookings with the bookers' contact data", _STAFF),
    "booking.create": ("Book a room for the KS (confirmed at once; series)", _STAFF),
    "booking.approve": ("Approve or reject a room request", _STAFF),
    "booking.cancel": ("Cancel a booking", _STAFF),
    "booking.figures.read": ("Room-use figures (JSON, CSV)", _STAFF),
    # surveys
    "surveys.create": ("Create a draft survey", _STAFF),
    "surveys.drafts.read": ("Read a survey that is not open yet (a draft)", _STAFF),
    "surveys.manage": ("Open or close a survey; publish its results", _STAFF),
    "surveys.results.read": ("Results with free-text answers and answer clusters (JSON, CSV)", _STAFF),
    "surveys.responses.paper": ("Enter answers from paper forms", _STAFF),
    # notify
    "notify.subscribers.write": ("Subscribe a resident on their behalf (staff-entered consent)", _STAFF),
    "notify.subscribers.privacy": ("Export or erase one resident's data (GDPR)", {"admin": _ALL}),
    "notify.deliveries.read": ("Delivery log of a notice (contacts masked)", _STAFF),
    "notify.deliveries.resend": ("Queue a notice's failed deliveries again", _STAFF),
    "notify.preview": ("Preview how a notice reads on every channel (sends nothing)", {**_STAFF, "organiser": _KS}),
    "notify.ks-contacts.read": ("Who at a KS is told of new room requests", _STAFF),
    "notify.ks-contacts.write": ("Set who at a KS is told of new room requests", _STAFF),
    "notify.staff-home": ("Open the staff home: one's KS and what needs one now", {**_STAFF, "organiser": _KS}),
    "notify.notices.write": ("Write a notice to the KS, send it now or schedule it; the KS's sent notices", _STAFF),
    "notify.notices.urgent": ("Send a notice as urgent (it goes out even during quiet hours)", {"admin": _ALL}),
    "notify.notices.city-wide": ("Send a notice to every KS at once (city-wide)", {"admin": _ALL}),
}

ACTIONS: tuple[str, ...] = tuple(TABLE)


def scope_of(role: str, action: str) -> Scope | None:
    """The scope in which `role` may perform `action`, or None when it may not. An unknown
    action is a programming error (KeyError): a route cannot declare one the table lacks."""
    return TABLE[action][1].get(role)


SCOPE_WORDS = {"all": "all KS", "own-ks": "own KS", "own-record": "own records"}


def markdown() -> str:
    """The table as Markdown for docs/security.md (between the PERMISSIONS markers)."""
    lines = [
        "| action | what | " + " | ".join(ROLES) + " |",
        "|---|---|" + "---|" * len(ROLES),
    ]
    for action, (what, scopes) in TABLE.items():
        cells = [SCOPE_WORDS[scopes[r]] if r in scopes else "—" for r in ROLES]
        lines.append(f"| `{action}` | {what} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
