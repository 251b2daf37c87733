"""Dates, times and plural forms for residents: Slovenian first, English second.

Babel gives weekdays and plural categories from CLDR; CLDR has no genitive month names
for Slovenian, which a date needs ("3. decembra", not "3. december"), so those are here.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_datetime as babel_format_datetime

TZ = ZoneInfo("Europe/Ljubljana")
LANGUAGES = ("sl", "en")

_SL_MONTHS_GENITIVE = (
    "januarja", "februarja", "marca", "aprila", "maja", "junija",
    "julija", "avgusta", "septembra", "oktobra", "novembra", "decembra",
)  # fmt: skip


def local(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        raise ValueError("naive datetime: times are stored in UTC with an offset")
    return dt.astimezone(TZ)


def format_date(dt: datetime, lang: str = "sl") -> str:
    """`četrtek, 3. decembra 2026` / `Thursday, 3 December 2026` (Europe/Ljubljana)."""
    when = local(dt)
    if lang == "sl":
        weekday = babel_format_datetime(when, "EEEE", locale="sl", tzinfo=TZ)
        return f"{weekday}, {when.day}. {_SL_MONTHS_GENITIVE[when.month - 1]} {when.year}"
    return babel_format_datetime(when, "EEEE, d MMMM y", locale="en", tzinfo=TZ)


def format_time(dt: datetime, lang: str = "sl") -> str:
    when = local(dt)
    return f"{when.hour}.{when.minute:02d}" if lang == "sl" else f"{when.hour}:{when.minute:02d}"


def format_datetime(dt: datetime, lang: str = "sl") -> str:
    """`četrtek, 3. decembra 2026, ob 18.00` / `Thursday, 3 December 2026, at 18:00`."""
    return f"{format_date(dt, lang)}, {'ob' if lang == 'sl' else 'at'} {format_time(dt, lang)}"


def format_span(start: datetime, end: datetime, lang: str = "sl") -> str:
    """One line for an event: the day, and the times from-to (or two full dates)."""
    if local(start).date() == local(end).date():
        sep = "–"
        return f"{format_date(start, lang)}, {format_time(start, lang)}{sep}{format_time(end, lang)}"
    return f"{format_datetime(start, lang)} – {format_datetime(end, lang)}"


def plural(n: int, forms: dict[str, str], lang: str = "sl") -> str:
    """Pick the CLDR plural form: `plural(3, {"one": "termin", "two": "termina",
    "few": "termini", "other": "terminov"})` -> `"3 termini"`."""
    category = Locale(lang).plural_form(abs(n))
    word = forms.get(category) or forms["other"]
    return f"{n} {word}"
