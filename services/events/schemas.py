"""events: the HTTP API's models (what the JSON API and the forms take and give).

The use cases (service.py) take and return these; the bus messages are the versioned
contracts in shared/contracts/events.py, not these."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Literal, cast

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field, field_validator, model_validator

from shared.contact import ContactFields, normalise_phone
from shared.contracts.age import AgeBand
from shared.contracts.events import AgeGroup, MovedOccurrence
from shared.contracts.ks import KsOrAll
from shared.errors import Bilingual

from . import domain

# The room round trip books one slot (booking.room.requested has one start and end): a
# series in a KS room would hold only its first date. Until the command carries every date,
# such a series is refused with the way that works today.
SERIES_IN_A_ROOM = Bilingual(
    "Ponavljajočega se dogodka ni mogoče vezati na prostor KS: rezervirajte serijo terminov v rezervacijah "
    "prostorov in prostor vpišite kot kraj dogodka.",
    "A recurring event cannot hold a KS room (room_id): book the series in the booking service and give the "
    "room as the venue.",
)


CONTROL_CHARACTERS = (
    "must be one line: no line breaks, tabs or other control characters (naslov, kraj in organizator so v eni vrstici)"
)


# A topic is a word or a few, in any letters (šport, družabništvo, ples za starejše): letters
# and digits of any script, spaces and hyphens, at most 40 characters, in lower case.
TOPIC_MAX = 40
_TOPIC = re.compile(r"[^\W_](?:[^\W_]|[ -])*")


def normalise_topic(text: str) -> str:
    """The topic as stored: NFC (č typed as c + caron is č), inner spaces collapsed, lower case."""
    return " ".join(unicodedata.normalize("NFC", text).split()).lower()


class _EventFields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("title", "venue", check_fields=False)
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        if value is not None and domain.control_characters(value):
            raise ValueError(CONTROL_CHARACTERS)
        return value

    @field_validator("organiser", check_fields=False)
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value and domain.control_characters(value):
            raise ValueError(CONTROL_CHARACTERS)
        return value

    @field_validator("organiser_phone", check_fields=False)
    @classmethod
    def _organiser_phone(cls, value: str | None) -> str | None:
        return normalise_phone(value) if value else None

    @field_validator("organiser_email", check_fields=False)
    @classmethod
    def _organiser_email(cls, value: str | None) -> str | None:
        return value.lower() if value else None

    @field_validator("topics", check_fields=False)
    @classmethod
    def _topics(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        out = []
        for raw in value:
            topic = normalise_topic(raw)
            if len(topic) > TOPIC_MAX or not _TOPIC.fullmatch(topic):
                raise ValueError(
                    f"topic {topic[:60]!r} must be letters or digits (any script), spaces and hyphens, "
                    f"1-{TOPIC_MAX} characters"
                )
            if topic not in out:
                out.append(topic)
        return out


class EventIn(_EventFields):
    ks: KsOrAll = Field(description='KS slug, or "*" for a city-wide event.')
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(
        default="",
        max_length=10000,
        description="Markdown (CommonMark: paragraphs, **bold**, *italics*, lists, links); raw HTML is shown as text.",
    )
    starts_at: AwareDatetime = Field(description="RFC 3339 with an offset.")
    ends_at: AwareDatetime
    venue: str = Field(min_length=1, max_length=300)
    capacity: int | None = Field(default=None, ge=1, le=10000, description="Seats; registration required when set.")
    audience: list[AgeGroup] = Field(
        default_factory=lambda: cast("list[AgeGroup]", ["vsi"]),
        description="Age groups: otroci, mladi, odrasli, starejsi, vsi.",
    )
    topics: list[str] = Field(
        default_factory=list,
        max_length=10,
        description="Topics: words in any letters (e.g. `delavnica`, `družabništvo`, `ples za starejše`), 1-40 "
        "characters each, stored in lower case.",
    )
    organiser: str = Field(default="", max_length=200)
    organiser_email: EmailStr | None = Field(
        default=None, description="Personal data: told by email when the KS room is refused (never shown publicly)."
    )
    organiser_phone: str | None = Field(
        default=None, max_length=30, description="Personal data: E.164 or a Slovenian number, for the same by SMS."
    )
    accessibility: str = Field(default="", max_length=1000, description="Access notes (step-free, hearing loop…).")
    room_id: str | None = Field(
        default=None,
        max_length=64,
        description="A community room of the booking service (e.g. `ks-primskovo`), booked by message; not with "
        "`rrule` (book a series of dates in the booking service and give the room as the venue).",
    )
    rrule: str | None = Field(
        default=None,
        max_length=500,
        description="RFC 5545 RRULE, in Europe/Ljubljana time from starts_at, e.g. `FREQ=WEEKLY;UNTIL=20270630`.",
        examples=["FREQ=WEEKLY;BYDAY=TU;UNTIL=20270630"],
    )
    exdates: list[AwareDatetime] = Field(
        default_factory=list, max_length=200, description="Starts of cancelled occurrences of a recurring event."
    )

    @model_validator(mode="after")
    def _check(self) -> EventIn:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if self.rrule:
            self.rrule = domain.validate_rrule(self.rrule, self.starts_at)
            if self.room_id:
                raise ValueError(str(SERIES_IN_A_ROOM))
        return self


class EventPatch(_EventFields):
    """Staff change of an event: only the fields given change."""

    title: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10000)
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    venue: str | None = Field(default=None, min_length=1, max_length=300)
    capacity: int | None = Field(default=None, ge=1, le=10000)
    audience: list[AgeGroup] | None = None
    topics: list[str] | None = Field(default=None, max_length=10)
    organiser: str | None = Field(default=None, max_length=200)
    organiser_email: EmailStr | None = Field(default=None, description="Personal data.")
    organiser_phone: str | None = Field(default=None, max_length=30, description="Personal data.")
    accessibility: str | None = Field(default=None, max_length=1000)
    room_id: str | None = Field(
        default=None,
        max_length=64,
        description='Another KS room, or "" for none: only while the event is a draft or its room was refused '
        "(409 otherwise). The room is asked for when the event is published.",
    )
    rrule: str | None = Field(default=None, max_length=500, description='RRULE; "" removes the recurrence.')
    exdates: list[AwareDatetime] | None = None


class OccurrenceMove(BaseModel):
    model_config = ConfigDict(extra="forbid")
    occurrence: AwareDatetime = Field(description="The start of the occurrence as the series gives it.")
    starts_at: AwareDatetime = Field(description="Its new start (RFC 3339 with an offset).")
    ends_at: AwareDatetime

    @model_validator(mode="after")
    def _order(self) -> OccurrenceMove:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class OccurrenceCancel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    occurrence: AwareDatetime = Field(description="The start of the occurrence as the series gives it.")
    reason: str = Field(default="", max_length=1000)


class EventOut(BaseModel):
    id: str
    ks: str
    title: str
    description: str
    starts_at: datetime
    ends_at: datetime
    venue: str
    capacity: int | None
    status: str = Field(description="draft, pending-room, room-refused, published or cancelled.")
    created_at: datetime
    published_at: datetime | None
    url: str
    audience: list[str] = Field(default_factory=list)
    topics: list[str] = Field(default_factory=list)
    organiser: str = ""
    organiser_email: str | None = Field(default=None, description="Personal data: only for staff.")
    organiser_phone: str | None = Field(default=None, description="Personal data: only for staff.")
    accessibility: str = ""
    room_id: str | None = None
    booking_id: str | None = Field(default=None, description="The booking service's booking of the room.")
    room_note: str | None = Field(default=None, description="On `room-refused`: why the booking service refused.")
    rrule: str | None = None
    exdates: list[datetime] = Field(default_factory=list)
    moved: list[MovedOccurrence] = Field(
        default_factory=list, description="Single occurrences of the series moved to another time."
    )
    cancel_reason: str | None = None
    sequence: int = Field(
        default=0,
        description="iCalendar SEQUENCE: grows by one with every change of time, dates, place or title, "
        "and on cancelling.",
    )
    ics_url: str = ""
    seats_taken: int | None = Field(default=None, description="Confirmed registrations (when counted).")


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=1000)


class RegistrationIn(ContactFields):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200, description="Personal data.")
    email: EmailStr | None = Field(default=None, description="Personal data.")
    phone: str | None = Field(default=None, max_length=30, description="Personal data: E.164 or a Slovenian number.")
    language: Literal["sl", "en"] = "sl"
    channel: Literal["web", "phone", "staff"] = Field(
        default="web", description="`phone` and `staff` only with a staff token (registering on someone's behalf)."
    )

    @field_validator("name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class RegistrationOut(BaseModel):
    id: str
    event_id: str
    status: Literal["confirmed", "waitlisted", "cancelled"]
    waitlist_position: int | None = Field(default=None, description="While waitlisted: 1 = next to get a seat.")
    created_at: datetime
    cancel_url: str | None = Field(default=None, description="Signed link to cancel (given to the registrant).")
    name: str | None = Field(default=None, description="Personal data: only for staff.")
    email: str | None = Field(default=None, description="Personal data: only for staff.")
    phone: str | None = Field(default=None, description="Personal data: only for staff.")
    channel: str | None = None


class AttendanceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    counts: dict[AgeBand, int] = Field(
        description="How many came, by age band: the platform's one set of bands, the same as the surveys' "
        "`age_band` (0-14, 15-29, 30-49, 50-64, 65+). Replaces what was recorded for that date.",
        examples=[{"0-14": 4, "30-49": 6, "50-64": 4, "65+": 7}],
    )
    occurrence: AwareDatetime | None = Field(
        default=None,
        description="Which date of a recurring event (its start as the series gives it, or where it was moved); "
        "default: the latest date that has started. Attendance is taken only once that date has started (409 before).",
    )

    @field_validator("counts")
    @classmethod
    def _non_negative(cls, value: dict[str, int]) -> dict[str, int]:
        if any(v < 0 or v > 100000 for v in value.values()):
            raise ValueError("counts must be between 0 and 100000")
        return value


class AttendanceDate(BaseModel):
    occurrence: datetime = Field(description="The date, named by its start as the event or series gives it (UTC).")
    starts_at: datetime = Field(description="When it was held (differs from `occurrence` for a moved date).")
    counts: dict[str, int] = Field(description="By age band (rows from before the bands may carry `30-64`).")
    total: int


class AttendanceOut(BaseModel):
    bands: list[str] = Field(description="The age bands, in order: 0-14, 15-29, 30-49, 50-64, 65+.")
    counts: dict[str, int] = Field(description="All dates together, by age band (every band, 0 when none came).")
    total: int
    dates: list[AttendanceDate] = Field(default_factory=list, description="Per recorded date, in order.")
