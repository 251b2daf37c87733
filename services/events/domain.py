"""Pure rules of the events service: recurrence, seats and waitlist, wording. No I/O."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from markupsafe import Markup

TZ = ZoneInfo("Europe/Ljubljana")
AGE_GROUP_SL = {
    "otroci": "otroci",
    "mladi": "mladi",
    "odrasli": "odrasli",
    "starejsi": "starejši",
    "vsi": "vsi",
}
STATUS_SL = {
    "draft": "osnutek",
    "pending-room": "v čakanju na potrditev prostora",
    "room-refused": "prostor zavrnjen",
    "published": "objavljen",
    "cancelled": "odpovedan",
}
REGISTRATION_SL = {"confirmed": "potrjena", "waitlisted": "na čakalni listi", "cancelled": "preklicana"}
CHANNEL_SL = {"web": "splet", "phone": "telefon", "staff": "osebje"}
MAX_OCCURRENCES = 200


@dataclass(frozen=True)
class Occurrence:
    starts_at: datetime
    ends_at: datetime


def _local_naive(moment: datetime) -> datetime:
    return moment.astimezone(TZ).replace(tzinfo=None)


def _normalise_until(rule_text: str) -> str:
    """dateutil needs UNTIL of the same (naive, local) kind as DTSTART: read UNTIL as
    local wall-clock time (a date alone means the end of that day)."""
    parts = []
    for part in rule_text.strip().removeprefix("RRULE:").split(";"):
        key, _, value = part.partition("=")
        if key.upper() == "UNTIL":
            if value.upper().endswith("Z"):
                # a UTC instant: convert to local wall-clock time
                parsed = datetime.strptime(value.rstrip("Zz"), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
                value = _local_naive(parsed).strftime("%Y%m%dT%H%M%S")
            elif "T" not in value.upper():
                value += "T235959"
        parts.append(f"{key}={value}")
    return ";".join(parts)


def validate_rrule(rule_text: str, starts_at: datetime) -> str:
    """The RRULE as stored (without `RRULE:`), or ValueError with a reason."""
    from dateutil.rrule import rrulestr

    text = rule_text.strip().removeprefix("RRULE:")
    if not re.fullmatch(r"[A-Za-z0-9=;,:+\-]+", text) or "FREQ=" not in text.upper():
        raise ValueError("not an RFC 5545 RRULE (e.g. FREQ=WEEKLY;BYDAY=TU;UNTIL=20270630)")
    rule = rrulestr(_normalise_until(text), dtstart=_local_naive(starts_at))
    count = 0
    for _ in rule:
        count += 1
        if count > MAX_OCCURRENCES:
            raise ValueError(f"a series may have at most {MAX_OCCURRENCES} dates (give UNTIL or COUNT)")
    return text


def occurrences(
    starts_at: datetime,
    ends_at: datetime,
    rrule: str | None,
    exdates: list[datetime] | None = None,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[Occurrence]:
    """The dates of an event: one, or a series expanded in Europe/Ljubljana wall-clock
    time (Tuesday 18.00 stays 18.00 across the DST change), without the cancelled ones."""
    if not rrule:
        found = [Occurrence(starts_at, ends_at)]
    else:
        from dateutil.rrule import rrulestr

        local_start = _local_naive(starts_at)
        length = _local_naive(ends_at) - local_start
        rule = rrulestr(_normalise_until(rrule), dtstart=local_start)
        found = []
        for start in rule:
            if len(found) >= MAX_OCCURRENCES:
                break
            found.append(
                Occurrence(
                    start.replace(tzinfo=TZ).astimezone(UTC), (start + length).replace(tzinfo=TZ).astimezone(UTC)
                )
            )
    skipped = {d.astimezone(UTC) for d in exdates or []}
    return [
        o
        for o in found
        if o.starts_at not in skipped
        and (since is None or o.ends_at > since)
        and (until is None or o.starts_at < until)
    ]


def parse_exdates(values: list[str] | list[datetime]) -> list[datetime]:
    out = []
    for value in values:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        out.append(moment.astimezone(UTC))
    return sorted(out)


def seat_for_next(capacity: int | None, confirmed: int) -> bool:
    """Does the next registration get a seat? Without a capacity, always."""
    return capacity is None or confirmed < capacity


def seats_to_fill(capacity: int | None, confirmed: int, waiting: int) -> int:
    """How many of the waitlist get a seat now (after a cancellation or more seats)."""
    if capacity is None:
        return waiting
    return max(0, min(waiting, capacity - confirmed))


def reminder_window(now: datetime, lead: timedelta = timedelta(hours=24)) -> tuple[datetime, datetime]:
    """Events starting in (now, now + lead] are due for their reminder."""
    return now, now + lead


def render_description(text: str) -> Markup:
    """The description for a page: escaped plain text, blank lines make paragraphs, single
    line breaks become <br>. No HTML of the author's ever reaches the page."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text.replace("\r\n", "\n")) if p.strip()]
    return Markup("".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs))
