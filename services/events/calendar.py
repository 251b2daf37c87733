"""Published events as iCalendar (RFC 5545, VTIMEZONE Europe/Ljubljana, recurring events
as RRULE + EXDATE) and as an Atom feed of new events. No personal data in either.

Every calendar has at least one component: the VTIMEZONE of Europe/Ljubljana is always
there, also for a KS without events (RFC 5545 3.6: a VCALENDAR holds one or more
components). Each VEVENT (and each RECURRENCE-ID override) carries the event's SEQUENCE,
which grows with every change of time, dates, place or title and on cancelling, so calendar
apps replace their copy. Text goes in as `vText` (escaped), one-line values with any
control characters as spaces: no title or venue can break the file."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from feedgen.feed import FeedGenerator
from icalendar import Calendar, Timezone, vDDDTypes, vRecur, vText
from icalendar import Event as VEvent

from shared.contracts import ks_name
from shared.i18n import format_span
from shared.models import utcnow

from .domain import TZ, one_line, plain_description
from .models import Event
from .repository import exdates_of, moved_of


def _vevent(event: Event, base_url: str, stamp: datetime, *, recurrence: bool = True) -> VEvent:
    item = VEvent()
    item.add("uid", f"event-{event.id}@kranj-za-vse")
    item.add("dtstamp", stamp)
    item.add("dtstart", event.starts_at.astimezone(TZ))
    item.add("dtend", event.ends_at.astimezone(TZ))
    item.add("sequence", event.sequence or 0)
    item.add("summary", vText(one_line(event.title)))
    text = "\n\n".join(
        p
        for p in (plain_description(event.description), f"Organizator: {event.organiser}" if event.organiser else "")
        if p
    )
    if text:
        item.add("description", vText(_text(text)))
    item.add("location", vText(one_line(event.venue)))
    item.add("url", f"{base_url}/events/{event.id}")
    item.add("status", "CANCELLED" if event.status == "cancelled" else "CONFIRMED")
    item.add(
        "categories",
        [f"KS {ks_name(event.ks)}" if event.ks != "*" else "Mestna občina Kranj", *(one_line(t) for t in event.topics)],
    )
    if event.updated_at:
        item.add("last-modified", event.updated_at)
    if event.rrule and recurrence:
        item.add("rrule", vRecur.from_ical(_ics_rrule(event.rrule)))
        for moment in exdates_of(event):
            item.add("exdate", moment.astimezone(TZ))
    return item


def _moved_vevents(event: Event, base_url: str, stamp: datetime) -> list[VEvent]:
    """One VEVENT per moved occurrence: the same UID, RECURRENCE-ID = the start the series
    gives it, DTSTART/DTEND = where it went (RFC 5545 3.8.4.4)."""
    if not event.rrule:
        return []
    out = []
    for original, moved in moved_of(event).items():
        item = _vevent(event, base_url, stamp, recurrence=False)
        item.add("recurrence-id", original.astimezone(TZ))
        item["dtstart"] = vDDDTypes(moved.starts_at.astimezone(TZ))
        item["dtend"] = vDDDTypes(moved.ends_at.astimezone(TZ))
        out.append(item)
    return out


def _text(text: str) -> str:
    """Several lines of text: line breaks kept (vText escapes them), other controls dropped."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(one_line(line) if line.strip() else "" for line in lines)


def _ics_rrule(rule: str) -> str:
    """UNTIL in a feed must be UTC when DTSTART has a TZID (RFC 5545 3.3.10)."""
    parts = []
    for part in rule.split(";"):
        key, _, value = part.partition("=")
        if key.upper() == "UNTIL" and not value.upper().endswith("Z"):
            local = datetime.strptime(value if "T" in value else value + "T235959", "%Y%m%dT%H%M%S")
            value = local.replace(tzinfo=TZ).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        parts.append(f"{key}={value}")
    return ";".join(parts)


def events_ics(events: Iterable[Event], base_url: str, name: str) -> bytes:
    cal = Calendar()
    cal.add("prodid", "-//Kranj ZA vse//events//SL")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", vText(one_line(name)))
    cal.add("x-wr-timezone", "Europe/Ljubljana")
    stamp = utcnow()
    for event in events:
        cal.add_component(_vevent(event, base_url, stamp))
        for component in _moved_vevents(event, base_url, stamp):
            cal.add_component(component)
    cal.add_missing_timezones()
    if not cal.walk("VTIMEZONE"):  # no events: the calendar still has its time zone (RFC 5545 3.6)
        cal.add_component(Timezone.from_tzid("Europe/Ljubljana"))
    return cal.to_ical()


def events_atom(events: list[Event], base_url: str, *, title: str, self_url: str) -> bytes:
    """Newest published first."""
    feed = FeedGenerator()
    feed.id(self_url)
    feed.title(title)
    feed.language("sl")
    feed.link(href=f"{base_url}/events", rel="alternate")
    feed.link(href=self_url, rel="self")
    feed.author({"name": "Kranj ZA vse"})
    newest = max((e.published_at or e.created_at for e in events), default=utcnow())
    feed.updated(newest)
    for event in sorted(events, key=lambda e: e.published_at or e.created_at):
        entry = feed.add_entry()
        url = event_url_from_base(base_url, event.id)
        entry.id(url)
        entry.title(event.title)
        entry.link(href=url)
        entry.published(event.published_at or event.created_at)
        entry.updated(event.updated_at or event.published_at or event.created_at)
        where = f"KS {ks_name(event.ks)}" if event.ks != "*" else "Mestna občina Kranj"
        summary = f"{format_span(event.starts_at, event.ends_at)} · {event.venue} · {where}"
        if event.rrule:
            summary += " · ponavlja se"
        entry.summary(summary)
        if event.description:
            entry.content(plain_description(event.description), type="text")
    return feed.atom_str(pretty=True)


def event_url_from_base(base_url: str, event_id: str) -> str:
    return f"{base_url}/events/{event_id}"
