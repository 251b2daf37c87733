"""Room-use figures for staff: confirmed bookings per room and week or month (count, hours,
hours outside the KS office hours, attendees, by category and by kind of group), and the
same as CSV for a Slovenian Excel. Also the Slovenian names of the categories and groups."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date
from typing import Any, Literal

from . import domain
from .domain import Interval, Rules
from .models import Booking, Room
from .rooms import KS_ORDER


def figures(rows: list[tuple[Booking, Room]], period: Literal["week", "month"]) -> list[dict[str, Any]]:
    """Room use per room and period (confirmed bookings): count, hours, hours outside the KS
    office hours, and counts by category and by kind of group."""
    groups: dict[tuple[str, date], dict[str, Any]] = {}
    by_category: dict[tuple[str, date], Counter[str]] = defaultdict(Counter)
    by_group: dict[tuple[str, date], Counter[str]] = defaultdict(Counter)
    for booking, room in rows:
        if booking.status != "confirmed":
            continue
        key = (room.id, domain.period_start(booking.starts_at, period))
        slot = Interval(booking.starts_at, booking.ends_at)
        entry = groups.setdefault(
            key,
            {
                "room_id": room.id,
                "room_name": room.name,
                "ks": room.ks,
                "period": period,
                "period_start": key[1].isoformat(),
                "bookings": 0,
                "hours": 0.0,
                "hours_outside_office_hours": 0.0,
                "attendees": 0,
            },
        )
        entry["bookings"] += 1
        entry["hours"] += slot.duration.total_seconds() / 3600
        entry["hours_outside_office_hours"] += domain.hours_outside_office(Rules.from_room(room), slot)
        entry["attendees"] += booking.attendees
        by_category[key][booking.category] += 1
        by_group[key][booking.group_kind] += 1
    out = []
    for key in sorted(groups, key=lambda k: (KS_ORDER.get(groups[k]["ks"], 99), k[0], k[1])):
        entry = groups[key]
        entry["hours"] = round(entry["hours"], 2)
        entry["hours_outside_office_hours"] = round(entry["hours_outside_office_hours"], 2)
        entry["by_category"] = dict(sorted(by_category[key].items()))
        entry["by_group_kind"] = dict(sorted(by_group[key].items()))
        out.append(entry)
    return out


CATEGORY_SL = {
    "social": "druženje",
    "education": "izobraževanje, delavnice",
    "culture": "kultura",
    "sport": "šport in rekreacija",
    "meeting": "sestanek",
    "other": "drugo",
}
GROUP_SL = {
    "individual": "posameznik",
    "association": "društvo",
    "informal-group": "neformalna skupina",
    "ks": "krajevna skupnost",
    "public-body": "javni zavod",
    "other": "drugo",
}


def _num(value: float) -> str:
    return f"{value:.2f}".replace(".", ",")  # a Slovenian Excel reads a decimal comma


FIGURES_CSV_HEADER = [
    "KS",
    "prostor",
    "obdobje",
    "začetek obdobja",
    "število rezervacij",
    "ur skupaj",
    "ur izven uradnih ur",
    "udeležencev",
    *(f"namen: {CATEGORY_SL[c]}" for c in CATEGORY_SL),
    *(f"skupina: {GROUP_SL[g]}" for g in GROUP_SL),
]


def figures_csv_rows(rows: list[dict[str, Any]]) -> list[list[object]]:
    """The rows of `figures.csv` (decimal commas: a Slovenian Excel reads them as numbers);
    written by the platform's one CSV writer (shared.web.csv_export), which keeps a room
    named like a formula as text."""
    return [
        [
            row["ks"],
            row["room_name"],
            "teden" if row["period"] == "week" else "mesec",
            row["period_start"],
            row["bookings"],
            _num(row["hours"]),
            _num(row["hours_outside_office_hours"]),
            row["attendees"],
            *(row["by_category"].get(c, 0) for c in CATEGORY_SL),
            *(row["by_group_kind"].get(g, 0) for g in GROUP_SL),
        ]
        for row in rows
    ]
