"""Helpers shared by the booking tests (not a test module)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from support.times import day_ahead

from services.booking import domain


def future_day(weekday: int, min_days: int = 10) -> date:
    """The first `weekday` (0 = Monday) at least `min_days` ahead that is no public holiday."""
    return day_ahead(min_days, weekday)


def local(day: date, hhmm: str) -> datetime:
    return domain.local_instant(day, domain.parse_hhmm(hhmm)).astimezone(UTC)


def booking_body(day: date, start: str = "18:00", end: str = "20:00", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "room_id": "ks-primskovo",
        "starts_at": local(day, start).isoformat(),
        "ends_at": local(day, end).isoformat(),
        "purpose": "Vaje pevskega zbora",
        "category": "culture",
        "group_kind": "association",
        "name": "Mojca Novak",
        "email": "mojca@example.si",
        "phone": "040 123 456",
        "attendees": 12,
    }
    body.update(overrides)
    return body
