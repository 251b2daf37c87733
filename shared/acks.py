"""One `basic.ack` for many deliveries: a channel's acks, coalesced (issue 20, ingest).

The Consumer's group commit (shared/inbox.py) stores up to a prefetch of messages in one
transaction; each was then acked with a frame of its own: one socket write per message on
our side, one ack to process per message on the broker's. Here the acks that a channel's
handlers give in the same turn of the event loop go out as ONE `basic.ack(multiple=True)`
at the highest delivery tag.

Why that never acks a message that is still being handled: RabbitMQ numbers a channel's
deliveries 1, 2, 3, … with no gaps (every consumer on the channel shares the sequence), and
`multiple=True` acks every outstanding delivery up to the tag. So a multiple ack goes out
only up to `low`, the highest tag with EVERY tag up to it settled through this window:
acked, or nacked/rejected/acked alone. A tag not settled yet (a handler still storing it, a
retry waiting before its nack, a delivery that has not reached the Consumer) stops `low`,
and the acks above it wait:

- at most `LINGER` seconds; then each is acked alone, as before this window existed, so a
  slow message never holds back the prefetch of the messages after it;
- a tag that is in no handler (FastStream settled it itself, say one it could not parse,
  or its handler was cancelled) and stays so for `GIVE_UP` seconds ends coalescing on that
  channel: every ack goes alone from then on. Slower, never wrong. A reconnect opens a new
  channel, with a new sequence and a new window.

Every ack and nack of the Consumer goes through here (`AckWindows`), and each returns
only once its frame is written, as `message.ack()` did, so a stopping service's graceful
wait still covers them.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiormq

log = logging.getLogger("kranj.bus.acks")

LINGER = 0.2  # seconds an ack waits above an unsettled tag before it is sent alone
GIVE_UP = 30.0  # seconds a tag may stay unsettled outside every handler before coalescing ends


@dataclass
class _Waiting:
    message: aio_pika.IncomingMessage
    done: asyncio.Future[None]
    since: float


@dataclass
class AckWindow:
    """The deliveries of one channel: in a handler, waiting for their ack, settled."""

    low: int = 0  # every delivery tag <= low is settled (or covered by an ack being written)
    in_hand: set[int] = field(default_factory=set)  # in a Consumer, not settled yet
    waiting: dict[int, _Waiting] = field(default_factory=dict)  # acked by a handler, frame not sent
    settled: set[int] = field(default_factory=set)  # tags above `low` settled alone
    coalescing: bool = True
    multiple_acks: int = 0  # frames that acked more than one delivery
    _stray: tuple[int, float] | None = None  # (tag, since): `low + 1`, in no handler
    _flush_soon: bool = False
    _linger: asyncio.TimerHandle | None = None
    _writing: set[asyncio.Task[None]] = field(default_factory=set)

    def take(self, message: aio_pika.IncomingMessage) -> None:
        """A handler has the message: its tag is legitimately unsettled for now."""
        if self.coalescing and message.delivery_tag is not None and message.delivery_tag > self.low:
            self.in_hand.add(message.delivery_tag)

    def release(self, message: aio_pika.IncomingMessage) -> None:
        """The handler is done with it, settled or not (cancelled)."""
        self.in_hand.discard(message.delivery_tag)

    async def ack(self, message: aio_pika.IncomingMessage) -> None:
        tag = message.delivery_tag
        if not self.coalescing or tag is None or tag <= self.low or tag in self.waiting:
            await self.alone(message, "ack")
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self.waiting[tag] = _Waiting(message, done, loop.time())
        self.in_hand.discard(tag)
        self._soon()
        await done

    async def nack(self, message: aio_pika.IncomingMessage, *, requeue: bool) -> None:
        await self.alone(message, "nack", requeue=requeue)

    async def alone(self, message: aio_pika.IncomingMessage, how: str, **kwargs: Any) -> None:
        """`how` is "ack", "nack" or "reject": sent at once in a frame of its own."""
        await getattr(message, how)(**kwargs)
        tag = message.delivery_tag
        self.in_hand.discard(tag)
        if self.coalescing and tag is not None and tag > self.low:
            self.settled.add(tag)
            if self.waiting:
                self._soon()

    def _soon(self) -> None:
        if not self._flush_soon:
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Send one ack up to `low`, for every waiting ack that `low` passed."""
        self._flush_soon = False
        top = None
        while True:
            nxt = self.low + 1
            if nxt in self.waiting:
                top = nxt
            elif nxt in self.settled:
                self.settled.discard(nxt)
            else:
                break
            self.low = nxt
        if top is not None:
            covered = [self.waiting.pop(tag) for tag in sorted(t for t in self.waiting if t <= top)]
            self._write(covered)
        if self.waiting and self._linger is None:
            self._linger = asyncio.get_running_loop().call_later(LINGER, self._lingered)

    def _lingered(self) -> None:
        """Acks that waited `LINGER` go out alone; a stray tag below them may end coalescing."""
        self._linger = None
        self._flush()
        if not self.waiting:
            return
        now = asyncio.get_running_loop().time()
        gap = self.low + 1
        if gap in self.in_hand:
            self._stray = None
        elif self._stray is None or self._stray[0] != gap:
            self._stray = (gap, now)
        elif now - self._stray[1] >= GIVE_UP:
            log.warning(
                "delivery %d of a channel was settled outside the Consumer or not at all for %.0f s:"
                " its acks go out one by one from now on",
                gap,
                GIVE_UP,
            )
            self.coalescing = False
        for tag in sorted(self.waiting):
            if self.coalescing and now - self.waiting[tag].since < LINGER:
                continue
            self._write([self.waiting.pop(tag)])  # settled once written
        if not self.coalescing:
            self.settled.clear()
            self.in_hand.clear()
        if self.waiting:
            self._linger = asyncio.get_running_loop().call_later(LINGER, self._lingered)

    def _write(self, covered: list[_Waiting]) -> None:
        """One frame acks `covered` (its last has the highest tag); each waiting handler
        resumes with the frame's outcome, as if it had sent its own. Frames go out in the
        order of these calls (each task queues its frame at its first step)."""
        if len(covered) > 1:
            self.multiple_acks += 1
        task = asyncio.ensure_future(self._ack(covered))
        self._writing.add(task)
        task.add_done_callback(self._writing.discard)

    async def _ack(self, covered: list[_Waiting]) -> None:
        last = covered[-1].message
        try:
            await last.ack(multiple=len(covered) > 1)
        except Exception as exc:  # noqa: BLE001 - each handler raises what its own ack would have
            for entry in covered:
                if not entry.done.done():
                    entry.done.set_exception(exc)
            return
        except BaseException:
            for entry in covered:
                entry.done.cancel()
            raise
        if len(covered) == 1 and self.coalescing and last.delivery_tag is not None and last.delivery_tag > self.low:
            self.settled.add(last.delivery_tag)  # acked alone after lingering: `low` may pass it now
            if self.waiting:
                self._soon()
        for entry in covered:
            entry.message.lock()  # acked: FastStream's ack after the handler returns is then a no-op
            if not entry.done.done():
                entry.done.set_result(None)


class AckWindows:
    """One `AckWindow` per channel of the service's broker connection (one per Bus)."""

    def __init__(self) -> None:
        self._windows: weakref.WeakKeyDictionary[aiormq.abc.AbstractChannel, AckWindow] = weakref.WeakKeyDictionary()

    def window(self, message: aio_pika.IncomingMessage) -> AckWindow | Direct:
        """The window of the message's channel (a Consumer looks it up once per message);
        `Direct` acks once that channel is closed (they raise, as they always did)."""
        try:
            channel = message.channel
        except aiormq.exceptions.ChannelInvalidStateError:
            return DIRECT
        window = self._windows.get(channel)
        if window is None:
            window = self._windows[channel] = AckWindow()
        return window


class Direct:
    """Each ack and nack at once, on the message itself: for a channel already closed."""

    def take(self, message: aio_pika.IncomingMessage) -> None:
        pass

    def release(self, message: aio_pika.IncomingMessage) -> None:
        pass

    async def ack(self, message: aio_pika.IncomingMessage) -> None:
        await message.ack()

    async def nack(self, message: aio_pika.IncomingMessage, *, requeue: bool) -> None:
        await message.nack(requeue=requeue)


DIRECT = Direct()
