"""How many SMS are in flight at once: a window that follows the gateway in front of it.

A fixed number (it was 20) is wrong for every gateway but one: a gateway 100 ms away needs
many requests in flight to reach its rate, one that closes each connection or is busy needs
fewer. The window works as TCP's congestion control does (slow start, then AIMD):

- it starts at `start` and grows by one per answer that came back well and fast, doubling
  each round trip, up to `ceiling` — after the first congestion signal it grows only by one
  per window's worth of answers (additive increase);
- it halves on a congestion signal (multiplicative decrease): a 429 or 5xx, a timeout or a
  connection error, or an answer much slower than the best seen (`slow_factor` times the
  best latency, and at least `slow_floor` seconds), never below `floor`;
- answers that say nothing about congestion (a 4xx refusal of one number) leave it as it is.

`KRANJ_SMS_PER_SECOND` still caps the rate on top of it (services/notify/ratelimit.py).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import Enum


class Signal(Enum):
    OK = "ok"  # answered well: the window may grow (if it was fast)
    CONGESTION = "congestion"  # 429, 5xx, timeout, connection error: halve
    NEUTRAL = "neutral"  # says nothing about the gateway's load (a refused number)


class AdaptiveWindow:
    def __init__(
        self,
        *,
        start: int = 8,
        floor: int = 1,
        ceiling: int = 256,
        slow_factor: float = 4.0,
        slow_floor: float = 1.0,
    ) -> None:
        self.limit = float(start)
        self.floor, self.ceiling = floor, ceiling
        self.threshold = float(ceiling)  # slow start until the first congestion signal
        self.slow_factor, self.slow_floor = slow_factor, slow_floor
        self.best: float | None = None  # the best latency seen lately (drifts up slowly)
        self.in_flight = 0
        self.peak = 0  # the most in flight at once (metrics, tests)
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._last_decrease = 0.0

    @property
    def size(self) -> int:
        return max(self.floor, int(self.limit))

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for room in the window; hold it while the request is in flight."""
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    async def acquire(self) -> None:
        """Wait for room in the window (`release` gives it back): what `slot` does, without
        building a context manager per SMS."""
        # A counter and a queue of waiters, first come first served (an asyncio.Condition
        # re-checked its predicate and took its lock twice per SMS: 4 % of notify's CPU in a
        # fan-out, make bench). A waiter is handed its slot by `_wake` (counted there).
        if not self._waiters and self.in_flight < self.size:
            self.in_flight += 1
        else:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():  # handed a slot, then cancelled
                    self.release()
                else:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
                raise
        self.peak = max(self.peak, self.in_flight)

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        """Hand the room there is (the window may have grown) to the first waiters."""
        while self._waiters and self.in_flight < self.size:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    def record(self, signal: Signal, seconds: float) -> None:
        """What one answer says about the gateway, and how long it took."""
        if signal is Signal.NEUTRAL:
            return
        slow = self.best is not None and seconds > max(self.slow_floor, self.slow_factor * self.best)
        if signal is Signal.OK:
            self.best = seconds if self.best is None else min(self.best * 1.01, seconds)
        if signal is Signal.CONGESTION or slow:
            now = time.monotonic()
            # Once per round trip: the answers of one burst that all saw the same congestion
            # halve the window once, not once each.
            if now - self._last_decrease >= (self.best or 0.0):
                self.threshold = max(float(self.floor), self.limit / 2)
                self.limit = self.threshold
                self._last_decrease = now
        elif self.limit < self.threshold:
            self.limit = min(float(self.ceiling), self.limit + 1)  # slow start: doubles per round trip
        else:
            self.limit = min(float(self.ceiling), self.limit + 1 / self.limit)  # additive increase
        # No wake-up needed here: the answer's slot is released right after, and that
        # wakes the waiters, who then see the new size.
