"""A room's bookings as iCalendar (RFC 5545), times in Europe/Ljubljana with a VTIMEZONE."""

from __future__ import annotations

from collections.abc import Iterable

from icalendar import Calendar, Event

from shared.models import utcnow

from .domain import TZ
from .models import Booking, Room


def room_ics(room: Room, bookings: Iterable[Booking], base_url: str) -> bytes:
    """Public feed: when the room is taken, never by whom (no personal data)."""
    cal = Calendar()
    cal.add("prodid", "-//Kranj ZA vse//booking//SL")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-calname", f"{room.name} — zasedenost")
    cal.add("x-wr-timezone", "Europe/Ljubljana")
    stamp = utcnow()
    for booking in bookings:
        event = Event()
        event.add("uid", f"booking-{booking.id}@kranj-za-vse")
        event.add("dtstamp", stamp)
        event.add("dtstart", booking.starts_at.astimezone(TZ))
        event.add("dtend", booking.ends_at.astimezone(TZ))
        event.add("summary", "Zasedeno" if booking.status == "confirmed" else "Zasedeno (čaka na potrditev)")
        event.add("location", f"{room.name}, {room.address}")
        event.add("status", "CONFIRMED" if booking.status == "confirmed" else "TENTATIVE")
        event.add("url", f"{base_url}/rooms/{room.id}")
        cal.add_component(event)
    cal.add_missing_timezones()
    return cal.to_ical()
