"""Pure rules of booking a room: no I/O, easy to test.

Times are UTC-aware datetimes everywhere; the room's rules (opening hours, KS office
hours, public holidays) are wall-clock rules in Europe/Ljubljana, so every check turns a
local day and its "HH:MM" times into UTC instants (DST days have 23 or 25 hours).
Intervals are half-open, [start, end): a booking that ends at 20.00 and one that starts
at 20.00 only touch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import holidays

from shared.errors import Bilingual

TZ = ZoneInfo("Europe/Ljubljana")
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_MINUTES = 24 * 60


@dataclass(frozen=True, order=True)
class Interval:
    start: datetime
    end: datetime

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end

    def contains(self, other: Interval) -> bool:
        return self.start <= other.start and other.end <= self.end

    def widened(self, by: timedelta) -> Interval:
        return Interval(self.start - by, self.end + by)

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


@dataclass(frozen=True)
class Violation:
    """One broken rule: a stable code, and the reason in Slovenian then English."""

    rule: str
    sl: str
    en: str

    @property
    def message(self) -> Bilingual:
        return Bilingual(self.sl, self.en)

    def text(self) -> str:
        return str(self.message)


def parse_hhmm(value: str) -> int:
    """`"08:30"` -> 510 minutes; `"24:00"` -> 1440 (end of the day)."""
    hours, _, minutes = value.strip().partition(":")
    h, m = int(hours), int(minutes or 0)
    if not (0 <= h <= 24 and 0 <= m < 60) or (h == 24 and m):
        raise ValueError(f"not a time of day: {value!r}")
    return h * 60 + m


def fmt_minutes(minutes: int) -> str:
    """510 -> `8.30` (Slovenian style)."""
    return f"{minutes // 60}.{minutes % 60:02d}"


WeekHours = dict[int, list[tuple[int, int]]]  # weekday (0 = Monday) -> [(from, to)] minutes


def parse_week(raw: Mapping[str, Any] | None) -> WeekHours:
    """`{"mon": [["08:00", "22:00"]], ...}` -> {0: [(480, 1320)], ...} (validated, sorted)."""
    week: WeekHours = {}
    for key, spans in (raw or {}).items():
        if key not in WEEKDAYS:
            raise ValueError(f"unknown weekday {key!r}; use {', '.join(WEEKDAYS)}")
        parsed = []
        for span in spans or []:
            start, end = parse_hhmm(span[0]), parse_hhmm(span[1])
            if end <= start:
                raise ValueError(f"{key}: {span[0]}–{span[1]} ends before it starts")
            parsed.append((start, end))
        week[WEEKDAYS.index(key)] = sorted(parsed)
    return week


@dataclass(frozen=True)
class Rules:
    """What a room allows."""

    opening_hours: WeekHours
    office_hours: WeekHours = field(default_factory=dict)
    min_duration: timedelta = timedelta(hours=1)
    max_duration: timedelta = timedelta(hours=4)
    min_notice: timedelta = timedelta(hours=24)
    max_ahead: timedelta = timedelta(days=180)
    buffer: timedelta = timedelta(0)
    capacity: int = 50
    requires_approval: bool = True

    @classmethod
    def from_room(cls, room: Any) -> Rules:
        return cls(
            opening_hours=parse_week(room.opening_hours),
            office_hours=parse_week(room.office_hours),
            min_duration=timedelta(minutes=room.min_duration_minutes),
            max_duration=timedelta(minutes=room.max_duration_minutes),
            min_notice=timedelta(hours=room.min_notice_hours),
            max_ahead=timedelta(days=room.max_ahead_days),
            buffer=timedelta(minutes=room.buffer_minutes),
            capacity=room.capacity,
            requires_approval=room.requires_approval,
        )


# --------------------------------------------------------------------------------------
# Local days
# --------------------------------------------------------------------------------------
def local_instant(day: date, minutes: int) -> datetime:
    """The UTC instant of wall-clock `minutes` after local midnight of `day` (1440 = next midnight)."""
    if minutes >= DAY_MINUTES:
        day, minutes = day + timedelta(days=1), minutes - DAY_MINUTES
    naive = datetime.combine(day, time(minutes // 60, minutes % 60))
    return naive.replace(tzinfo=TZ).astimezone(UTC)


def local_span(day: date, span: tuple[int, int]) -> Interval:
    return Interval(local_instant(day, span[0]), local_instant(day, span[1]))


def local_days(start: datetime, end: datetime) -> Iterator[date]:
    """Every local date that [start, end) touches."""
    day = start.astimezone(TZ).date()
    last = (end - timedelta(microseconds=1)).astimezone(TZ).date()
    while day <= last:
        yield day
        day += timedelta(days=1)


@lru_cache(maxsize=32)
def _holidays(year: int) -> dict[date, str]:
    return dict(holidays.Slovenia(years=year, language="sl"))


def holiday_name(day: date) -> str | None:
    """The Slovenian public holiday on `day` (work-free days), in Slovenian, or None."""
    return _holidays(day.year).get(day)


def office_intervals(rules: Rules, day: date) -> list[Interval]:
    return [local_span(day, span) for span in rules.office_hours.get(day.weekday(), [])]


def opening_intervals(rules: Rules, day: date) -> list[Interval]:
    return [local_span(day, span) for span in rules.opening_hours.get(day.weekday(), [])]


# --------------------------------------------------------------------------------------
# Interval arithmetic
# --------------------------------------------------------------------------------------
def subtract(base: Iterable[Interval], cuts: Iterable[Interval]) -> list[Interval]:
    """`base` minus every cut; touching pieces are kept apart, empty pieces dropped."""
    pieces = sorted(base)
    for cut in sorted(cuts):
        next_pieces = []
        for piece in pieces:
            if not piece.overlaps(cut):
                next_pieces.append(piece)
                continue
            if piece.start < cut.start:
                next_pieces.append(Interval(piece.start, cut.start))
            if cut.end < piece.end:
                next_pieces.append(Interval(cut.end, piece.end))
        pieces = next_pieces
    return pieces


def overlap_length(a: Interval, others: Iterable[Interval]) -> timedelta:
    total = timedelta(0)
    for other in others:
        start, end = max(a.start, other.start), min(a.end, other.end)
        if end > start:
            total += end - start
    return total


# --------------------------------------------------------------------------------------
# The check of one request
# --------------------------------------------------------------------------------------
def _hours(td: timedelta) -> str:
    minutes = int(td.total_seconds() // 60)
    if minutes % 60:
        return f"{minutes} min"
    hours = minutes // 60
    return f"{hours} h"


def check_request(
    rules: Rules,
    slot: Interval,
    *,
    attendees: int,
    now: datetime,
    closures: Sequence[tuple[Interval, str]] = (),
    taken: Sequence[Interval] = (),
    staff: bool = False,
) -> list[Violation]:
    """Every rule `slot` breaks, most basic first (empty: the room allows it).

    `taken` are the room's other bookings that hold their slot (requested or confirmed).
    Staff may book at short notice (the notice rule does not apply to them)."""
    found: list[Violation] = []
    duration = slot.duration
    if slot.start < now:
        found.append(Violation("past", "Termin je že mimo.", "That time is in the past."))
    elif not staff and slot.start < now + rules.min_notice:
        found.append(
            Violation(
                "min-notice",
                f"Prostor je treba rezervirati vsaj {_hours(rules.min_notice)} vnaprej.",
                f"The room must be booked at least {_hours(rules.min_notice)} ahead.",
            )
        )
    if slot.start > now + rules.max_ahead:
        ahead_days = rules.max_ahead.days
        found.append(
            Violation(
                "max-ahead",
                f"Rezervirate lahko največ {ahead_days} dni vnaprej.",
                f"Bookings can be made at most {ahead_days} days ahead.",
            )
        )
    if duration < rules.min_duration:
        found.append(
            Violation(
                "min-duration",
                f"Rezervacija mora trajati vsaj {_hours(rules.min_duration)}.",
                f"A booking must last at least {_hours(rules.min_duration)}.",
            )
        )
    if duration > rules.max_duration:
        found.append(
            Violation(
                "max-duration",
                f"Rezervacija lahko traja največ {_hours(rules.max_duration)}.",
                f"A booking may last at most {_hours(rules.max_duration)}.",
            )
        )
    if attendees > rules.capacity:
        found.append(
            Violation(
                "capacity",
                f"Prostor sprejme največ {rules.capacity} oseb.",
                f"The room holds at most {rules.capacity} people.",
            )
        )
    days = list(local_days(slot.start, slot.end))
    for day in days:
        name = holiday_name(day)
        if name:
            found.append(
                Violation(
                    "holiday",
                    f"Na državni praznik ({name}, {day.day}. {day.month}.) je prostor zaprt.",
                    f"The room is closed on public holidays ({day.isoformat()}).",
                )
            )
            break
    if not any(span.contains(slot) for day in days for span in opening_intervals(rules, day)):
        spans = rules.opening_hours.get(slot.start.astimezone(TZ).weekday(), [])
        if spans:
            hours = ", ".join(f"{fmt_minutes(a)}–{fmt_minutes(b)}" for a, b in spans)
            found.append(
                Violation(
                    "opening-hours",
                    f"Prostor je odprt le od {hours}.",
                    f"The room is open {hours.replace('.', ':')} only.",
                )
            )
        else:
            found.append(Violation("opening-hours", "Ta dan je prostor zaprt.", "The room is closed on that day."))
    for day in days:
        clash = next((o for o in office_intervals(rules, day) if o.overlaps(slot)), None)
        if clash:
            local_from, local_to = clash.start.astimezone(TZ), clash.end.astimezone(TZ)
            span = f"{local_from.hour}.{local_from.minute:02d}–{local_to.hour}.{local_to.minute:02d}"
            found.append(
                Violation(
                    "office-hours",
                    f"V tem času so uradne ure KS ({span}).",
                    f"Those are the KS office hours ({span.replace('.', ':')}).",
                )
            )
            break
    for closure, reason in closures:
        if closure.overlaps(slot):
            found.append(
                Violation("closure", f"Prostor je takrat zaprt: {reason}.", f"The room is closed then: {reason}.")
            )
            break
    if any(other.overlaps(slot) for other in taken):
        found.append(Violation("taken", "Termin je že zaseden.", "That time is already booked."))
    elif rules.buffer and any(other.widened(rules.buffer).overlaps(slot) for other in taken):
        minutes = int(rules.buffer.total_seconds() // 60)
        found.append(
            Violation(
                "buffer",
                f"Med rezervacijami mora ostati vsaj {minutes} minut za pospravljanje.",
                f"Bookings need {minutes} minutes between them for tidying up.",
            )
        )
    return found


# --------------------------------------------------------------------------------------
# Availability
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Availability:
    free: list[Interval]
    taken: list[tuple[Interval, str]]  # (interval, status)
    closed: list[tuple[Interval, str]]  # (interval, reason in Slovenian), within opening hours


def availability(
    rules: Rules,
    window: Interval,
    *,
    now: datetime,
    closures: Sequence[tuple[Interval, str]] = (),
    bookings: Sequence[tuple[Interval, str]] = (),
) -> Availability:
    """Free (bookable now by a resident), taken and closed intervals of a room in `window`."""
    open_spans: list[Interval] = []
    closed: list[tuple[Interval, str]] = []
    for day in local_days(window.start, window.end):
        spans = opening_intervals(rules, day)
        name = holiday_name(day)
        if name:
            closed.extend((span, f"državni praznik: {name}") for span in spans)
            continue
        open_spans.extend(spans)
        closed.extend((office, "uradne ure KS") for office in office_intervals(rules, day))
    for closure, reason in closures:
        closed.append((closure, reason))
    bookable_from = max(window.start, now + rules.min_notice)
    bookable_to = min(window.end, now + rules.max_ahead)
    cuts = [c for c, _ in closed] + [b.widened(rules.buffer) for b, _ in bookings]
    free = [
        Interval(max(p.start, bookable_from), min(p.end, bookable_to))
        for p in subtract(open_spans, cuts)
        if p.end > bookable_from and p.start < bookable_to
    ]
    free = [p for p in free if p.duration >= rules.min_duration]
    taken = sorted((b, s) for b, s in bookings if b.overlaps(window))
    closed_in = sorted(
        (Interval(max(c.start, window.start), min(c.end, window.end)), r) for c, r in closed if c.overlaps(window)
    )
    return Availability(free=free, taken=taken, closed=closed_in)


@dataclass(frozen=True)
class Slot:
    """One hour of the week view: `free`, `taken` or `closed`."""

    interval: Interval
    state: str


def day_slots(rules: Rules, day: date, avail: Availability, step: timedelta = timedelta(hours=1)) -> list[Slot]:
    """The day's opening hours cut into `step` pieces, each marked free, taken or closed."""
    slots = []
    for span in opening_intervals(rules, day):
        start = span.start
        while start + step <= span.end:
            piece = Interval(start, start + step)
            if any(t.overlaps(piece) for t, _ in avail.taken):
                state = "taken"
            elif any(f.contains(piece) for f in avail.free):
                state = "free"
            else:
                state = "closed"
            slots.append(Slot(piece, state))
            start += step
    return slots


# --------------------------------------------------------------------------------------
# Recurrence and figures
# --------------------------------------------------------------------------------------
def occurrences(first: Interval, rrule_text: str, *, limit: int = 60) -> list[Interval]:
    """The dates of a recurring series: `first`, repeated by an RFC 5545 RRULE, in local
    wall-clock time (Wednesday 17.00–19.00 stays 17.00–19.00 across the DST change)."""
    from dateutil.rrule import rrulestr

    local_start = first.start.astimezone(TZ).replace(tzinfo=None)
    local_end = first.end.astimezone(TZ).replace(tzinfo=None)
    length = local_end - local_start
    text = rrule_text.strip().removeprefix("RRULE:")
    if "UNTIL=" in text.upper():
        # dateutil needs UNTIL to match DTSTART's (naive) kind: read UNTIL as a local date-time.
        parts = []
        for part in text.split(";"):
            key, _, value = part.partition("=")
            if key.upper() == "UNTIL":
                value = value.rstrip("Zz")
                if "T" not in value.upper():
                    value += "T235959"
            parts.append(f"{key}={value}")
        text = ";".join(parts)
    rule = rrulestr(text, dtstart=local_start)
    found: list[Interval] = []
    for start in rule:
        if len(found) >= limit:
            raise ValueError(f"a series may have at most {limit} dates")
        found.append(
            Interval(start.replace(tzinfo=TZ).astimezone(UTC), (start + length).replace(tzinfo=TZ).astimezone(UTC))
        )
    return found


def period_start(moment: datetime, period: str) -> date:
    """The local Monday of the week (`week`) or the first of the month (`month`)."""
    day = moment.astimezone(TZ).date()
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def hours_outside_office(rules: Rules, slot: Interval) -> float:
    """Hours of `slot` that fall outside the KS office hours (the room used beyond formalities)."""
    office = [o for day in local_days(slot.start, slot.end) for o in office_intervals(rules, day)]
    return (slot.duration - overlap_length(slot, office)).total_seconds() / 3600
