"""An announced event's dates on the noticeboard (pure, no I/O): the events service sends
every date of an event already expanded (`EventPublished.dates`, `EventChanged.dates`);
notify keeps them on the notice (`Notice.dates`) so a weekly event stays on the board until
its last date, a card shows its next date, and the weekly bulletin lists the dates of its
week. A notice from before the dates were sent has its one date `starts_at`–`ends_at`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from shared.contracts.events import EventDate


class Dated(Protocol):
    """What a notice or a draft has of an event's time."""

    starts_at: datetime | None
    ends_at: datetime | None
    dates: list[list[str]]


@dataclass(frozen=True)
class Date:
    starts_at: datetime
    ends_at: datetime


def stored(dates: Sequence[EventDate], starts_at: datetime, ends_at: datetime) -> list[list[str]]:
    """The message's dates as the notice keeps them (UTC ISO 8601 pairs, in order); a
    message without dates (an older sender) has its one date."""
    pairs = [(d.starts_at, d.ends_at) for d in dates] or [(starts_at, ends_at)]
    return [[start.astimezone(UTC).isoformat(), end.astimezone(UTC).isoformat()] for start, end in sorted(pairs)]


def dates_of(notice: Dated) -> list[Date]:
    """Every date of an event notice, in order; none for a notice that is not an event."""
    if notice.dates:
        return [Date(datetime.fromisoformat(start), datetime.fromisoformat(end)) for start, end in notice.dates]
    if notice.starts_at is None:
        return []
    return [Date(notice.starts_at, notice.ends_at or notice.starts_at)]


def last_end(notice: Dated) -> datetime | None:
    """When the event's last date ends: until then it stays on the board."""
    dates = dates_of(notice)
    return max(d.ends_at for d in dates) if dates else None


def next_date(notice: Dated, now: datetime) -> Date | None:
    """The date on now or next (one that has not ended yet)."""
    return next((d for d in dates_of(notice) if d.ends_at > now), None)


def dates_between(notice: Dated, since: datetime, until: datetime) -> list[Date]:
    """The dates that overlap [since, until)."""
    return [d for d in dates_of(notice) if d.ends_at > since and d.starts_at < until]


def coming(notice: Dated, now: datetime) -> int:
    """How many dates have not ended yet (the card says how many are left of a series)."""
    return sum(1 for d in dates_of(notice) if d.ends_at > now)
