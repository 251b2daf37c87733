"""Messages owned by the events service (v1).

Import from here directly (`from shared.contracts.events import REGISTRATION_CONFIRMED`);
`EVENT_PUBLISHED` is also re-exported by `shared.contracts`.

Who is told what — every message is self-sufficient for writing ONE email/SMS:
- `events.event.published|updated|cancelled` (`EventPublished`, `EventChanged`) are facts
  for the KS's followers (a noticeboard entry, an announcement). They carry NO personal
  data and no list of registrants: notify cannot know the registrants, and must not.
- `events.registration.confirmed|waitlisted|promoted|cancelled` and
  `events.event.reminder-due` (`RegistrationNotice`) are about ONE registration and carry
  the registrant's contact data (PERSONAL DATA, in `registrant`), the event's details and
  the signed `cancel_url`: notify writes to that one person.
- When an event changes time or place, or is cancelled, the events service publishes the
  fact for followers (`events.event.updated|cancelled`) AND, in the same transaction, one
  `events.registration.event-changed` per active registration (confirmed or waitlisted),
  with `change` = `updated` or `cancelled`, what changed and the previous values. That is
  how "everyone registered is told" without notify holding a registrant list.
- `events.event.reminder-due` is published once per confirmed registration, about 24 hours
  before the event starts (once even with several replicas running).

All times are UTC (RFC 3339); show them in Europe/Ljubljana time. A recurring event has
`rrule` (RFC 5545, expanded in Europe/Ljubljana wall-clock time from `starts_at`) and
`exdates` (cancelled occurrences, UTC); `starts_at`/`ends_at` are then its first occurrence.
`dates` (since issue 18) lists every date of the event already expanded — a series' dates
without the cancelled ones, moved ones where they went — so a consumer (the noticeboard,
the weekly bulletin) needs no RRULE engine; absent in older messages (then the event has
the one date `starts_at`–`ends_at`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from .envelope import MessageType
from .ks import KsOrAll

AgeGroup = Literal["otroci", "mladi", "odrasli", "starejsi", "vsi"]
AGE_GROUPS: tuple[str, ...] = get_args(AgeGroup)
RegistrationStatus = Literal["confirmed", "waitlisted", "cancelled"]
RegistrationChannel = Literal["web", "phone", "staff"]


class EventDate(BaseModel):
    """One date of an event (UTC)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    starts_at: datetime
    ends_at: datetime


DATES_DESCRIPTION = (
    "Every date of the event in order (UTC): one for a single event; a series' dates without the cancelled "
    "ones and moved ones where they went (at most 200). Empty in messages from before it was added: then the "
    "event has the one date starts_at–ends_at."
)


class EventPublished(BaseModel):
    """A community event or workshop is now public."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: str
    ks: KsOrAll
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(
        default="", max_length=10000, description="Plain text (the page's Markdown with its marks removed), Slovenian."
    )
    starts_at: datetime
    ends_at: datetime
    venue: str = Field(min_length=1, max_length=300)
    capacity: int | None = Field(default=None, ge=1)
    url: AnyHttpUrl
    rrule: str | None = Field(default=None, description="RFC 5545 RRULE of a recurring event.")
    dates: list[EventDate] = Field(default_factory=list, max_length=200, description=DATES_DESCRIPTION)


EVENT_PUBLISHED = MessageType(
    "events.event.published",
    1,
    EventPublished,
    "Fact: staff published an event; notify announces it to the KS's followers.",
)


# --------------------------------------------------------------------------------------
# The event changed or was cancelled (for the KS's followers; no personal data)
# --------------------------------------------------------------------------------------
class MovedOccurrence(BaseModel):
    """One occurrence of a recurring event held at another time than the series gives it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    original: datetime = Field(description="UTC; the start the series gives it (iCalendar RECURRENCE-ID).")
    starts_at: datetime = Field(description="UTC; where it went.")
    ends_at: datetime


class EventChanged(BaseModel):
    """A published event changed (`events.event.updated`) or was cancelled
    (`events.event.cancelled`). The event as it is now, plus what changed."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: str
    ks: KsOrAll = Field(description='KS slug, or "*" for a city-wide event.')
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(
        default="", max_length=10000, description="Plain text (the page's Markdown with its marks removed), Slovenian."
    )
    starts_at: datetime = Field(description="UTC; the (first) occurrence's start.")
    ends_at: datetime
    venue: str = Field(min_length=1, max_length=300)
    capacity: int | None = Field(default=None, ge=1)
    organiser: str = Field(default="", max_length=200)
    audience: list[AgeGroup] = Field(default_factory=list, description="Age groups the event is for.")
    topics: list[str] = Field(default_factory=list)
    rrule: str | None = Field(default=None, description="RFC 5545 RRULE of a recurring event.")
    exdates: list[datetime] = Field(default_factory=list, description="Cancelled occurrences (UTC).")
    moved: list[MovedOccurrence] = Field(
        default_factory=list, description="Occurrences of the series moved to another time (RECURRENCE-ID overrides)."
    )
    dates: list[EventDate] = Field(default_factory=list, max_length=200, description=DATES_DESCRIPTION)
    url: AnyHttpUrl
    status: Literal["published", "cancelled"]
    changes: list[str] = Field(
        default_factory=list,
        description="On `updated`: names of the fields that changed, e.g. `starts_at`, `venue`, `exdates`, `moved`.",
    )
    previous_starts_at: datetime | None = Field(default=None, description="On `updated`: the start before the change.")
    previous_ends_at: datetime | None = None
    previous_venue: str | None = Field(default=None, description="On `updated`: the venue before the change.")
    reason: str | None = Field(default=None, max_length=1000, description="On `cancelled`: why, in Slovenian.")
    registrations: int = Field(
        default=0, ge=0, description="How many registrants are told one by one (`events.registration.event-changed`)."
    )


EVENT_UPDATED = MessageType(
    "events.event.updated",
    1,
    EventChanged,
    "Fact: staff changed a published event (time, place, description, dates of a series...). For followers; "
    "registrants are told individually by `events.registration.event-changed`.",
)
EVENT_CANCELLED = MessageType(
    "events.event.cancelled",
    1,
    EventChanged,
    "Fact: staff cancelled a published event; `reason` says why. Registrants are told individually by "
    "`events.registration.event-changed` (change = cancelled).",
)


# --------------------------------------------------------------------------------------
# One registration (to one person; PERSONAL DATA)
# --------------------------------------------------------------------------------------
class Registrant(BaseModel):
    """Who registered. PERSONAL DATA: use it only to tell this person about this
    registration; do not copy it anywhere else; erase it on a GDPR erasure request."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1, max_length=200, description="PERSONAL DATA: the registrant's name.")
    email: str | None = Field(default=None, max_length=320, description="PERSONAL DATA: email address, if given.")
    phone: str | None = Field(
        default=None, max_length=20, description="PERSONAL DATA: phone in E.164 (+386...), if given."
    )
    language: Literal["sl", "en"] = Field(default="sl", description="Language the registrant wants messages in.")


class RegistrationNotice(BaseModel):
    """Something happened to one registration for an event; everything needed to tell the
    registrant (in `registrant`, PERSONAL DATA) by email or SMS."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    registration_id: str
    event_id: str
    ks: KsOrAll = Field(description='KS of the event, or "*" for a city-wide event.')
    title: str = Field(min_length=1, max_length=200, description="The event's title.")
    starts_at: datetime = Field(description="UTC; show in Europe/Ljubljana time.")
    ends_at: datetime
    venue: str = Field(min_length=1, max_length=300)
    organiser: str = Field(default="", max_length=200)
    rrule: str | None = Field(default=None, description="RFC 5545 RRULE when the event repeats.")
    url: AnyHttpUrl = Field(description="The event's public page.")
    ics_url: AnyHttpUrl | None = Field(default=None, description="'Add to calendar' file of the event.")
    cancel_url: AnyHttpUrl | None = Field(
        default=None, description="Signed link with which the registrant cancels (absent once cancelled)."
    )
    status: RegistrationStatus = Field(description="The registration's status after this change.")
    waitlist_position: int | None = Field(
        default=None, ge=1, description="On `waitlisted`: place on the waitlist (1 = next to get a seat)."
    )
    channel: RegistrationChannel = Field(
        default="web", description="How it was made: `web` form/API, `phone` call to the KS office, `staff`."
    )
    registrant: Registrant = Field(description="PERSONAL DATA: who to tell, and how.")
    cancelled_by: Literal["registrant", "staff", "event-cancelled"] | None = Field(
        default=None, description="On `cancelled`: who cancelled."
    )
    change: Literal["updated", "cancelled"] | None = Field(
        default=None, description="On `event-changed`: the event was changed, or cancelled."
    )
    changes: list[str] = Field(
        default_factory=list,
        description="On `event-changed`: fields that changed; `occurrence-moved` / `occurrence-cancelled` when one "
        "date of a series changed (then starts_at/ends_at are that date's new time, previous_* its old one).",
    )
    previous_starts_at: datetime | None = Field(default=None, description="On `event-changed`: the old start.")
    previous_ends_at: datetime | None = None
    previous_venue: str | None = Field(default=None, description="On `event-changed`: the old venue.")
    reason: str | None = Field(default=None, max_length=1000, description="On `event-changed` (cancelled): why.")


REGISTRATION_CONFIRMED = MessageType(
    "events.registration.confirmed",
    1,
    RegistrationNotice,
    "Fact (PERSONAL DATA): a resident registered and has a seat. Carries the signed cancel link.",
)
REGISTRATION_WAITLISTED = MessageType(
    "events.registration.waitlisted",
    1,
    RegistrationNotice,
    "Fact (PERSONAL DATA): a resident registered but the seats are taken: on the waitlist at `waitlist_position`.",
)
REGISTRATION_PROMOTED = MessageType(
    "events.registration.promoted",
    1,
    RegistrationNotice,
    "Fact (PERSONAL DATA): a seat came free and the first on the waitlist now has it (status confirmed).",
)
REGISTRATION_CANCELLED = MessageType(
    "events.registration.cancelled",
    1,
    RegistrationNotice,
    "Fact (PERSONAL DATA): a registration was cancelled, by the registrant (signed link) or by staff.",
)
REGISTRATION_EVENT_CHANGED = MessageType(
    "events.registration.event-changed",
    1,
    RegistrationNotice,
    "Fact (PERSONAL DATA): the event of this registration changed time or place (`change` = updated) or was "
    "cancelled (`change` = cancelled); one per confirmed or waitlisted registrant.",
)
EVENT_REMINDER_DUE = MessageType(
    "events.event.reminder-due",
    1,
    RegistrationNotice,
    "Fact (PERSONAL DATA): the event starts in about 24 hours; one message per confirmed registration, "
    "published once even with several replicas.",
)

REGISTRATION_MESSAGE_TYPES: dict[str, MessageType[RegistrationNotice]] = {
    "confirmed": REGISTRATION_CONFIRMED,
    "waitlisted": REGISTRATION_WAITLISTED,
    "promoted": REGISTRATION_PROMOTED,
    "cancelled": REGISTRATION_CANCELLED,
    "event-changed": REGISTRATION_EVENT_CHANGED,
    "reminder-due": EVENT_REMINDER_DUE,
}

EVENTS_MESSAGE_TYPES: tuple[MessageType, ...] = (
    EVENT_PUBLISHED,
    EVENT_UPDATED,
    EVENT_CANCELLED,
    *REGISTRATION_MESSAGE_TYPES.values(),
)
