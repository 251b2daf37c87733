"""Times for tests, always built from the platform clock (`shared.clock`), never literal
dates: a literal date expires (main's suite broke on 2026-12-03 that way), and
`make test-future` runs the suite a year ahead to prove none is left."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from services.booking.domain import holiday_name
from shared import clock

TZ = clock.TZ


def local_day(days: int = 0, hour: int = 18, minute: int = 0) -> datetime:
    """`hour:minute` in Kranj, `days` days from today (Europe/Ljubljana), timezone-aware."""
    day = clock.local_now().date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ)


def weekday_ahead(weekday: int, *, weeks: int = 1, hour: int = 18, minute: int = 0) -> datetime:
    """The `weekday` (Monday 0 … Sunday 6) in the week `weeks` weeks after this one, at
    `hour:minute` in Kranj: always 1 to 13 days ahead when `weeks` is 1."""
    today = clock.local_now().date()
    monday = today - timedelta(days=today.weekday()) + timedelta(weeks=weeks)
    day = monday + timedelta(days=weekday)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ)


# The seeded KS rooms hold KS office hours 17.00-19.00 on Monday and Wednesday or on Tuesday
# and Thursday (booking migration 0002), and a room is closed on public holidays: a request
# on a weekday picked by the date alone was refused on some days of the week (CI, a Monday).
# Friday evenings are free in every KS room.
FRIDAY = 4


def day_ahead(days: int, weekday: int | None = None) -> date:
    """The first day at least `days` after today (Ljubljana) that is on `weekday` (0 =
    Monday) when given, and no public holiday: a day a room can be booked."""
    day = clock.local_now().date() + timedelta(days=days)
    while (weekday is not None and day.weekday() != weekday) or holiday_name(day):  # the booking service's own calendar
        day += timedelta(days=1)
    return day


def iso(moment: datetime) -> str:
    """RFC 3339 with the offset (`Z` for UTC), as the API and messages expect."""
    text = moment.isoformat()
    return text.replace("+00:00", "Z") if moment.utcoffset() == timedelta(0) else text


def utc_iso(moment: datetime | None = None) -> str:
    """`moment` (default now) in UTC as RFC 3339 with `Z`."""
    return iso((moment or clock.now()).astimezone(UTC))
