"""The bus of one service: a `Bus` wires the pieces that every service shares —

- shared/topology.py: the one RabbitMQ topology (exchanges, queues, arguments, kranj.dead's
  bound) and what each service's broker user may do;
- shared/broker.py: a broker with safe defaults and `publish_envelope` (persistent,
  mandatory, confirmed, raising when returned unroutable);
- shared/outbox.py: outbox rows written in the business transaction, and the relay that
  publishes them after commit;
- shared/inbox.py: the `Consumer` (parse, sender check, dedupe on (consumer, source, id),
  group commit, retry, dead-lettering with the reason and `bus.message.rejected`);
- shared/dead_letters.py: the headers of a dead letter.

Every service builds one `Bus`; nothing here knows about any service's business. The names
re-exported below are those callers import from `shared.bus`.

Reliability beyond FastStream's defaults: a process that dies inside a handler again and
again is caught by the quorum queue's `x-delivery-limit`, which dead-letters at-least-once
into `kranj.dead` too; shutdown waits `graceful_timeout` seconds for running handlers (and
the relay); every publish of ours carries our own connection's user as `user_id`, so
consumers accept our facts (shared/senders.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aio_pika

from .acks import AckWindows
from .broker import PUBLISH_TIMEOUT, envelope_schema, make_broker, publish_envelope
from .contracts import MESSAGE_REJECTED, MessageType
from .db import Database
from .dead_letters import HEADER_DEAD_AT, HEADER_QUEUE, HEADER_REASON, HEADER_ROUTING_KEY, HEADER_SENDER
from .inbox import HANDLER_ATTEMPTS, Consumer, HandlerFunc, Handles, _undecoded, dead_letter
from .outbox import OutboxRelay, add_to_outbox, outbox_row
from .senders import SenderRegistry, amqp_user
from .settings import Settings
from .topology import (
    DEAD_MAX_BYTES,
    DEAD_MAX_LENGTH,
    DEAD_OVERFLOW_EXCHANGE,
    DEAD_OVERFLOW_NAME,
    DEAD_OVERFLOW_QUEUE,
    DEAD_QUEUE,
    DEAD_QUEUE_NAME,
    DEAD_WARN_RATIO,
    DELIVERY_LIMIT,
    DELIVERY_OUTCOMES_QUEUE,
    DELIVERY_OUTCOMES_QUEUE_NAME,
    DLX,
    DLX_NAME,
    EXCHANGE,
    EXCHANGE_NAME,
    QUEUES,
    REJECTED_QUEUE,
    REJECTED_QUEUE_NAME,
    TOPOLOGY,
    QueueSpec,
    dead_bound,
    dead_policy,
    declare_topology,
    iter_topology_queue_names,
    owned_by,
    quorum_arguments,
    service_permissions,
    topic_regex,
)

__all__ = [
    "DEAD_MAX_BYTES",
    "DEAD_MAX_LENGTH",
    "DEAD_OVERFLOW_EXCHANGE",
    "DEAD_OVERFLOW_NAME",
    "DEAD_OVERFLOW_QUEUE",
    "DEAD_QUEUE",
    "DEAD_QUEUE_NAME",
    "DEAD_WARN_RATIO",
    "DELIVERY_LIMIT",
    "DELIVERY_OUTCOMES_QUEUE",
    "DELIVERY_OUTCOMES_QUEUE_NAME",
    "DLX",
    "DLX_NAME",
    "EXCHANGE",
    "EXCHANGE_NAME",
    "HANDLER_ATTEMPTS",
    "HEADER_DEAD_AT",
    "HEADER_QUEUE",
    "HEADER_REASON",
    "HEADER_ROUTING_KEY",
    "HEADER_SENDER",
    "PUBLISH_TIMEOUT",
    "QUEUES",
    "REJECTED_QUEUE",
    "REJECTED_QUEUE_NAME",
    "TOPOLOGY",
    "Bus",
    "Consumer",
    "HandlerFunc",
    "Handles",
    "OutboxRelay",
    "QueueSpec",
    "add_to_outbox",
    "dead_bound",
    "dead_policy",
    "declare_topology",
    "envelope_schema",
    "iter_topology_queue_names",
    "make_broker",
    "outbox_row",
    "owned_by",
    "publish_envelope",
    "quorum_arguments",
    "service_permissions",
    "topic_regex",
]

log = logging.getLogger("kranj.bus")


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
        self.acks = AckWindows()  # the consumers' acks, coalesced per channel (shared/acks.py)
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

    def consume(self, spec: QueueSpec, *handles: Handles) -> Consumer:
        consumer = Consumer(self, spec, tuple(handles))
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
        await self.relay.close()
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
        await dead_letter(self.broker, raw, reason, queue=queue, source=self.source, user_id=self.user)
