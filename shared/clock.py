"""The platform's one clock.

Every rule that depends on the time (is the event over, quiet hours, reminders, expiry,
retention) asks `now()`, never `datetime.now()` directly. That is the one seam a test
uses to fix the time inside a process (`frozen(...)`); a test that runs the services as
processes moves the whole system clock with `faketime` instead (`make test-future`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Europe/Ljubljana")

_source: Callable[[], datetime] | None = None


def now() -> datetime:
    """The current instant, timezone-aware, in UTC."""
    if _source is not None:
        return _source()
    return datetime.now(UTC)


def local_now() -> datetime:
    """The current instant in Europe/Ljubljana wall-clock time."""
    return now().astimezone(TZ)


@contextlib.contextmanager
def frozen(at: datetime) -> Iterator[Callable[[timedelta], None]]:
    """Fix `now()` at `at` (timezone-aware) inside the block; yields `advance(delta)`.

    Only code in this process sees it; the broker, the databases and subprocesses keep
    the real clock."""
    global _source
    if at.tzinfo is None:
        raise ValueError("frozen() needs a timezone-aware datetime")
    current = [at.astimezone(UTC)]
    previous = _source

    def advance(delta: timedelta) -> None:
        current[0] = current[0] + delta

    _source = lambda: current[0]  # noqa: E731
    try:
        yield advance
    finally:
        _source = previous
