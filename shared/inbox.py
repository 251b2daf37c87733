"""The idempotent inbox: a `Consumer` takes messages off one queue, parses and checks
them, handles each once per (consumer, source, id) in a database transaction, acks only
after that commit, and dead-letters what can never succeed, with the reason.

A message that can never succeed (not JSON, broken envelope, schema failure, unknown KS,
beyond its sender's rights, a handler failing `HANDLER_ATTEMPTS` times) is copied to
`kranj.dead` with the reason in its headers and announced as `bus.message.rejected`
*before* it is acked. Who sent a message decides what it may do: the AMQP `user_id` the
broker validated, matched against the registry of senders (shared/senders.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aio_pika
import sqlalchemy as sa
from faststream.rabbit import RabbitBroker
from faststream.rabbit.annotations import RabbitMessage
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from . import broker as safe_publishing
from .acks import AckWindows
from .broker import publish_envelope
from .contracts import MESSAGE_REJECTED, CloudEvent, MessageRejected, MessageType, Rejection, parse_data, parse_envelope
from .db import Database
from .dead_letters import best_effort_meta, dead_letter_headers
from .metrics import HANDLER_SECONDS, MESSAGES_CONSUMED, type_label
from .models import ProcessedMessage, table_of, utcnow
from .senders import SenderRegistry
from .topology import DLX, QueueSpec

log = logging.getLogger("kranj.bus")

HANDLER_ATTEMPTS = 5  # a handler that raised this many times is dead-lettered by us, with the reason


class ConsumerHost(Protocol):
    """What a Consumer needs of the service's bus (shared/bus.py `Bus`)."""

    service: str
    db: Database
    senders: SenderRegistry
    acks: AckWindows

    async def dead_letter(self, raw: aio_pika.IncomingMessage, reason: str, *, queue: str) -> None: ...


HandlerFunc = Callable[[AsyncSession, CloudEvent, Any], Awaitable[None]]


@dataclass(frozen=True)
class Handles:
    """`func(session, envelope, data)` handles `message_type`; the caller commits."""

    message_type: MessageType
    func: HandlerFunc


def already_processed(consumer: str, batch: Sequence[tuple[CloudEvent, Any, Any, Any]]) -> Any:
    """The query for the (source, id) pairs of `batch` this consumer has handled before, and
    perhaps a few it has not that are not in `batch` (the source of one message with the id
    of another: harmless, the caller asks of each message's own pair). Asked as
    `source IN (…) AND message_id IN (…)`, it walks the primary key (consumer, source,
    message_id), one lookup per pair. The same question as a row value, `(source,
    message_id) IN (VALUES …)`, read every row of the consumer on SQLite: each batch cost
    more the longer the inbox (5 ms a batch at 40,000 rows; tests/integration/test_inbox_lookup.py)."""
    return select(ProcessedMessage.source, ProcessedMessage.message_id).where(
        ProcessedMessage.consumer == consumer,
        col(ProcessedMessage.source).in_({envelope.source for envelope, *_ in batch}),
        col(ProcessedMessage.message_id).in_({envelope.id for envelope, *_ in batch}),
    )


@dataclass
class Consumer:
    """Takes messages off one queue: decode, dedupe, handle in one transaction, then ack."""

    bus: ConsumerHost
    spec: QueueSpec
    handles: tuple[Handles, ...]
    by_type: dict[str, Handles] = field(init=False)
    # Group commit: deliveries handled at the same time (up to the prefetch) share one
    # transaction, each with its own inbox row; each is acked only after that commit. A batch
    # that fails in any way is rolled back and its messages are handled one by one as before.
    batch_limit: int = 100
    _pending: list[tuple[CloudEvent, Handles, Any, asyncio.Future[str]]] = field(init=False, default_factory=list)
    _leading: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.by_type = {h.message_type.type: h for h in self.handles}

    async def __call__(self, message: RabbitMessage) -> None:
        raw = message.raw_message
        started = time.perf_counter()
        outcome, ce_type = "processed", "unknown"
        acks = self.bus.acks.window(raw)  # every ack and nack goes through it (shared/acks.py)
        acks.take(raw)
        try:
            try:
                envelope = parse_envelope(raw.body)
                ce_type = envelope.type
                handles = self.by_type.get(envelope.type)
                if handles is None:
                    self._reject_other_major(envelope)
                    outcome = "ignored"
                    log.info(
                        "ignored message of unhandled type",
                        extra={"ce_id": envelope.id, "ce_type": envelope.type, "queue": self.spec.name},
                    )
                    await acks.ack(raw)
                    return
                data = parse_data(envelope, handles.message_type)
                # Who sent it decides what it may do: the user_id the broker vouches for.
                self.bus.senders.check(raw.user_id, handles.message_type.routing_key, data)
                outcome = await self._handle(envelope, handles, data)
            except Rejection as rejection:
                outcome = "dead_lettered"
                await self.bus.dead_letter(raw, rejection.reason, queue=self.spec.name)
                await acks.ack(raw)
                return
            except Exception as exc:  # the handler failed: retry, then dead-letter with the reason
                attempts = _delivery_count(raw) + 1
                if attempts >= HANDLER_ATTEMPTS:
                    outcome = "dead_lettered"
                    reason = f"handler failed {attempts} times; last error: {type(exc).__name__}: {exc}"
                    log.error("giving up on message", extra={"queue": self.spec.name, "reason": reason[:500]})
                    await self.bus.dead_letter(raw, reason, queue=self.spec.name)
                    await acks.ack(raw)
                    return
                outcome = "retried"
                log.warning(
                    "handler failed, message will be redelivered",
                    exc_info=True,
                    extra={"queue": self.spec.name, "attempt": attempts},
                )
                await asyncio.sleep(min(10.0, 0.5 * 2 ** (attempts - 1)))
                await acks.nack(raw, requeue=True)
                return
            await acks.ack(raw)
        finally:
            acks.release(raw)
            MESSAGES_CONSUMED.labels(self.bus.service, self.spec.name, type_label(ce_type), outcome).inc()
            HANDLER_SECONDS.labels(self.bus.service, self.spec.name).observe(time.perf_counter() - started)

    def _reject_other_major(self, envelope: CloudEvent) -> None:
        key = envelope.routing_key
        known = [h.message_type.type for h in self.handles if h.message_type.routing_key == key]
        if known:
            raise Rejection(f"unsupported version {envelope.type!r}; this consumer takes {', '.join(known)}")

    async def _handle(self, envelope: CloudEvent, handles: Handles, data: Any) -> str:
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending.append((envelope, handles, data, done))
        if not self._leading:
            self._leading = True
            try:
                await self._gather()  # deliveries arriving with this one join its transaction
                while self._pending:
                    batch = self._pending[: self.batch_limit]
                    del self._pending[: self.batch_limit]
                    await self._handle_batch(batch)
            finally:
                self._leading = False
                for *_, waiting in self._pending:  # only after a cancellation: each goes alone
                    if not waiting.done():
                        waiting.set_result(_ALONE)
                self._pending.clear()
        outcome = await done
        if outcome == _ALONE:
            return await self._handle_one(envelope, handles, data)
        return outcome

    async def _gather(self) -> None:
        """Let the deliveries arriving with the leader's join its batch: turns of the event
        loop while each brings more (up to `GATHER_TURNS`, or a full batch); one turn when
        none does. The broker sends what an ack frees as a stream of frames over a few turns:
        a leader that took only the first turn's committed a handful, then the rest — in the
        ingest, 221 of 361 batches held fewer than 10 messages, each paying a whole
        transaction (make bench, issue 20 §4)."""
        await gather_turns(lambda: len(self._pending), self.batch_limit)

    async def _handle_batch(self, batch: list[tuple[CloudEvent, Handles, Any, asyncio.Future[str]]]) -> None:
        """All of `batch` in one transaction, or (any failure at all) each message alone."""
        if len(batch) == 1:
            batch[0][3].set_result(_ALONE)
            return
        db = self.bus.db
        outcomes: list[str] = []
        try:
            async with db.serial(), db.session() as session:
                # One query for the whole batch's inbox rows, one insert for the new ones.
                seen = set((await session.exec(already_processed(self.spec.name, batch))).all())
                now = utcnow()
                inbox: list[dict[str, Any]] = []
                for envelope, handles, data, _ in batch:
                    key = (envelope.source, envelope.id)
                    if key in seen:
                        outcomes.append("duplicate")
                        continue
                    seen.add(key)
                    inbox.append(
                        {
                            "consumer": self.spec.name,
                            "source": envelope.source,
                            "message_id": envelope.id,
                            "type": envelope.type,
                            "processed_at": now,
                        }
                    )
                    await handles.func(session, envelope, data)
                    outcomes.append("processed")
                if inbox:
                    await session.exec(sa.insert(table_of(ProcessedMessage)), params=inbox)
                await session.commit()
        except BaseException as exc:  # noqa: BLE001 - whatever it was, each message gets its own try
            for *_, waiting in batch:
                if not waiting.done():
                    waiting.set_result(_ALONE)
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.info("batch of %d rolled back; handling each alone: %s", len(batch), f"{type(exc).__name__}: {exc}"[:300])
            return
        for (envelope, _, _, waiting), outcome in zip(batch, outcomes, strict=True):
            log.info(
                "duplicate skipped" if outcome == "duplicate" else "message processed",
                extra={"ce_id": envelope.id, "ce_type": envelope.type, "ce_source": envelope.source,
                       "queue": self.spec.name, "batch": len(batch)},  # fmt: skip
            )
            waiting.set_result(outcome)

    async def _handle_one(self, envelope: CloudEvent, handles: Handles, data: Any) -> str:
        db = self.bus.db
        try:
            async with db.serial(), db.session() as session:
                seen = await session.get(ProcessedMessage, (self.spec.name, envelope.source, envelope.id))
                if seen is not None:
                    await session.rollback()
                    log.info("duplicate skipped", extra={"ce_id": envelope.id, "queue": self.spec.name})
                    return "duplicate"
                session.add(
                    ProcessedMessage(
                        consumer=self.spec.name, source=envelope.source, message_id=envelope.id, type=envelope.type
                    )
                )
                await handles.func(session, envelope, data)
                await session.commit()
        except IntegrityError:
            # A concurrent delivery of the same message committed first.
            async with db.session() as session:
                if await session.get(ProcessedMessage, (self.spec.name, envelope.source, envelope.id)):
                    return "duplicate"
            raise
        log.info(
            "message processed",
            extra={"ce_id": envelope.id, "ce_type": envelope.type, "ce_source": envelope.source, "queue": self.spec.name},
        )
        return "processed"


GATHER_TURNS = 20  # at most this many turns of the loop to gather a batch (microseconds each when idle)
_ALONE = "alone"  # a message of a failed (or single) batch is handled in a transaction of its own


async def gather_turns(pending: Callable[[], int], limit: int) -> None:
    """Before a group commit: turns of the event loop while each brings more to `pending()`
    (up to GATHER_TURNS, or until `limit`); one turn when none does. Those arriving with the
    first share its transaction instead of each paying one of their own."""
    before = -1
    for _ in range(GATHER_TURNS):
        count = pending()
        if count == before or count >= limit:
            return
        before = count
        await _next_turn()


async def _next_turn() -> None:
    """Let every task that is ready run once (like `asyncio.sleep(0)`, which tests replace)."""
    turn = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(turn.set_result, None)
    await turn


async def _undecoded(message: Any) -> bytes:
    """FastStream's own decoder runs `json.loads` before any handler when the content type
    is JSON or missing: a broken or thousands-deep body then raised outside the Consumer and
    was redelivered until the delivery limit, with no reason (issue #8). Leave it to us."""
    return bytes(message.body)


def _delivery_count(raw: aio_pika.IncomingMessage) -> int:
    value = (raw.headers or {}).get("x-delivery-count", 0)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0


async def dead_letter(
    broker: RabbitBroker,
    raw: aio_pika.IncomingMessage,
    reason: str,
    *,
    queue: str,
    source: str,
    user_id: str | None,
) -> None:
    """Park `raw` in `kranj.dead` with the reason, then tell its publisher (both confirmed):
    `source` and `user_id` are those of the service that gives up on it."""
    reason = reason[:2000]
    meta = best_effort_meta(raw.body)
    headers = dead_letter_headers(raw, reason, queue=queue)
    async with asyncio.timeout(safe_publishing.PUBLISH_TIMEOUT):
        await broker.publish(
            raw.body,
            exchange=DLX,
            routing_key=raw.routing_key or "",
            persist=True,
            mandatory=True,
            headers=headers,
            message_id=raw.message_id or meta.get("id"),
            message_type=raw.type,
            content_type=raw.content_type,
        )
    rejected = MessageRejected(
        id=meta.get("id") or raw.message_id,
        source=meta.get("source"),
        type=meta.get("type") or raw.type,
        reason=reason,
        queue=queue,
    )
    # Deterministic id: a redelivered bad message is announced once, as far as consumers can tell.
    seed = f"{queue}|{rejected.source}|{rejected.id}|{raw.body[:4096]!r}"
    envelope = MESSAGE_REJECTED.envelope(rejected, source=source, id=str(uuid.uuid5(uuid.NAMESPACE_URL, seed)))
    await publish_envelope(
        broker,
        json.dumps(envelope, ensure_ascii=False),
        routing_key=MESSAGE_REJECTED.routing_key,
        message_id=envelope["id"],
        message_type=envelope["type"],
        user_id=user_id,
    )
    log.warning(
        "message dead-lettered",
        extra={
            "ce_id": rejected.id,
            "ce_type": rejected.type,
            "queue": queue,
            "sender": raw.user_id or "",
            "reason": reason[:500],
        },
    )
