"""A small async rate limiter: sends spaced evenly at `rate` per second (a token bucket of
depth one, i.e. GCRA). Per process: two notify replicas each send at `rate`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


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
        if slot > now:
            await asyncio.sleep(slot - now)
