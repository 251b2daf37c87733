"""The event editor's form (staff_pages.py): reading what a volunteer typed and ticked into the
fields of the events use cases (`EventIn`), and back from a stored event — the repeat picker
(repeat.py) instead of an RRULE, the KS's rooms from events' copy of the catalogue (rooms.py)
instead of a room code, and the errors in the GOV.UK pattern (each message at its field)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from pydantic import ValidationError

from shared.web.forms import Errors, field_errors

from . import domain, repeat, repository
from .models import Event
from .repeat import Repeat, RepeatError
from .rooms import RoomChoice
from .schemas import SERIES_IN_A_ROOM

FIELDS = (
    "ks", "title", "description", "starts_at", "ends_at", "venue", "room_id", "capacity", "topics", "organiser",
    "organiser_email", "organiser_phone", "accessibility",
)  # fmt: skip
# The Slovenian message of each field of EventIn, in the order of the form.
FIELD_SL = {
    "ks": "Izberite krajevno skupnost.",
    "title": "Vpišite naslov dogodka (v eni vrstici).",
    "description": "Opis je predolg (največ 10.000 znakov).",
    "starts_at": "Vpišite začetek (datum in ura).",
    "ends_at": "Vpišite konec (datum in ura).",
    "venue": "Vpišite kraj dogodka ali izberite prostor KS.",
    "room_id": "Izberite prostor s seznama prostorov KS dogodka.",
    "capacity": "Število mest mora biti celo število, vsaj 1.",
    "audience": "Izberite, za koga je dogodek.",
    "topics": "Teme so besede (tudi s č, š, ž in presledki), ločene z vejico: največ 10 tem po 40 znakov.",
    "organiser": "Organizatorja vpišite v eni vrstici.",
    "organiser_email": "E-poštni naslov organizatorja ni pravilen.",
    "organiser_phone": "Telefonska številka organizatorja ni pravilna (npr. 041 123 456).",
    "accessibility": "Opis dostopnosti je predolg (največ 1000 znakov).",
    "rrule": "Ponavljanja ni mogoče shraniti: preverite dneve in zadnji dan.",
    "exdates": "Preverite, kateri dnevi odpadejo.",
}
# Model fields whose input has another id on the page.
FIELD_IDS = {"audience": "aud-vsi", "rrule": "do", "exdates": "do"}
BY_MESSAGE = [
    ("ends_at", "Konec mora biti za začetkom.", "ends_at"),
    ("cannot hold a KS room", SERIES_IN_A_ROOM.sl, "room_id"),
    ("RRULE", "Ponavljanja ni mogoče shraniti: preverite dneve in zadnji dan.", "rrule"),
    ("series", "Ponavljanja ni mogoče shraniti: preverite dneve in zadnji dan.", "rrule"),
]
ORDER = (
    "ks", "title", "description", "starts_at", "ends_at", "venue", "room_id", "capacity", "aud-vsi", "topics",
    "organiser", "organiser_email", "organiser_phone", "accessibility", "ponavljanje-tedensko", "dan-MO", "dan-TU",
    "dan-WE", "dan-TH", "dan-FR", "dan-SA", "dan-SU", "vsakih", "do",
)  # fmt: skip


@dataclass
class EventForm:
    """The editor's values as the page shows them (strings), with the ticked boxes."""

    values: dict[str, str]
    audience: list[str] = field(default_factory=lambda: ["vsi"])
    repeat: Repeat = field(default_factory=Repeat)

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)


def local_input(moment: datetime) -> str:
    """A moment as the value of a `datetime-local` input (Europe/Ljubljana)."""
    return moment.astimezone(domain.TZ).strftime("%Y-%m-%dT%H:%M")


def _local(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=domain.TZ) if moment.tzinfo is None else moment


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def blank(ks: str = "") -> EventForm:
    return EventForm({"ks": ks})


def form_of(event: Event) -> EventForm:
    """The editor filled from a stored event."""
    values = {
        "ks": event.ks,
        "title": event.title,
        "description": event.description,
        "starts_at": local_input(event.starts_at),
        "ends_at": local_input(event.ends_at),
        "venue": event.venue,
        "room_id": event.room_id or "",
        "capacity": str(event.capacity or ""),
        "topics": ", ".join(event.topics),
        "organiser": event.organiser,
        "organiser_email": event.organiser_email or "",
        "organiser_phone": event.organiser_phone or "",
        "accessibility": event.accessibility,
    }
    picked = repeat.repeat_of(event.rrule, event.starts_at, repository.exdates_of(event))
    return EventForm(values, list(event.audience), picked)


def read_form(raw: Any) -> EventForm:
    """The posted form (Starlette FormData; an empty one for a body that is not a form)."""
    values = {k: str(v).strip() for k, v in raw.items() if isinstance(v, str)}
    audience = [str(v) for v in raw.getlist("audience")]
    kind = values.get("ponavljanje", repeat.NONE)
    skipped = set()
    for value in raw.getlist("odpade"):  # the UTC starts of the dates ticked "ta dan odpade"
        moment = _local(str(value))
        if moment is not None:
            skipped.add(moment.astimezone(UTC))
    picked = Repeat(
        kind=kind if kind in (repeat.NONE, repeat.WEEKLY, repeat.KEEP) else repeat.NONE,
        days=[d for d in repeat.DAY_CODES if d in {str(v) for v in raw.getlist("dan")}],
        interval=2 if values.get("vsakih") == "2" else 1,
        until=_day(values.get("do", "")),
        skipped=skipped,
        kept_rule=values.get("pravilo") or None,
    )
    return EventForm(values, audience, picked)


def dates_shown(form: EventForm) -> list[tuple[domain.Occurrence, bool]]:
    """The dates the picker's series gives, each with whether it drops out (none when the
    picker does not make a series yet)."""
    starts, ends = _local(form.get("starts_at")), _local(form.get("ends_at"))
    if form.repeat.kind == repeat.NONE or starts is None or ends is None or ends <= starts:
        return []
    try:
        rule = repeat.rule_of(form.repeat, starts)
    except RepeatError:
        return []
    return [(o, o.starts_at in form.repeat.skipped) for o in repeat.all_dates(rule, starts, ends)]


def model_values(form: EventForm, rooms: list[RoomChoice], *, ks: str) -> tuple[dict[str, Any], Errors]:
    """The fields of `EventIn` from the form, and the errors only the page knows: the repeat
    picker's, and a room that is not one of the KS's rooms offered."""
    errors = Errors()
    starts, ends = _local(form.get("starts_at")), _local(form.get("ends_at"))
    rule: str | None = None
    exdates: list[datetime] = []
    if starts is not None:
        try:
            rule = repeat.rule_of(form.repeat, starts)
        except RepeatError as exc:
            errors.add(exc.field, exc.message)
        if rule and ends is not None and ends > starts:
            given = {o.starts_at for o in repeat.all_dates(rule, starts, ends)}
            exdates = sorted(form.repeat.skipped & given)
    room_id = form.get("room_id") or None
    if room_id is not None and room_id not in {r.id for r in rooms if r.ks == ks}:
        errors.add("room_id", FIELD_SL["room_id"])
    venue = form.get("venue")
    if not venue and room_id is not None:  # the room is the place: its name, unless staff wrote another
        venue = next((r.name for r in rooms if r.id == room_id), "")
    values: dict[str, Any] = {
        "ks": ks,
        "title": form.get("title"),
        "description": form.get("description"),
        "starts_at": starts if starts is not None else form.get("starts_at"),
        "ends_at": ends if ends is not None else form.get("ends_at"),
        "venue": venue,
        "capacity": form.get("capacity") or None,
        "audience": form.audience or ["vsi"],
        "topics": [t.strip() for t in form.get("topics").split(",") if t.strip()],
        "organiser": form.get("organiser"),
        "organiser_email": form.get("organiser_email") or None,
        "organiser_phone": form.get("organiser_phone") or None,
        "room_id": room_id,
        "accessibility": form.get("accessibility"),
        "rrule": rule,
        "exdates": exdates,
    }
    return values, errors


def event_errors(exc: ValidationError, also: Errors | None = None) -> Errors:
    """The model's errors at their fields, with the page's own (`also`), in the order of the form."""
    found = field_errors(exc, FIELD_SL, BY_MESSAGE, ids=FIELD_IDS)
    for name, message in (also or {}).items():
        found.add(name, message)
    return found.ordered(ORDER)


def page_errors(errors: Mapping[str, str]) -> Errors:
    return Errors(errors).ordered(ORDER)
