"""The bus: one RabbitMQ topology, a broker with safe defaults, the outbox relay, the
idempotent inbox and dead-lettering with a reason.

Every service builds one `Bus`; nothing here knows about any service's business.

Reliability choices, on purpose (FastStream's defaults are not these):
- every publish is persistent, mandatory, confirmed, and raises when returned unroutable;
- every consumer has a prefetch limit and acks only after its database transaction
  committed (the broker-wide ack policy is NACK_ON_ERROR as a last resort);
- a message that can never succeed (not JSON, broken envelope, schema failure, unknown
  KS, beyond its sender's rights, a handler failing `HANDLER_ATTEMPTS` times) is copied to `kranj.dead` with the
  reason in its headers and announced as `bus.message.rejected` *before* it is acked;
- a process that dies inside a handler again and again is caught by the quorum queue's
  `x-delivery-limit`, which dead-letters at-least-once into `kranj.dead` too;
- shutdown waits `graceful_timeout` seconds for running handlers;
- who sent a message decides what it may do: the AMQP `user_id` the broker validated,
  matched against the registry of senders (shared/senders.py); every publish of ours
  carries our own connection's user as `user_id`, so our facts are accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import sqlalchemy as sa
from faststream import AckPolicy
from faststream.rabbit import Channel, ExchangeType, QueueType, RabbitBroker, RabbitExchange, RabbitQueue
from faststream.rabbit.annotations import RabbitMessage
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from . import clock
from .contracts import (
    CONTENT_TYPE,
    MESSAGE_REJECTED,
    CloudEvent,
    MessageRejected,
    MessageType,
    Rejection,
    parse_data,
    parse_envelope,
)
from .db import Database
from .metrics import (
    HANDLER_SECONDS,
    MESSAGES_CONSUMED,
    MESSAGES_PUBLISHED,
    OUTBOX_OLDEST_SECONDS,
    OUTBOX_UNSENT,
    PUBLISH_FAILURES,
    type_label,
)
from .models import OutboxMessage, ProcessedMessage, utcnow
from .senders import SenderRegistry, amqp_user
from .settings import Settings

log = logging.getLogger("kranj.bus")

# --------------------------------------------------------------------------------------
# Topology: declared here, once, and by every service at start (identical arguments).
# --------------------------------------------------------------------------------------
EXCHANGE_NAME = "kranj"
DLX_NAME = "kranj.dlx"
DEAD_QUEUE_NAME = "kranj.dead"
REJECTED_QUEUE_NAME = "kranj.rejected"
PUBLISH_TIMEOUT = 10.0  # seconds to wait for a broker confirm (FastStream 0.7 ignores publish(timeout=))
DELIVERY_LIMIT = 10  # broker backstop: redeliveries before the queue dead-letters by itself
HANDLER_ATTEMPTS = 5  # a handler that raised this many times is dead-lettered by us, with the reason

# The exchanges (and kranj.dead, kranj.rejected) belong to the broker's definitions
# (deploy/rabbitmq/definitions.json), not to any service: a service user may not configure
# them, since configure on an exchange is also the right to delete it. FastStream therefore
# only connects to them (`declare=False`, a passive declaration); `declare_topology` creates
# them where they are missing (a local broker whose user has every right).
EXCHANGE = RabbitExchange(EXCHANGE_NAME, type=ExchangeType.TOPIC, durable=True, declare=False)
DLX = RabbitExchange(DLX_NAME, type=ExchangeType.FANOUT, durable=True, declare=False)
DEAD_QUEUE = RabbitQueue(DEAD_QUEUE_NAME, durable=True, arguments={"x-queue-mode": "lazy"})
# kranj.dead is bounded by the policy `kranj-dead` (deploy/rabbitmq/definitions.json; a
# policy, because changing the arguments of an existing queue makes RabbitMQ refuse its
# redeclaration): at most DEAD_MAX_LENGTH messages and DEAD_MAX_BYTES bytes, the oldest
# dropped first (`drop-head`). A dropped dead letter is dead-lettered once more, into the
# small `kranj.dead.overflow` (no further dead-lettering), so ops can see that and what was
# dropped: `kranj status` warns from DEAD_WARN_RATIO of the bound and whenever the overflow
# holds anything (docs/operations.md, "Dead letters").
DEAD_MAX_LENGTH = 10_000
DEAD_MAX_BYTES = 100 * 1024 * 1024
DEAD_WARN_RATIO = 0.8
DEAD_OVERFLOW_NAME = "kranj.dead.overflow"
DEAD_OVERFLOW_EXCHANGE = RabbitExchange(DEAD_OVERFLOW_NAME, type=ExchangeType.FANOUT, durable=True, declare=False)
DEAD_OVERFLOW_QUEUE = RabbitQueue(
    DEAD_OVERFLOW_NAME,
    durable=True,
    arguments={"x-max-length": 1_000, "x-max-length-bytes": 10 * 1024 * 1024, "x-overflow": "drop-head"},
)


def dead_policy(max_length: int = DEAD_MAX_LENGTH, max_bytes: int = DEAD_MAX_BYTES) -> dict[str, Any]:
    """The definition of the policy `kranj-dead` (deploy/rabbitmq/definitions.json)."""
    return {
        "queue-mode": "lazy",
        "max-length": max_length,
        "max-length-bytes": max_bytes,
        "overflow": "drop-head",
        "dead-letter-exchange": DEAD_OVERFLOW_NAME,
    }


def dead_bound() -> int:
    """The bound of kranj.dead in messages as `kranj status` reads it: DEAD_MAX_LENGTH, or
    KRANJ_DEAD_MAX_LENGTH where ops set the policy to another bound."""
    import os

    try:
        return max(1, int(os.environ.get("KRANJ_DEAD_MAX_LENGTH") or DEAD_MAX_LENGTH))
    except ValueError:
        return DEAD_MAX_LENGTH


# Every rejection is kept for a week (at most 10,000) so outside systems and ops can read
# why; it also keeps `bus.message.rejected` routable even when nobody else listens.
REJECTED_QUEUE = RabbitQueue(
    REJECTED_QUEUE_NAME,
    durable=True,
    arguments={"x-max-length": 10_000, "x-overflow": "drop-head", "x-message-ttl": 7 * 24 * 3600 * 1000},
    routing_key=MESSAGE_REJECTED.routing_key,
)
# notify.delivery.sent|failed are facts for whoever cares; they are published mandatory, so
# this capped queue keeps them routable when no other system listens yet, and lets ops read
# the last week's outcomes (at most 100,000). Other systems bind queues of their own.
DELIVERY_OUTCOMES_QUEUE_NAME = "notify.delivery-outcomes"
DELIVERY_OUTCOMES_QUEUE = RabbitQueue(
    DELIVERY_OUTCOMES_QUEUE_NAME,
    durable=True,
    arguments={"x-max-length": 100_000, "x-overflow": "drop-head", "x-message-ttl": 7 * 24 * 3600 * 1000},
    routing_key="notify.delivery.*",
)

HEADER_REASON = "x-kranj-reason"
HEADER_QUEUE = "x-kranj-queue"
HEADER_ROUTING_KEY = "x-kranj-routing-key"
HEADER_DEAD_AT = "x-kranj-dead-lettered-at"
HEADER_SENDER = "x-kranj-sender"  # the AMQP user_id the broker validated; "" = anonymous


def quorum_arguments() -> dict[str, Any]:
    return {
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": DLX_NAME,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",  # required by at-least-once dead-lettering
    }


@dataclass(frozen=True)
class QueueSpec:
    """A durable quorum queue named `<service>.<purpose>` and the routing keys it takes."""

    name: str
    service: str
    bindings: tuple[str, ...]
    description: str

    def rabbit_queue(self) -> RabbitQueue:
        return RabbitQueue(
            self.name,
            queue_type=QueueType.QUORUM,
            durable=True,
            arguments=quorum_arguments(),  # type: ignore[arg-type]
            routing_key=self.bindings[0],
        )


TOPOLOGY: tuple[QueueSpec, ...] = (
    QueueSpec(
        "notify.on-notice-requested",
        "notify",
        ("notify.notice.requested",),
        "Notices that any municipal system asks notify to send.",
    ),
    QueueSpec(
        "notify.on-event-published",
        "notify",
        ("events.event.published",),
        "Events published by the events service, announced to the KS's followers.",
    ),
    QueueSpec(
        "notify.on-booking-changed",
        "notify",
        ("booking.booking.*",),
        "A booking changed status (requested, confirmed, rejected, cancelled, expired); notify tells its "
        "requester. Types it does not handle are acknowledged and ignored.",
    ),
    QueueSpec(
        "notify.on-surveys",
        "notify",
        ("surveys.*.*",),
        "Surveys opened, closed and published (invitations to the KS's followers), and volunteers who "
        "consented to be contacted (they become subscribers). Types it does not handle are ignored.",
    ),
    QueueSpec(
        "notify.on-registrations",
        "notify",
        ("events.registration.*", "events.event.reminder-due"),
        "One registration for an event changed (confirmed, waitlisted, promoted, cancelled, or its event changed "
        "or was cancelled) or its reminder is due; notify tells that one registrant (personal data in the message).",
    ),
    QueueSpec(
        "notify.on-event-changed",
        "notify",
        ("events.event.updated", "events.event.cancelled"),
        "A published event changed or was cancelled; notify updates the KS noticeboard and tells followers.",
    ),
    QueueSpec(
        "booking.on-room-requested",
        "booking",
        ("booking.room.requested", "booking.room.released"),
        "The events service asks for a KS room for an event (booking books it by the room's rules and answers "
        "with booking.booking.requested|confirmed|rejected carrying event_id), or releases it (cancelled).",
    ),
    QueueSpec(
        "events.on-booking-changed",
        "events",
        ("booking.booking.*",),
        "A booking changed status; events acts on those answering its room requests (event_id set): confirmed "
        "publishes the event, rejected|cancelled|expired marks it room-refused. Others are acknowledged and ignored.",
    ),
)
QUEUES: dict[str, QueueSpec] = {spec.name: spec for spec in TOPOLOGY}


def _declaring(exchange: RabbitExchange) -> RabbitExchange:
    """The same exchange, declared for real (equal to it, so FastStream's declarer caches it)."""
    return RabbitExchange(exchange.name, type=exchange.type, durable=exchange.durable, declare=True)


def _bindings() -> list[tuple[RabbitQueue, RabbitExchange, tuple[str, ...]]]:
    """Every queue of the platform, the exchange it is bound to and its binding keys."""
    return [
        (DEAD_QUEUE, DLX, ("",)),
        (DEAD_OVERFLOW_QUEUE, DEAD_OVERFLOW_EXCHANGE, ("",)),
        (REJECTED_QUEUE, EXCHANGE, (MESSAGE_REJECTED.routing_key,)),
        (DELIVERY_OUTCOMES_QUEUE, EXCHANGE, ("notify.delivery.*",)),
        *((spec.rabbit_queue(), EXCHANGE, spec.bindings) for spec in TOPOLOGY),
    ]


def owned_by(service: str, queue_name: str) -> bool:
    """A queue `<service>.<purpose>` is that service's own (kranj.* belong to nobody)."""
    return queue_name.startswith(f"{service}.")


async def _missing(amqp_url: str, exchanges: Iterable[str], queues: Iterable[str]) -> set[str]:
    """Which of these exchanges and queues do not exist yet (passive declarations on a
    connection of their own: a missing one closes the channel, and needs no permission)."""
    import aiormq

    missing: set[str] = set()
    connection = await aio_pika.connect(amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=False)
        checks = [*((name, True) for name in exchanges), *((name, False) for name in queues)]
        for name, is_exchange in checks:
            try:
                if is_exchange:
                    await channel.declare_exchange(name, passive=True)
                else:
                    await channel.declare_queue(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                missing.add(name)
                channel = await connection.channel(publisher_confirms=False)
    return missing


async def declare_topology(broker: RabbitBroker, service: str | None = None, *, amqp_url: str | None = None) -> None:
    """Make sure the whole platform topology exists, so no message waits on its consumer's
    first start.

    Without `service` (ops, tests, a user with every right) everything is declared. With
    `service` and its `amqp_url` (what `Bus.start` does) the service declares and binds only
    its own queues (`<service>.*`); the rest — exchanges, kranj.dead, kranj.rejected, other
    services' queues — normally comes from the broker's definitions and is left alone, and
    is declared only where it is missing (a local broker, whose `guest` has every right).
    A least-privilege service user may configure nothing but its own queues
    (deploy/rabbitmq/definitions.json, docs/security.md).
    """
    every = _bindings()
    exchanges = (EXCHANGE, DLX, DEAD_OVERFLOW_EXCHANGE)
    if service is None or amqp_url is None:
        missing = {e.name for e in exchanges} | {q.name for q, _, _ in every}
    else:
        missing = await _missing(
            amqp_url, [e.name for e in exchanges], [q.name for q, _, _ in every if not owned_by(service, q.name)]
        )
    declared: dict[str, Any] = {}
    for exchange in exchanges:
        # Cached by FastStream's declarer under the (equal) module constant: its subscribers
        # and publishers then never declare it themselves.
        if exchange.name in missing:
            declared[exchange.name] = await broker.declare_exchange(_declaring(exchange))
        else:
            declared[exchange.name] = await broker.config.declarer.declare_exchange(exchange, declare=False)
    for queue, exchange, keys in every:
        if queue.name not in missing and not (service is not None and owned_by(service, queue.name)):
            continue
        declared_queue = await broker.declare_queue(queue)
        for key in keys:
            await declared_queue.bind(declared[exchange.name], routing_key=key)


def make_broker(settings: Settings, service: str) -> RabbitBroker:
    return RabbitBroker(
        settings.amqp_url,
        app_id=f"kranj-{service}",
        timeout=10,
        fail_fast=True,
        reconnect_interval=2.0,
        graceful_timeout=settings.graceful_timeout,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        # No FastDepends: a handler is called with the decoded body alone and takes the
        # message from the broker's context (Bus.consume). Resolving a handler's arguments
        # cost a fifth of notify's CPU per message (make bench, ingest 1.2k -> 1.4k/s).
        apply_types=False,
        default_channel=Channel(
            prefetch_count=settings.prefetch,
            publisher_confirms=True,
            on_return_raises=True,
        ),
        logger=logging.getLogger(f"kranj.{service}.faststream"),
        description="Kranj ZA vse: one durable topic exchange `kranj`; CloudEvents 1.0 in structured JSON mode.",
    )


# --------------------------------------------------------------------------------------
# Publishing
# --------------------------------------------------------------------------------------
async def publish_envelope(
    broker: RabbitBroker,
    body: str | bytes,
    *,
    routing_key: str,
    message_id: str,
    message_type: str,
    exchange: RabbitExchange = EXCHANGE,
    headers: dict[str, Any] | None = None,
    user_id: str | None = None,
) -> None:
    """Persistent, mandatory, confirmed; raises if the broker refuses or returns it, or
    does not confirm within `PUBLISH_TIMEOUT` seconds (a silent broker or a resource alarm).
    `user_id` must be the connection's own user (the broker closes the channel otherwise):
    it is what makes consumers accept the platform's facts (shared/senders.py)."""
    async with asyncio.timeout(PUBLISH_TIMEOUT):
        await broker.publish(
            body.encode() if isinstance(body, str) else body,
            exchange=exchange,
            routing_key=routing_key,
            persist=True,
            mandatory=True,
            message_id=message_id,
            message_type=message_type,
            content_type=CONTENT_TYPE,
            headers=headers,
            timestamp=clock.now(),
            user_id=user_id,
        )


def add_to_outbox(
    session: AsyncSession,
    message_type: MessageType,
    data: BaseModel | dict[str, Any],
    *,
    source: str,
    subject: str | None = None,
    id: str | None = None,
) -> dict[str, Any]:
    """Stage a CloudEvent in the caller's transaction; the relay publishes it after commit."""
    envelope = message_type.envelope(data, source=source, subject=subject, id=id)
    session.add(
        OutboxMessage(
            id=envelope["id"],
            routing_key=message_type.routing_key,
            type=message_type.type,
            body=json.dumps(envelope, ensure_ascii=False),
        )
    )
    session.info["outbox_written"] = True
    return envelope


ERASED = "[izbrisano]"


async def erase_from_outbox(session: AsyncSession, *values: str | None) -> int:
    """GDPR erasure: replace a resident's contact data in this service's outbox rows (sent or
    not) with "[izbrisano]". JSON-escaped spellings are matched too. Returns rows changed."""
    needles = sorted(
        {n for v in values if v for n in (v, json.dumps(v, ensure_ascii=False)[1:-1], json.dumps(v)[1:-1])},
        key=len,
        reverse=True,
    )
    if not needles:
        return 0
    rows = (
        await session.exec(
            select(OutboxMessage).where(sa.or_(*(col(OutboxMessage.body).contains(n) for n in needles)))
        )
    ).all()
    for row in rows:
        for needle in needles:
            row.body = row.body.replace(needle, ERASED)
        session.add(row)
    return len(rows)


def _retry_delay(attempts: int) -> timedelta:
    return timedelta(seconds=min(60.0, 0.5 * 2 ** min(attempts, 10)))


class OutboxRelay:
    """Publishes committed outbox rows with confirms and marks them sent; retries until it is."""

    def __init__(
        self,
        db: Database,
        broker: RabbitBroker,
        service: str,
        *,
        batch: int = 200,
        poll: float = 1.0,
        user_id: str | None = None,
    ):
        self.db = db
        self.broker = broker
        self.service = service
        self.user_id = user_id  # the broker user of `broker`'s connection, set on every publish
        self.batch = batch
        self.poll = poll
        self._wake = asyncio.Event()
        self._stopping = False
        db.on_commit(self._after_commit)

    def _after_commit(self, info: dict[str, Any]) -> None:
        if info.pop("outbox_written", False):
            self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        last_gauge = 0.0
        while not self._stopping:
            self._wake.clear()
            try:
                published = await self.flush_once()
                if time.monotonic() - last_gauge > 5:
                    await self.update_gauges()
                    last_gauge = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay cycle failed", extra={"service": self.service})
                published = 0
            if published >= self.batch:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll)
            except TimeoutError:
                pass

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def flush_once(self) -> int:
        """Publish one batch of due rows; returns how many were confirmed. Rows are read and
        marked with Core statements (a fan-out writes thousands: no ORM unit of work)."""
        now = utcnow()
        t = OutboxMessage.__table__  # type: ignore[attr-defined]
        query = (
            sa.select(t.c.id, t.c.routing_key, t.c.type, t.c.body, t.c.attempts)
            .where(t.c.sent_at.is_(None), t.c.next_attempt_at <= now)
            .order_by(t.c.created_at)
            .limit(self.batch)
        )
        if self.db.is_sqlite:
            # SQLite's single write lock is not held while waiting for confirms (one relay per file).
            rows = await self.db.run(lambda conn, _info: conn.execute(query).all())
            if not rows:
                return 0
            marks = self._marks(rows, await self._publish(rows))
            await self.db.run(lambda conn, _info: self._mark(conn, marks))
        else:
            # The rows stay locked until they are marked: another replica's relay skips them.
            async with self.db.engine.begin() as conn:
                rows = (await conn.execute(query.with_for_update(skip_locked=True))).all()
                if not rows:
                    return 0
                marks = self._marks(rows, await self._publish(rows))
                await conn.run_sync(self._mark, marks)
        sent, failed = marks
        if failed:
            log.warning(
                "outbox: %d of %d messages not confirmed, will retry: %s",
                len(failed),
                len(rows),
                failed[0]["v_error"],
            )
        return len(sent)

    async def _publish(self, rows: Sequence[sa.Row[Any]]) -> list[BaseException | None]:
        return await asyncio.gather(
            *(
                publish_envelope(
                    self.broker,
                    row.body,
                    routing_key=row.routing_key,
                    message_id=row.id,
                    message_type=row.type,
                    user_id=self.user_id,
                )
                for row in rows
            ),
            return_exceptions=True,
        )

    def _marks(
        self, rows: Sequence[sa.Row[Any]], results: list[BaseException | None]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The parameters of `_mark`: (confirmed rows, rows to try again later)."""
        at = utcnow()
        sent: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, BaseException):
                attempts = row.attempts + 1
                failed.append(
                    {
                        "b_id": row.id,
                        "v_attempts": attempts,
                        "v_next": at + _retry_delay(attempts),
                        "v_error": f"{type(result).__name__}: {result}"[:1000],
                    }
                )
                PUBLISH_FAILURES.labels(self.service, row.type).inc()
            else:
                sent.append({"b_id": row.id, "v_sent": at})
                MESSAGES_PUBLISHED.labels(self.service, row.type).inc()
        return sent, failed

    @staticmethod
    def _mark(conn: sa.Connection, marks: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
        t = OutboxMessage.__table__  # type: ignore[attr-defined]
        sent, failed = marks
        where = t.c.id == sa.bindparam("b_id")
        if sent:
            conn.execute(sa.update(t).where(where).values(sent_at=sa.bindparam("v_sent"), last_error=None), sent)
        if failed:
            conn.execute(
                sa.update(t)
                .where(where)
                .values(
                    attempts=sa.bindparam("v_attempts"),
                    next_attempt_at=sa.bindparam("v_next"),
                    last_error=sa.bindparam("v_error"),
                ),
                failed,
            )

    async def update_gauges(self) -> tuple[int, float]:
        async with self.db.session() as session:
            count, oldest = (
                await session.exec(
                    select(func.count(), func.min(OutboxMessage.created_at)).where(
                        col(OutboxMessage.sent_at).is_(None)
                    )
                )
            ).one()
            await session.rollback()
        age = 0.0
        if oldest is not None:
            oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
            age = max(0.0, (utcnow() - oldest).total_seconds())
        OUTBOX_UNSENT.labels(self.service).set(count)
        OUTBOX_OLDEST_SECONDS.labels(self.service).set(age)
        return count, age


# --------------------------------------------------------------------------------------
# Consuming
# --------------------------------------------------------------------------------------
HandlerFunc = Callable[[AsyncSession, CloudEvent, Any], Awaitable[None]]


@dataclass(frozen=True)
class Handles:
    """`func(session, envelope, data)` handles `message_type`; the caller commits."""

    message_type: MessageType
    func: HandlerFunc


@dataclass
class Consumer:
    """Takes messages off one queue: decode, dedupe, handle in one transaction, then ack."""

    bus: Bus
    spec: QueueSpec
    handles: tuple[Handles, ...]
    after_commit: Callable[[], None] | None = None
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
                    await message.ack()
                    return
                data = parse_data(envelope, handles.message_type)
                # Who sent it decides what it may do: the user_id the broker vouches for.
                self.bus.senders.check(raw.user_id, handles.message_type.routing_key, data)
                outcome = await self._handle(envelope, handles, data)
            except Rejection as rejection:
                outcome = "dead_lettered"
                await self.bus.dead_letter(raw, rejection.reason, queue=self.spec.name)
                await message.ack()
                return
            except Exception as exc:  # the handler failed: retry, then dead-letter with the reason
                attempts = _delivery_count(raw) + 1
                if attempts >= HANDLER_ATTEMPTS:
                    outcome = "dead_lettered"
                    reason = f"handler failed {attempts} times; last error: {type(exc).__name__}: {exc}"
                    log.error("giving up on message", extra={"queue": self.spec.name, "reason": reason[:500]})
                    await self.bus.dead_letter(raw, reason, queue=self.spec.name)
                    await message.ack()
                    return
                outcome = "retried"
                log.warning(
                    "handler failed, message will be redelivered",
                    exc_info=True,
                    extra={"queue": self.spec.name, "attempt": attempts},
                )
                await asyncio.sleep(min(10.0, 0.5 * 2 ** (attempts - 1)))
                await message.nack(requeue=True)
                return
            await message.ack()
        finally:
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
                await _next_turn()  # deliveries that arrived with this one join its transaction
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
                keys = {(envelope.source, envelope.id) for envelope, *_ in batch}
                seen = set(
                    (
                        await session.exec(
                            select(ProcessedMessage.source, ProcessedMessage.message_id).where(
                                ProcessedMessage.consumer == self.spec.name,
                                sa.tuple_(col(ProcessedMessage.source), col(ProcessedMessage.message_id)).in_(keys),
                            )
                        )
                    ).all()
                )
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
                    await session.exec(sa.insert(ProcessedMessage.__table__), params=inbox)  # type: ignore[attr-defined,call-overload]
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
        if self.after_commit is not None and "processed" in outcomes:
            self.after_commit()

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
        if self.after_commit is not None:
            self.after_commit()
        return "processed"


_ALONE = "alone"  # a message of a failed (or single) batch is handled in a transaction of its own


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


# --------------------------------------------------------------------------------------
# The bus of one service
# --------------------------------------------------------------------------------------
class Bus:
    def __init__(self, settings: Settings, service: str, db: Database) -> None:
        self.settings = settings
        self.service = service
        self.source = f"/kranj/{service}"
        self.db = db
        self.broker = make_broker(settings, service)
        self.user = amqp_user(settings.amqp_url)  # every publish of ours carries it as user_id
        self.senders = SenderRegistry.from_settings(settings)
        self.relay = OutboxRelay(db, self.broker, service, user_id=self.user)
        self.consumers: list[Consumer] = []
        self._relay_task: asyncio.Task[None] | None = None
        self.publisher(MESSAGE_REJECTED)

    def publisher(self, message_type: MessageType) -> None:
        """Document a message this service publishes (AsyncAPI); the relay sends it."""
        self.broker.publisher(
            exchange=EXCHANGE,
            routing_key=message_type.routing_key,
            persist=True,
            mandatory=True,
            title=f"{message_type.routing_key}:publish",
            description=message_type.description,
            schema=envelope_schema(message_type),
        )

    def consume(
        self, spec: QueueSpec, *handles: Handles, after_commit: Callable[[], None] | None = None
    ) -> Consumer:
        consumer = Consumer(self, spec, tuple(handles), after_commit)
        types = ", ".join(h.message_type.type for h in handles)

        context = self.broker.context

        async def on_message(_body: bytes) -> None:
            # The message from FastStream's context (the broker has no FastDepends, see
            # make_broker; with it, a `message: RabbitMessage` argument was resolved through a
            # task group and a worker thread per message, 0.25 ms of CPU).
            await consumer(context.get_local("message"))

        on_message.__name__ = spec.name.replace(".", "_").replace("-", "_")
        self.broker.subscriber(
            spec.rabbit_queue(),
            EXCHANGE,
            title=f"{spec.name}:consume",
            description=f"{spec.description} Takes CloudEvents of type {types}.",
            decoder=_undecoded,  # the Consumer parses (and refuses) bodies itself
        )(on_message)
        self.consumers.append(consumer)
        return consumer

    async def start(self, *, relay: bool = True) -> None:
        await self.broker.connect()
        await declare_topology(self.broker, self.service, amqp_url=self.settings.amqp_url)
        await self.broker.start()
        if relay:
            self._relay_task = asyncio.create_task(self.relay.run(), name=f"{self.service}-outbox-relay")

    async def stop(self) -> None:
        self.relay.stop()
        if self._relay_task is not None:
            try:
                await asyncio.wait_for(self._relay_task, timeout=self.settings.graceful_timeout)
            except (TimeoutError, asyncio.CancelledError):
                self._relay_task.cancel()
            self._relay_task = None
        try:  # a silent broker must not keep a stopping service alive
            async with asyncio.timeout(self.settings.graceful_timeout + 1):
                await self.broker.stop()
        except (TimeoutError, OSError, aio_pika.exceptions.AMQPError, ExceptionGroup) as exc:
            log.warning("broker did not close cleanly: %s", f"{type(exc).__name__}: {exc}")
            # Stop the robust connection from reconnecting behind our back.
            connection = getattr(self.broker, "_connection", None)
            if connection is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.close(), timeout=1)

    async def is_connected(self) -> bool:
        return await self.broker.ping(timeout=2.0)

    async def dead_letter(self, raw: aio_pika.IncomingMessage, reason: str, *, queue: str) -> None:
        """Park `raw` in `kranj.dead` with the reason, then tell its publisher (both confirmed)."""
        reason = reason[:2000]
        meta = _best_effort_meta(raw.body)
        headers = dict(raw.headers or {})
        headers.update(
            {
                HEADER_REASON: reason,
                HEADER_QUEUE: queue,
                HEADER_ROUTING_KEY: raw.routing_key or "",
                HEADER_DEAD_AT: clock.now().isoformat(),
                HEADER_SENDER: raw.user_id or "",  # never the sender's own header of that name
            }
        )
        async with asyncio.timeout(PUBLISH_TIMEOUT):
            await self.broker.publish(
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
        envelope = MESSAGE_REJECTED.envelope(
            rejected, source=self.source, id=str(uuid.uuid5(uuid.NAMESPACE_URL, seed))
        )
        await publish_envelope(
            self.broker,
            json.dumps(envelope, ensure_ascii=False),
            routing_key=MESSAGE_REJECTED.routing_key,
            message_id=envelope["id"],
            message_type=envelope["type"],
            user_id=self.user,
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


def _best_effort_meta(body: bytes) -> dict[str, str]:
    """id, source and type from a body that may be anything at all."""
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # "[[[[…" thousands deep
        return {}
    if not isinstance(raw, dict):
        return {}
    return {k: str(raw[k])[:500] for k in ("id", "source", "type") if isinstance(raw.get(k), (str, int))}


def envelope_schema(message_type: MessageType) -> type[BaseModel]:
    """A pydantic model of the full CloudEvent for one message type (AsyncAPI payloads)."""
    from typing import Literal

    from pydantic import create_model

    name = "".join(part.title() for part in message_type.routing_key.replace("-", ".").split(".")) + "Event"
    return create_model(  # type: ignore[call-overload,no-any-return]
        name,
        __doc__=f"CloudEvents 1.0 structured JSON; type `{message_type.type}`. {message_type.description}",
        specversion=(Literal["1.0"], ...),
        id=(str, ...),
        source=(str, ...),
        type=(Literal[message_type.type], ...),  # type: ignore[valid-type]
        time=(datetime | None, None),
        datacontenttype=(Literal["application/json"] | None, "application/json"),
        data=(message_type.data_model, ...),
    )


def iter_topology_queue_names() -> Iterable[str]:
    yield from (spec.name for spec in TOPOLOGY)
    yield DEAD_QUEUE_NAME
    yield DEAD_OVERFLOW_NAME
    yield REJECTED_QUEUE_NAME
    yield DELIVERY_OUTCOMES_QUEUE_NAME


# --------------------------------------------------------------------------------------
# Least privilege on the broker (deploy/rabbitmq/definitions.json, docs/security.md)
# --------------------------------------------------------------------------------------
_WORD = "[a-z0-9-]+"


def topic_regex(pattern: str) -> str:
    """An AMQP topic pattern (`*` one word, `#` any number of words) as a regular expression
    over routing keys of lower-case words."""
    out = ""
    for i, part in enumerate(pattern.split(".")):
        sep = r"\." if i else ""
        if part == "#":
            out += f"({sep}{_WORD})*" if i else f"({_WORD}(\\.{_WORD})*)?"
        else:
            out += sep + (_WORD if part == "*" else _escape(part))
    return out


def _alternatives(items: Iterable[str]) -> str:
    found = list(dict.fromkeys(items))
    return "^(" + "|".join(found) + ")$" if found else "^$"


def _escape(name: str) -> str:
    """A queue or exchange name or a binding key, matched literally (`*` included)."""
    return name.replace(".", r"\.").replace("*", r"\*")


def service_permissions(service: str) -> dict[str, str]:
    """What the broker user `kranj-<service>` may do on the vhost, as RabbitMQ regexes.

    configure (declare, delete): its own queues only — never an exchange or kranj.dead;
    write (publish to; bind a queue as destination): `kranj`, `kranj.dlx` (dead-lettering
    with a reason) and its own queues; read (consume; bind from): its own queues and `kranj`;
    topic_write: the routing keys it may publish on `kranj` (shared/senders.py SERVICE_FACTS);
    topic_read: the binding keys of its own queues on `kranj` (so never `#`).
    """
    from .senders import SERVICE_FACTS

    own = [q.name for q, _, _ in _bindings() if owned_by(service, q.name)]
    keys = [key for q, exchange, ks in _bindings() if owned_by(service, q.name) and exchange is EXCHANGE for key in ks]
    escaped = [_escape(name) for name in own]
    return {
        "configure": _alternatives(escaped),
        "write": _alternatives([_escape(EXCHANGE_NAME), _escape(DLX_NAME), *escaped]),
        "read": _alternatives([_escape(EXCHANGE_NAME), *escaped]),
        "topic_write": _alternatives(topic_regex(p) for p in SERVICE_FACTS[service]),
        "topic_read": _alternatives(_escape(key) for key in keys),
    }
