"""The repeat picker of the event editor, as pure rules (no I/O): "ne ponavlja se" or "vsak
teden (ali vsak drugi teden) na izbrane dni do datuma", and the dates that drop out ("ta dan
odpade") — turned into the RFC 5545 RRULE and EXDATEs the events use cases take, and back: a
stored rule fills the picker when an existing series is edited. A rule the picker cannot show
(monthly, COUNT with other parts, …; only the JSON API makes those) is kept as it is."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from . import domain

# RFC 5545 weekdays, Monday first, with their Slovenian names (plural: "ob torkih")
WEEKDAYS: tuple[tuple[str, str], ...] = (
    ("MO", "ponedeljek"),
    ("TU", "torek"),
    ("WE", "sreda"),
    ("TH", "četrtek"),
    ("FR", "petek"),
    ("SA", "sobota"),
    ("SU", "nedelja"),
)
DAY_CODES = tuple(code for code, _ in WEEKDAYS)
DAY_SL = dict(WEEKDAYS)
EVERY = {1: "vsak teden", 2: "vsak drugi teden"}
NONE, WEEKLY, KEEP = "ne", "tedensko", "ohrani"


class RepeatError(ValueError):
    """The picker's values do not make a series: `field` is the id of the input to correct."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass
class Repeat:
    """What the picker shows and sends."""

    kind: str = NONE  # NONE, WEEKLY or KEEP (a stored rule the picker cannot show)
    days: list[str] = field(default_factory=list)  # DAY_CODES, in order
    interval: int = 1  # 1: every week, 2: every other week
    until: date | None = None  # the last day (Europe/Ljubljana) a date may fall on
    skipped: set[datetime] = field(default_factory=set)  # UTC starts that drop out (EXDATE)
    kept_rule: str | None = None  # KEEP: the stored rule as it is


def weekday_code(moment: datetime) -> str:
    return DAY_CODES[moment.astimezone(domain.TZ).weekday()]


def rule_of(repeat: Repeat, starts_at: datetime) -> str | None:
    """The RRULE of the picker's values (None: not repeating), or RepeatError."""
    if repeat.kind == KEEP:
        return repeat.kept_rule
    if repeat.kind != WEEKLY:
        return None
    first = weekday_code(starts_at)
    days = [d for d in DAY_CODES if d in (repeat.days or [first])]
    if first not in days:
        raise RepeatError(
            f"dan-{days[0]}",
            f"Prvi termin (začetek) je {DAY_SL[first]}: obkljukajte tudi ta dan ali spremenite začetek.",
        )
    if repeat.until is None:
        raise RepeatError("do", "Vpišite, do katerega dne se dogodek ponavlja.")
    if repeat.until < starts_at.astimezone(domain.TZ).date():
        raise RepeatError("do", "Zadnji dan ponavljanja mora biti na dan začetka ali pozneje.")
    parts = ["FREQ=WEEKLY"]
    if repeat.interval == 2:
        parts.append("INTERVAL=2")
    parts += [f"BYDAY={','.join(days)}", f"UNTIL={repeat.until.strftime('%Y%m%d')}"]
    rule = ";".join(parts)
    try:
        return domain.validate_rrule(rule, starts_at)
    except ValueError:
        raise RepeatError(
            "do", f"Serija ima lahko največ {domain.MAX_OCCURRENCES} terminov: izberite zgodnejši zadnji dan."
        ) from None


def all_dates(rule: str | None, starts_at: datetime, ends_at: datetime) -> list[domain.Occurrence]:
    """Every date the rule gives (none dropped out), in order."""
    return domain.occurrences(starts_at, ends_at, rule)


def repeat_of(rule: str | None, starts_at: datetime, exdates: list[datetime]) -> Repeat:
    """The picker filled from a stored rule (and the dates that drop out)."""
    if not rule:
        return Repeat()
    parts = {}
    for part in rule.removeprefix("RRULE:").split(";"):
        key, _, value = part.partition("=")
        parts[key.upper()] = value.upper()
    days = parts.get("BYDAY", weekday_code(starts_at)).split(",")
    interval = int(parts.get("INTERVAL", "1")) if parts.get("INTERVAL", "1").isdigit() else 0
    simple = (
        parts.get("FREQ") == "WEEKLY"
        and set(parts) <= {"FREQ", "INTERVAL", "BYDAY", "UNTIL", "COUNT", "WKST"}
        and interval in (1, 2)
        and all(d in DAY_CODES for d in days)
        and weekday_code(starts_at) in days
    )
    if not simple:
        return Repeat(kind=KEEP, kept_rule=rule, skipped=set(exdates))
    dates = all_dates(rule, starts_at, starts_at + timedelta(hours=1))
    until = dates[-1].starts_at.astimezone(domain.TZ).date() if dates else starts_at.astimezone(domain.TZ).date()
    return Repeat(
        kind=WEEKLY,
        days=[d for d in DAY_CODES if d in days],
        interval=interval,
        until=until,
        skipped=set(exdates),
    )


def describe(repeat: Repeat) -> str:
    """ "vsak teden ob torkih in četrtkih do 30. 6. 2027" (for staff)."""
    if repeat.kind == KEEP:
        return f"po pravilu {repeat.kept_rule}"
    if repeat.kind != WEEKLY or repeat.until is None:
        return "ne ponavlja se"
    names = [_plural_day(d) for d in repeat.days]
    days = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " in " + names[-1]
    until = f"{repeat.until.day}. {repeat.until.month}. {repeat.until.year}"
    return f"{EVERY.get(repeat.interval, 'vsak teden')} ob {days} do {until}"


_PLURAL = {
    "MO": "ponedeljkih",
    "TU": "torkih",
    "WE": "sredah",
    "TH": "četrtkih",
    "FR": "petkih",
    "SA": "sobotah",
    "SU": "nedeljah",
}


def _plural_day(code: str) -> str:
    return _PLURAL[code]
