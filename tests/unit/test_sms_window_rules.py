"""The SMS window (services/notify/window.py): slow start, halving on congestion, additive
increase after it, slow answers count as congestion, refusals of one number count for
nothing, and the bounds hold."""

from __future__ import annotations

from services.notify.window import AdaptiveWindow, Signal


def test_slow_start_doubles_per_round_trip_until_the_ceiling():
    window = AdaptiveWindow(start=4, ceiling=64)
    for _ in range(4):  # one round trip: every request of the window answered fast
        window.record(Signal.OK, 0.1)
    assert window.size == 8
    for _ in range(200):
        window.record(Signal.OK, 0.1)
    assert window.size == 64


def test_congestion_halves_once_per_round_trip_then_growth_is_additive():
    window = AdaptiveWindow(start=32, ceiling=256)
    window.record(Signal.OK, 0.2)
    window.record(Signal.CONGESTION, 0.2)  # a 429
    assert window.size == 16
    window.record(Signal.CONGESTION, 0.2)  # the same burst's other 429s: no second halving
    assert window.size == 16
    for _ in range(16):  # a window's worth of good answers: one more
        window.record(Signal.OK, 0.2)
    assert window.size == 17


def test_a_much_slower_answer_is_congestion_and_a_refused_number_is_nothing():
    window = AdaptiveWindow(start=20, slow_factor=4.0, slow_floor=1.0)
    window.record(Signal.OK, 0.05)
    before = window.size
    window.record(Signal.NEUTRAL, 30.0)  # a 400 for one number, however slow: says nothing
    assert window.size == before
    window.record(Signal.OK, 0.5)  # slower than 4 x 0.05, but under the 1 s floor: fine
    assert window.size == before + 1
    window.record(Signal.OK, 2.5)  # far slower than the best: the gateway is struggling
    assert window.size == (before + 1) // 2


def test_the_floor_holds():
    window = AdaptiveWindow(start=2, floor=1)
    window._last_decrease = -1e9
    for _ in range(10):
        window.record(Signal.CONGESTION, 0.0)
        window._last_decrease = -1e9  # each in its own round trip
    assert window.size == 1


async def test_slots_go_in_order_and_a_cancelled_waiter_keeps_none():
    import asyncio

    window = AdaptiveWindow(start=1, floor=1)
    order: list[str] = []

    async def request(name: str) -> None:
        async with window.slot():
            order.append(name)

    await window.acquire()  # one request in flight: the window (1) is full
    waiting = [asyncio.create_task(request(n)) for n in ("second", "third", "fourth")]
    await asyncio.sleep(0)
    assert window.in_flight == 1 and len(window._waiters) == 3
    waiting[0].cancel()  # gives up while waiting: it took no slot
    await asyncio.gather(waiting[0], return_exceptions=True)
    window.release()  # the request in flight ends: its slot is handed to "third" ...
    waiting[1].cancel()  # ... which is cancelled before it runs: the slot goes on to "fourth"
    await asyncio.gather(*waiting, return_exceptions=True)
    assert order == ["fourth"]
    assert window.in_flight == 0 and not window._waiters
    async with window.slot():  # free at once
        assert window.in_flight == 1 and window.peak == 1
