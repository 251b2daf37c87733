"""notify's per-process send limit (services/notify/ratelimit.py): slots `1 / rate` apart in
call order; a wait shorter than SLACK is not slept, and the rate holds all the same."""

from __future__ import annotations

import asyncio

import pytest

from services.notify import ratelimit
from services.notify.ratelimit import SLACK, RateLimiter


class Clock:
    """A clock that moves only when the limiter sleeps (or the test moves it)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(ratelimit.asyncio, "sleep", c.sleep)
    return c


def test_a_low_rate_sleeps_each_caller_to_its_slot(clock: Clock) -> None:
    limiter = RateLimiter(10, clock=clock)
    starts = []

    async def sends() -> None:
        for _ in range(5):
            await limiter.acquire()
            starts.append(clock.now)

    asyncio.run(sends())
    assert [round(t - starts[0], 6) for t in starts] == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert len(clock.sleeps) == 4


def test_a_high_rate_skips_sleeps_shorter_than_the_slack_but_keeps_the_rate(clock: Clock) -> None:
    rate = 100_000.0  # slots 10 us apart: a sleep for each would be far below the loop's timers
    limiter = RateLimiter(rate, clock=clock)
    starts = []

    async def sends(n: int) -> None:
        for _ in range(n):
            await limiter.acquire()
            starts.append(clock.now)

    burst = int(SLACK * rate)  # this many go at once, without a sleep
    asyncio.run(sends(burst))
    assert clock.sleeps == [] and len(set(starts)) == 1
    asyncio.run(sends(1000))  # then each waits until it is within SLACK of its slot
    assert clock.sleeps and all(s > SLACK for s in clock.sleeps)
    total = len(starts)
    # Never ahead of the rate by more than the slack: the n-th send at least (n - 1) slots
    # after the first, less SLACK.
    for n, at in enumerate(starts):
        assert at - starts[0] >= n / rate - SLACK - 1e-9, n
    assert starts[-1] - starts[0] >= (total - 1) / rate - SLACK - 1e-9


def test_concurrent_callers_queue_in_call_order(clock: Clock) -> None:
    limiter = RateLimiter(2, clock=clock)
    order: list[int] = []

    async def caller(i: int) -> None:
        await limiter.acquire()
        order.append(i)

    async def main() -> None:
        await asyncio.gather(*(caller(i) for i in range(4)))

    asyncio.run(main())
    assert order == [0, 1, 2, 3]
