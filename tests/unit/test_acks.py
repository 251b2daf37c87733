"""The ack window's rules (shared/acks.py), frame by frame, on stand-in messages; the real
broker's side is in tests/integration/test_bus_batches.py."""

from __future__ import annotations

import asyncio
import logging

import pytest

import shared.acks
from shared.acks import AckWindows


class Channel:
    """Records the frames the window sends."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, int, bool]] = []


class Message:
    def __init__(self, channel: Channel, tag: int) -> None:
        self.channel = channel
        self.delivery_tag = tag
        self.locked = False

    async def ack(self, multiple: bool = False) -> None:
        self.channel.frames.append(("ack", self.delivery_tag, multiple))

    async def nack(self, requeue: bool = True, multiple: bool = False) -> None:
        self.channel.frames.append(("nack", self.delivery_tag, multiple))

    def lock(self) -> None:
        self.locked = True


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared.acks, "LINGER", 0.05)
    monkeypatch.setattr(shared.acks, "GIVE_UP", 0.3)


async def handle(acks: AckWindows, messages: list[Message]) -> None:
    """As the Consumer does: the message's window, taken, acked, released."""

    async def one(m: Message) -> None:
        window = acks.window(m)  # type: ignore[arg-type]
        window.take(m)  # type: ignore[arg-type]
        await window.ack(m)  # type: ignore[arg-type]
        window.release(m)  # type: ignore[arg-type]

    await asyncio.gather(*(one(m) for m in messages))


async def test_acks_given_in_one_turn_go_out_as_one_frame_at_the_highest_tag(quick: None) -> None:
    channel, acks = Channel(), AckWindows()
    messages = [Message(channel, tag) for tag in range(1, 6)]
    await handle(acks, messages)
    assert channel.frames == [("ack", 5, True)]
    assert all(m.locked for m in messages)  # FastStream's own ack afterwards does nothing


async def test_a_message_still_in_hand_is_never_covered_and_the_acks_above_it_go_alone(quick: None) -> None:
    channel, acks = Channel(), AckWindows()
    first = Message(channel, 1)
    window = acks.window(first)  # type: ignore[arg-type]
    window.take(first)  # type: ignore[arg-type]
    await handle(acks, [Message(channel, tag) for tag in (2, 3, 4)])  # returns after LINGER
    assert channel.frames == [("ack", 2, False), ("ack", 3, False), ("ack", 4, False)]
    await window.nack(first, requeue=True)  # type: ignore[arg-type]
    window.release(first)  # type: ignore[arg-type]
    await handle(acks, [Message(channel, tag) for tag in (5, 6, 7)])
    assert channel.frames[3:] == [("nack", 1, False), ("ack", 7, True)]
    [window] = acks._windows.values()
    assert window.low == 7 and not window.settled and not window.waiting


async def test_a_delivery_that_never_reaches_the_consumer_ends_coalescing_on_its_channel(
    quick: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Tag 1 was settled by FastStream itself (it never reached a Consumer): the acks above it
    go alone after LINGER, and after GIVE_UP the channel stops waiting for it."""
    caplog.set_level(logging.WARNING, logger="kranj.bus.acks")
    channel, acks = Channel(), AckWindows()
    for tag in (2, 3):
        await handle(acks, [Message(channel, tag)])
    await asyncio.sleep(shared.acks.GIVE_UP)
    await handle(acks, [Message(channel, 4), Message(channel, 5)])  # still waits: tag 1 is open
    await asyncio.sleep(shared.acks.LINGER * 3)
    [window] = acks._windows.values()
    assert not window.coalescing
    assert any("acks go out one by one" in r.getMessage() for r in caplog.records)
    before = len(channel.frames)
    await handle(acks, [Message(channel, 6), Message(channel, 7)])
    assert channel.frames[before:] == [("ack", 6, False), ("ack", 7, False)]  # at once, alone
    assert all(not multiple for *_, multiple in channel.frames)  # tag 1 was never covered
