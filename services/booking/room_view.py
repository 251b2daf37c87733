"""What a resident's room page shows (pages.py renders it): the coming days with their free
time as ranges ("prosto 8.00–12.00 in 14.00–22.00"), one line per day, and the choices of
the request form: a start time and a duration, not one-hour tiles.

The page opens on the first day a resident can still ask for (today plus the room's notice
period), never on a week already gone: on a Sunday it shows Monday to Sunday ahead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from shared.i18n import format_date, plural

from . import domain
from .domain import TZ, Availability, Interval, Rules

DAYS_SHOWN = 7
_HOURS = {"one": "ura", "two": "uri", "few": "ure", "other": "ur"}
_MINUTES = {"one": "minuta", "two": "minuti", "few": "minute", "other": "minut"}
# The accusative ("traja najmanj 1 uro"): only the singular differs.
_HOURS_ACC = {**_HOURS, "one": "uro"}
_MINUTES_ACC = {**_MINUTES, "one": "minuto"}
QUARTER = timedelta(minutes=15)


@dataclass
class DayView:
    """One of the coming days: its free ranges, or why there are none."""

    day: date
    heading: str
    free: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def value(self) -> str:
        return self.day.isoformat()


def first_bookable_day(rules: Rules, now: datetime) -> date:
    """The first local day on which the notice period leaves any time to ask for."""
    return (now + rules.min_notice).astimezone(TZ).date()


def shown_from(rules: Rules, now: datetime, wanted: date | None) -> date:
    """The first of the days shown: the first bookable day, or a later `wanted` day (the
    "next days" link, a day chosen in the form) when it lies beyond those days."""
    first = first_bookable_day(rules, now)
    if wanted is None or wanted < first + timedelta(days=DAYS_SHOWN):
        return first
    return wanted


def window(start: date) -> Interval:
    return Interval(domain.local_instant(start, 0), domain.local_instant(start + timedelta(days=DAYS_SHOWN), 0))


def _clock(moment: datetime, day: date) -> str:
    local = moment.astimezone(TZ)
    if local.date() > day and local.hour == 0 and local.minute == 0:
        return "24.00"
    return f"{local.hour}.{local.minute:02d}"


def _quarter(moment: datetime) -> datetime:
    """`moment` rounded up to the next quarter hour (the notice period ends at any minute)."""
    local = moment.astimezone(TZ)
    past = timedelta(minutes=local.minute % 15, seconds=local.second, microseconds=local.microsecond)
    return moment if not past else moment - past + QUARTER


def coming_days(rules: Rules, avail: Availability, start: date) -> list[DayView]:
    days = []
    for offset in range(DAYS_SHOWN):
        day = start + timedelta(days=offset)
        view = DayView(day=day, heading=format_date(domain.local_instant(day, 720)))
        pieces = [(_quarter(f.start), f.end) for f in avail.free if f.start.astimezone(TZ).date() == day]
        view.free = [f"{_clock(a, day)}–{_clock(b, day)}" for a, b in pieces if b - a >= rules.min_duration]
        holiday = domain.holiday_name(day)
        if holiday:
            view.note = f"državni praznik ({holiday}): prostor je zaprt"
        elif not rules.opening_hours.get(day.weekday()):
            view.note = "prostor je ta dan zaprt"
        elif not view.free:
            view.note = "ni prostih terminov"
        days.append(view)
    return days


def free_text(ranges: list[str]) -> str:
    """["8.00–12.00", "14.00–22.00"] -> "8.00–12.00 in 14.00–22.00"."""
    if len(ranges) < 2:
        return "".join(ranges)
    return ", ".join(ranges[:-1]) + " in " + ranges[-1]


def _step(minutes: list[int]) -> int:
    return 30 if all(m % 30 == 0 for m in minutes) else 15


def start_times(rules: Rules, days: list[DayView], chosen: str = "") -> list[tuple[str, str]]:
    """(value "HH:MM", label "H.MM") of every start the opening hours of the shown days allow
    with the shortest duration left before closing; `chosen` stays among them."""
    spans = [span for d in days for span in rules.opening_hours.get(d.day.weekday(), [])]
    shortest = int(rules.min_duration.total_seconds() // 60)
    step = _step([m for span in spans for m in span] + [shortest])
    found = sorted({m for a, b in spans for m in range(a, b - shortest + 1, step)})
    if chosen:
        try:
            extra = domain.parse_hhmm(chosen)
        except ValueError:
            extra = None
        if extra is not None and extra < domain.DAY_MINUTES and extra not in found:
            found = sorted([*found, extra])
    return [(f"{m // 60:02d}:{m % 60:02d}", domain.fmt_minutes(m)) for m in found]


def duration_label(minutes: int, accusative: bool = False) -> str:
    hours, rest = divmod(minutes, 60)
    hour_forms, minute_forms = (_HOURS_ACC, _MINUTES_ACC) if accusative else (_HOURS, _MINUTES)
    parts = ([plural(hours, hour_forms)] if hours else []) + ([plural(rest, minute_forms)] if rest else [])
    return " in ".join(parts)


def durations(rules: Rules) -> list[tuple[str, str]]:
    """(value in minutes, label "1 ura in 30 minut") from the shortest to the longest booking."""
    shortest = int(rules.min_duration.total_seconds() // 60)
    longest = int(rules.max_duration.total_seconds() // 60)
    step = _step([shortest, longest])
    return [(str(m), duration_label(m)) for m in range(shortest, longest + 1, step)]


def duration_of(start: str, end: str) -> str:
    """The minutes between two "HH:MM" times (an old link's `od` and `do`), or ""."""
    try:
        minutes = domain.parse_hhmm(end) - domain.parse_hhmm(start)
    except ValueError:
        return ""
    return str(minutes) if minutes > 0 else ""
