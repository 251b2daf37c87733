"""A small async rate limiter: sends spaced evenly at `rate` per second (GCRA: a token bucket
of depth one, with a tolerance of SLACK seconds). Per process: two notify replicas each send
at `rate`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

# A wait shorter than this is not slept: the caller goes at once, a little before its slot.
# The slots themselves stay `interval` apart, so the rate over any stretch longer than this is
# kept; only a burst of at most SLACK × rate goes early. A sleep that short is below what the
# event loop's timers resolve and cost a timer and a wake-up per SMS at a high rate (make
# bench, issue 20 §3).
SLACK = 0.001


class RateLimiter:
    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.interval = 1.0 / rate
        self._clock = clock
        self._next = 0.0

    async def acquire(self) -> None:
        """Wait for this caller's slot. Slots are handed out in call order, without a lock:
        the reservation happens before the first await, so concurrent callers queue up."""
        now = self._clock()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot - now > SLACK:
            await asyncio.sleep(slot - now)
