"""Why the events service refuses a request. A refusal carries its reason in Slovenian and
English (`shared.errors.Refused`, `exc.message`): the JSON API answers `str(exc)` ("sl / en"),
a page shows the text of its own language."""

from __future__ import annotations

from shared.errors import Bilingual, Refused

CANCELLED_UNCHANGEABLE = Bilingual(
    "Odpovedanega dogodka ni mogoče spreminjati.", "A cancelled event cannot be changed."
)


class Conflict(Refused):
    """The request is valid but the event's state does not allow it (HTTP 409)."""

    status = 409


class PhoneRefused(Conflict):
    """A phone the platform will not text (a country `KRANJ_SMS_COUNTRY_CODES` leaves out): HTTP 422."""

    status = 422


class AlreadyRegistered(Conflict):
    """The contact has an active registration for the event: its link went to that
    registration's own contacts again; the answer tells the requester nothing more (HTTP 409)."""


class NotFound(Exception):
    """No such event or registration (the id it was asked by); the routes answer 404."""
