"""The Consumer's group commit gathers its batch (shared.inbox.Consumer._gather): the
deliveries that keep arriving over the next turns of the event loop join the first one's
transaction, as the broker streams what an ack frees; a lone delivery waits one turn only;
what arrives after a pause (the loop idle) is the next batch; and a batch never grows past
the batch limit."""

from __future__ import annotations

import asyncio
from typing import Any

from shared.inbox import GATHER_TURNS, Consumer
from shared.topology import QUEUES


class Batches(Consumer):
    """The real gathering and batching; each batch recorded instead of committed."""

    def __init__(self, batch_limit: int = 100) -> None:
        super().__init__(bus=None, spec=QUEUES["notify.on-notice-requested"], handles=())  # type: ignore[arg-type]
        self.batch_limit = batch_limit
        self.batches: list[list[str]] = []

    async def _handle_batch(self, batch: list[tuple[Any, Any, Any, asyncio.Future[str]]]) -> None:
        self.batches.append([envelope for envelope, *_ in batch])
        await asyncio.sleep(0.005)  # a commit takes a while
        for *_, done in batch:
            done.set_result("processed")


def arrive_over_turns(consumer: Batches, names: list[str], per_turn: int) -> list[asyncio.Task[str]]:
    """`per_turn` deliveries start in each turn of the loop, one turn after another (as a
    stream of frames is read), the first now."""
    tasks: list[asyncio.Task[str]] = []
    loop = asyncio.get_running_loop()

    def start(first: int) -> None:
        for name in names[first : first + per_turn]:
            tasks.append(asyncio.ensure_future(consumer._handle(name, None, None)))  # type: ignore[arg-type]
        if first + per_turn < len(names):
            loop.call_soon(start, first + per_turn)

    start(0)
    return tasks


async def test_deliveries_arriving_over_the_next_turns_share_the_first_ones_batch() -> None:
    consumer = Batches()
    names = [f"m{i}" for i in range(30)]
    tasks = arrive_over_turns(consumer, names, per_turn=3)  # 10 turns: within GATHER_TURNS
    assert 10 < GATHER_TURNS
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert consumer.batches == [names]


async def test_a_lone_delivery_waits_one_turn_and_one_after_a_pause_is_the_next_batch() -> None:
    consumer = Batches()
    first = asyncio.ensure_future(consumer._handle("alone", None, None))  # type: ignore[arg-type]
    await asyncio.wait_for(first, 5)
    await asyncio.sleep(0.02)  # the loop idle: nothing is arriving
    later = arrive_over_turns(consumer, ["a", "b", "c", "d"], per_turn=2)
    await asyncio.wait_for(asyncio.gather(*later), 5)
    assert consumer.batches == [["alone"], ["a", "b", "c", "d"]]


async def test_a_batch_stops_growing_at_the_limit_and_the_rest_follow_in_the_next() -> None:
    consumer = Batches(batch_limit=8)
    names = [f"m{i}" for i in range(20)]
    tasks = arrive_over_turns(consumer, names, per_turn=4)
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert [len(b) for b in consumer.batches][0] == 8
    assert all(len(b) <= 8 for b in consumer.batches)
    assert [n for b in consumer.batches for n in b] == names  # each once, in order
