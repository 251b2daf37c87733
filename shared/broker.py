"""A RabbitMQ broker with safe defaults, and the one way to publish a CloudEvent on it.

FastStream 0.7's defaults are not these, on purpose: every publish is persistent,
mandatory, confirmed within `PUBLISH_TIMEOUT` seconds, and raises when returned
unroutable; every consumer has a prefetch limit; the broker-wide ack policy is
NACK_ON_ERROR as a last resort (shared/inbox.py acks and dead-letters itself); shutdown
waits `graceful_timeout` seconds for running handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any, Literal

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange
from faststream import AckPolicy
from faststream.rabbit import Channel, RabbitBroker, RabbitExchange
from pydantic import BaseModel, create_model

from . import clock
from .contracts import CONTENT_TYPE, MessageType
from .settings import Settings
from .topology import EXCHANGE

PUBLISH_TIMEOUT = 10.0  # seconds to wait for a broker confirm (FastStream 0.7 ignores publish(timeout=))


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
        # FastStream's own "Received" and "Processed" for every message only at DEBUG: the
        # Consumer logs each message once, with its id, type, source and queue (shared/inbox.py).
        # At INFO, the production level, they were two of four log lines per notice and about a
        # fifth of notify's CPU per notice (1.07 -> 0.85-0.89 ms, consumer alone); errors are
        # still logged at ERROR.
        log_level=logging.DEBUG,
        description="Kranj ZA vse: one durable topic exchange `kranj`; CloudEvents 1.0 in structured JSON mode.",
    )


# --------------------------------------------------------------------------------------
# Publishing
# --------------------------------------------------------------------------------------
class ConfirmChannel:
    """A publishing channel of its own on `broker`'s connection, with confirms, for the
    outbox relay: not the channel the consumers share, and one the relay can renew.

    Why renew: on RabbitMQ 3.10.8 a channel whose quorum-queue client lost the queue's
    leader with a node (`kill -9`) went on nacking every publish to that queue for minutes,
    while the queue already had a new leader and the same publishes on a new channel were
    confirmed (tests/faults/test_rabbit_cluster.py; docs/scaling.md, "A RabbitMQ cluster").
    The relay calls `renew()` after a nack: its next publish opens a fresh channel."""

    def __init__(self, broker: RabbitBroker, app_id: str) -> None:
        self.broker = broker
        self.app_id = app_id
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._opening = asyncio.Lock()
        self.renewals = 0  # how many times a nack made it open a new channel

    async def exchange(self) -> AbstractExchange:
        """The `kranj` exchange on the open channel (opened on first use, and after renew)."""
        if self._exchange is not None and self._channel is not None and not self._channel.is_closed:
            return self._exchange
        async with self._opening:
            if self._exchange is None or self._channel is None or self._channel.is_closed:
                # FastStream 0.7 keeps its robust connection here (shared/bus.py stops it so too).
                connection = getattr(self.broker, "_connection", None)
                if connection is None:
                    raise aiormq.exceptions.AMQPConnectionError("not connected to RabbitMQ")
                self._channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                self._exchange = await self._channel.get_exchange(EXCHANGE.name, ensure=False)
        return self._exchange

    async def renew(self) -> None:
        """Close the channel; the next publish opens a new one."""
        self.renewals += 1
        await self.close()

    async def close(self) -> None:
        channel, self._channel, self._exchange = self._channel, None, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(Exception):  # a channel the broker already closed, or a lost connection
                await asyncio.wait_for(channel.close(), timeout=2.0)


def is_nack(error: BaseException | None) -> bool:
    """The broker refused a publish (Basic.Nack), as opposed to returning it unroutable."""
    return isinstance(error, aio_pika.exceptions.DeliveryError) and isinstance(error.frame, aiormq.spec.Basic.Nack)


async def publish_envelope(
    broker: RabbitBroker | ConfirmChannel,
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
    it is what makes consumers accept the platform's facts (shared/senders.py). On a
    `ConfirmChannel` (the outbox relay) it goes on that channel, to the `kranj` exchange."""
    data = body.encode() if isinstance(body, str) else body
    properties: dict[str, Any] = {
        "message_id": message_id,
        "content_type": CONTENT_TYPE,
        "headers": headers,
        "timestamp": clock.now(),
        "user_id": user_id,
    }
    async with asyncio.timeout(PUBLISH_TIMEOUT):
        if isinstance(broker, ConfirmChannel):
            if exchange is not EXCHANGE:
                raise ValueError("a ConfirmChannel publishes to the kranj exchange only")
            message = aio_pika.Message(
                data,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                correlation_id=message_id,
                type=message_type,
                app_id=broker.app_id,
                **properties,
            )
            await (await broker.exchange()).publish(message, routing_key=routing_key, mandatory=True)
        else:
            await broker.publish(
                data,
                exchange=exchange,
                routing_key=routing_key,
                persist=True,
                mandatory=True,
                message_type=message_type,
                **properties,
            )


def envelope_schema(message_type: MessageType) -> type[BaseModel]:
    """A pydantic model of the full CloudEvent for one message type (AsyncAPI payloads)."""
    name = "".join(part.title() for part in message_type.routing_key.replace("-", ".").split(".")) + "Event"
    fields: dict[str, Any] = {
        "specversion": (Literal["1.0"], ...),
        "id": (str, ...),
        "source": (str, ...),
        "type": (Literal[message_type.type], ...),
        "time": (datetime | None, None),
        "datacontenttype": (Literal["application/json"] | None, "application/json"),
        "data": (message_type.data_model, ...),
    }
    return create_model(
        name,
        __doc__=f"CloudEvents 1.0 structured JSON; type `{message_type.type}`. {message_type.description}",
        **fields,
    )
