"""Pure rules of the events service: recurrence, seats and waitlist, wording. No I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from markupsafe import Markup

from shared.contracts.age import AGE_BAND_LABELS_SL, AGE_BANDS

TZ = ZoneInfo("Europe/Ljubljana")
# Attendance is counted in the platform's one set of age bands (the surveys' too).
# `30-64` is only on rows recorded before them ("odrasli", see migration events_0004).
ATTENDANCE_BANDS: tuple[str, ...] = AGE_BANDS
LEGACY_ADULTS = "30-64"
ATTENDANCE_LABELS: dict[str, str] = {**AGE_BAND_LABELS_SL, LEGACY_ADULTS: "30–64 let (odrasli, pred delitvijo)"}
# Who an event is for (its audience, a filter on the pages): words, not counted bands.
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
# Booking answers a room request within seconds; unanswered this long, the request is told
# to staff as stuck (lost, or dead-lettered on the bus), never left silently pending.
ROOM_ANSWER_WAIT = timedelta(minutes=10)


@dataclass(frozen=True)
class RoomNotice:
    """What the staff pages tell about an event's room: `problem` (staff must act: an alert)
    or news (a status), `short` for the list of events, `text` for the event's page."""

    problem: bool
    short: str
    text: str


def room_notice(
    status: str,
    room_name: str | None,
    *,
    booking_id: str | None,
    note: str | None,
    requested_at: datetime | None,
    now: datetime,
) -> RoomNotice | None:
    """The room's story in plain Slovenian for staff (None: the event has no room to tell about)."""
    if room_name is None:
        return None
    reason = (note or "").strip().rstrip(".")
    if status == "room-refused":
        why = f" Razlog: {reason}." if reason else ""
        return RoomNotice(
            True,
            f"prostor ni odobren{': ' + reason if reason else ''}",
            f"Prostor {room_name} za ta dogodek ni odobren.{why} Dogodek zato ni objavljen. Izberite drug prostor "
            "ali čas in ga znova objavite, ali pa vpišite drug kraj in prostor KS odstranite.",
        )
    if status == "pending-room" and booking_id is None:
        if requested_at is not None and now - requested_at > ROOM_ANSWER_WAIT:
            return RoomNotice(
                True,
                "rezervacija prostorov se ni odzvala",
                f"Rezervacija prostorov se na zahtevo za prostor {room_name} ni odzvala (poslana "
                f"{format_local(requested_at)}). Zahteva se je verjetno izgubila. Pošljite jo znova; če se tudi "
                "potem ne odzove, o tem obvestite skrbnika platforme.",
            )
        return RoomNotice(
            False,
            "zahteva za prostor je poslana",
            f"Zahteva za prostor {room_name} je poslana rezervaciji prostorov; odgovor pričakujemo v nekaj minutah.",
        )
    if status == "pending-room":
        return RoomNotice(
            False,
            "čaka na odobritev prostora",
            f"Prostor {room_name} čaka na odobritev krajevne skupnosti. Dogodek bo objavljen, ko ga odobri.",
        )
    if status == "published" and reason:
        return RoomNotice(True, f"prostor: {reason}", f"Prostor {room_name}: {reason}.")
    return None


def format_local(moment: datetime) -> str:
    """`3. 12. 2026 ob 18.00` (Europe/Ljubljana) for staff messages."""
    local = moment.astimezone(TZ)
    return f"{local.day}. {local.month}. {local.year} ob {local.hour}.{local.minute:02d}"


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
    moved: dict[datetime, Occurrence] | None = None,
) -> list[Occurrence]:
    """The dates of an event: one, or a series expanded in Europe/Ljubljana wall-clock
    time (Tuesday 18.00 stays 18.00 across the DST change), without the cancelled ones and
    with single occurrences moved (`moved`: original start -> where it went), in order."""
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
    moves = {k.astimezone(UTC): v for k, v in (moved or {}).items()}
    kept = [moves.get(o.starts_at, o) for o in found if o.starts_at not in skipped]
    return sorted(
        (o for o in kept if (since is None or o.ends_at > since) and (until is None or o.starts_at < until)),
        key=lambda o: o.starts_at,
    )


def parse_moved(values: list[dict[str, str]] | None) -> dict[datetime, Occurrence]:
    """The stored moves (`Event.moved`) as original start -> Occurrence."""
    out: dict[datetime, Occurrence] = {}
    for value in values or []:
        original, starts, ends = (parse_exdates([value[key]])[0] for key in ("original", "starts_at", "ends_at"))
        out[original] = Occurrence(starts, ends)
    return out


def parse_exdates(values: list[str] | list[datetime]) -> list[datetime]:
    out = []
    for value in values:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        out.append(moment.astimezone(UTC))
    return sorted(out)


def control_characters(text: str) -> bool:
    """Does a one-line text (a title, a venue) hold a line break or another control
    character? Such text breaks one-line formats (iCalendar SUMMARY, email subjects)."""
    return any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in text)


def one_line(text: str) -> str:
    """A one-line text with every run of control characters (line breaks, tabs…) as one space."""
    return re.sub(r"[\x00-\x1f\x7f-\x9f]+", " ", text).strip()


def attendance_occurrence(
    dates: list[Occurrence], moved: dict[datetime, Occurrence], now: datetime, wanted: datetime | None
) -> tuple[datetime, Occurrence]:
    """Which date attendance is recorded for: (its name, where it was held). `dates` are the
    series' own dates (or the one date of a single event), named by the start the series gives
    them; `moved` where some of them went. `wanted` names one (by its series start or the
    start it was moved to); None means the latest date that has started. ValueError when there
    is no such date; LookupError when it (or any date, for None) has not started yet."""
    held = [(o.starts_at, moved.get(o.starts_at, o)) for o in dates]
    if wanted is not None:
        wanted = wanted.astimezone(UTC)
        found = [(name, o) for name, o in held if wanted in (name, o.starts_at)]
        if not found:
            raise ValueError(wanted)
        name, occurrence = found[0]
        if occurrence.starts_at > now:
            raise LookupError(occurrence.starts_at)
        return name, occurrence
    started = [(name, o) for name, o in held if o.starts_at <= now]
    if not started:
        raise LookupError(min((o.starts_at for _, o in held), default=None))
    return max(started, key=lambda pair: pair[1].starts_at)


def seat_for_next(capacity: int | None, confirmed: int) -> bool:
    """Does the next registration get a seat? Without a capacity, always."""
    return capacity is None or confirmed < capacity


def seats_to_fill(capacity: int | None, confirmed: int, waiting: int) -> int:
    """How many of the waitlist get a seat now (after a cancellation or more seats)."""
    if capacity is None:
        return waiting
    return max(0, min(waiting, capacity - confirmed))


_MARKDOWN = None
# What an event description may contain on a page: the structure Markdown produces, nothing
# that runs, loads or restyles (no images, no raw HTML, no style or event attributes).
ALLOWED_TAGS = set("p br strong em ul ol li a blockquote code pre h3 h4 h5 h6 hr".split())
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
ALLOWED_URL_SCHEMES = {"http", "https", "mailto", "tel"}


def _markdown():  # noqa: ANN202 - a markdown_it.MarkdownIt, built once
    global _MARKDOWN
    if _MARKDOWN is None:
        from markdown_it import MarkdownIt

        # CommonMark with raw HTML switched off ("js-default"): authors' <tags> stay text;
        # linkify off, typographer off (Slovenian quotes are the author's to type).
        _MARKDOWN = MarkdownIt("js-default", {"breaks": True})
    return _MARKDOWN


def render_description(text: str) -> Markup:
    """The description for a page: Markdown (CommonMark: paragraphs, **bold**, *italics*,
    lists, links; images are dropped), rendered without raw HTML and then sanitised with nh3 against an allow
    list — nothing of the author's can execute, load a resource or restyle the page. Headings
    are shifted down to h3+ so the page's outline stays intact; links open normally and carry
    rel="nofollow noopener"."""
    import nh3

    html_out = _markdown().render(text.replace("\r\n", "\n"))
    html_out = re.sub(r"<(/?)h[12]>", r"<\1h3>", html_out)
    clean = nh3.clean(
        html_out,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=ALLOWED_URL_SCHEMES,
        link_rel="nofollow noopener noreferrer",
    )
    return Markup(clean)


def plain_description(text: str) -> str:
    """The description as plain text (feeds, calendars, SMS/email bodies): Markdown marks
    that carry no meaning in plain text are dropped, the words and link targets kept."""
    tokens = _markdown().parse(text.replace("\r\n", "\n"))
    lines: list[str] = []
    for token in tokens:
        if token.type == "inline" and token.children is not None:
            parts: list[str] = []
            href: str | None = None
            for child in token.children:
                if child.type in ("text", "code_inline", "image"):
                    parts.append(child.content)
                elif child.type in ("softbreak", "hardbreak"):
                    parts.append("\n")
                elif child.type == "link_open":
                    href = str(child.attrs.get("href") or "")
                elif child.type == "link_close" and href:
                    parts.append(f" ({href})")
                    href = None
            prefix = "• " if lines and lines[-1] == "\x00li" else ""
            if lines and lines[-1] == "\x00li":
                lines.pop()
            lines.append(prefix + "".join(parts))
        elif token.type == "list_item_open":
            lines.append("\x00li")
        elif token.type in ("code_block", "fence"):
            lines.append(token.content.rstrip("\n"))
    return "\n\n".join(line for line in lines if line and line != "\x00li")
