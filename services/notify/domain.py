"""Pure rules of notify: quiet hours, retry backoff, phone numbers. No I/O."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta

from shared.contact import normalise_phone
from shared.i18n import TZ

__all__ = ["normalise_phone", "quiet_until", "retry_delay"]


def quiet_until(now: datetime, window: tuple[time, time] | None) -> datetime | None:
    """If `now` falls in the quiet window (Europe/Ljubljana), when it ends (UTC); else None.

    The window may cross midnight ("21:00-07:00"). The end is computed in local wall time,
    so it stays 07:00 local across a DST switch.
    """
    if window is None:
        return None
    start, end = window
    if start == end:
        return None
    local_now = now.astimezone(TZ)
    t = local_now.timetz().replace(tzinfo=None)
    if start < end:
        inside = start <= t < end
        end_day = local_now.date()
    else:  # crosses midnight
        inside = t >= start or t < end
        end_day = local_now.date() + timedelta(days=1) if t >= start else local_now.date()
    if not inside:
        return None
    return datetime.combine(end_day, end, tzinfo=TZ).astimezone(UTC)


def retry_delay(attempts: int, base_seconds: float, *, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with full jitter in [0.5, 1.0] of the step, capped at one hour."""
    step = min(3600.0, base_seconds * 2 ** max(0, attempts - 1))
    jitter = (rng or random).uniform(0.5, 1.0)
    return timedelta(seconds=step * jitter)
