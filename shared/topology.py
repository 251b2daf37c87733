"""The one RabbitMQ topology of the platform: exchanges, queues and their arguments, declared
here once and by every service at start (identical arguments everywhere, or RabbitMQ refuses
the redeclaration), the bound of kranj.dead, and what each service's broker user may do.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aio_pika
from faststream.rabbit import ExchangeType, QueueType, RabbitBroker, RabbitExchange, RabbitQueue

from .contracts import MESSAGE_REJECTED
from .senders import SERVICE_COMMANDS, SERVICE_FACTS

if TYPE_CHECKING:
    from faststream.rabbit.schemas.queue import QuorumQueueArgs

EXCHANGE_NAME = "kranj"
DLX_NAME = "kranj.dlx"
DEAD_QUEUE_NAME = "kranj.dead"
REJECTED_QUEUE_NAME = "kranj.rejected"
DELIVERY_LIMIT = 10  # broker backstop: redeliveries before the queue dead-letters by itself

# The exchanges (and kranj.dead, kranj.rejected) belong to the broker's definitions
# (deploy/rabbitmq/definitions.json), not to any service: a service user may not configure
# them, since configure on an exchange is also the right to delete it. FastStream therefore
# only connects to them (`declare=False`, a passive declaration); `declare_topology` creates
# them where they are missing (a local broker whose user has every right).
EXCHANGE = RabbitExchange(EXCHANGE_NAME, type=ExchangeType.TOPIC, durable=True, declare=False)
DLX = RabbitExchange(DLX_NAME, type=ExchangeType.FANOUT, durable=True, declare=False)
# Every queue of the platform is a quorum queue, replicated on every node of a cluster
# (docs/scaling.md), the four below included: without a copy on a live node, the facts and
# dead letters routed to them while their node is down would be lost. They had been classic
# queues until 2026-12; `kranj queues migrate` turns an existing deployment's classic ones
# into quorum queues without losing a message (kranj/cli/queues.py, docs/operations.md).
# None of them has a delivery limit: `kranj dlq` takes dead letters and puts them back.
DEAD_QUEUE = RabbitQueue(DEAD_QUEUE_NAME, queue_type=QueueType.QUORUM, durable=True)
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
    queue_type=QueueType.QUORUM,
    durable=True,
    arguments={"x-max-length": 1_000, "x-max-length-bytes": 10 * 1024 * 1024, "x-overflow": "drop-head"},
)


def dead_policy(max_length: int = DEAD_MAX_LENGTH, max_bytes: int = DEAD_MAX_BYTES) -> dict[str, Any]:
    """The definition of the policy `kranj-dead` (deploy/rabbitmq/definitions.json)."""
    return {
        "max-length": max_length,
        "max-length-bytes": max_bytes,
        "overflow": "drop-head",
        "dead-letter-exchange": DEAD_OVERFLOW_NAME,
    }


def dead_bound() -> int:
    """The bound of kranj.dead in messages as `kranj status` reads it: DEAD_MAX_LENGTH, or
    KRANJ_DEAD_MAX_LENGTH where ops set the policy to another bound."""
    try:
        return max(1, int(os.environ.get("KRANJ_DEAD_MAX_LENGTH") or DEAD_MAX_LENGTH))
    except ValueError:
        return DEAD_MAX_LENGTH


# Every rejection is kept for a week (at most 10,000) so outside systems and ops can read
# why; it also keeps `bus.message.rejected` routable even when nobody else listens.
REJECTED_QUEUE = RabbitQueue(
    REJECTED_QUEUE_NAME,
    queue_type=QueueType.QUORUM,
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
    queue_type=QueueType.QUORUM,
    durable=True,
    arguments={"x-max-length": 100_000, "x-overflow": "drop-head", "x-message-ttl": 7 * 24 * 3600 * 1000},
    routing_key="notify.delivery.*",
)


def quorum_arguments() -> QuorumQueueArgs:
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
            arguments=quorum_arguments(),
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
        "notify.on-export-answered",
        "notify",
        ("events.export.answered", "booking.export.answered", "surveys.export.answered"),
        "Each service's part of a person's data, answering notify's notify.export.requested (GDPR access).",
    ),
    QueueSpec(
        "events.on-export-requested",
        "events",
        ("notify.export.requested",),
        "notify asks for what events holds about a person (GDPR access); events answers events.export.answered.",
    ),
    QueueSpec(
        "booking.on-export-requested",
        "booking",
        ("notify.export.requested",),
        "notify asks for what booking holds about a person (GDPR access); booking answers booking.export.answered.",
    ),
    QueueSpec(
        "surveys.on-export-requested",
        "surveys",
        ("notify.export.requested",),
        "notify asks for what surveys holds about a person (GDPR access); surveys answers surveys.export.answered.",
    ),
    QueueSpec(
        "events.on-booking-changed",
        "events",
        ("booking.booking.*",),
        "A booking changed status; events acts on those answering its room requests (event_id set): confirmed "
        "publishes the event, rejected|cancelled|expired marks it room-refused. Others are acknowledged and ignored.",
    ),
    QueueSpec(
        "events.on-room-updated",
        "events",
        ("booking.room.updated",),
        "The KS rooms as booking has them (name, capacity, closures): the event editor offers the KS's rooms "
        "from this copy, never from booking's database.",
    ),
)
QUEUES: dict[str, QueueSpec] = {spec.name: spec for spec in TOPOLOGY}


def _declaring(exchange: RabbitExchange) -> RabbitExchange:
    """The same exchange, declared for real (equal to it, so FastStream's declarer caches it)."""
    return RabbitExchange(exchange.name, type=exchange.type, durable=exchange.durable, declare=True)


def bindings() -> list[tuple[RabbitQueue, RabbitExchange, tuple[str, ...]]]:
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
    every = bindings()
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
    topic_write: the routing keys it may publish on `kranj` (shared/senders.py SERVICE_FACTS, and
    SERVICE_COMMANDS: notify's staff notices);
    topic_read: the binding keys of its own queues on `kranj` (so never `#`).
    """
    own = [q.name for q, _, _ in bindings() if owned_by(service, q.name)]
    keys = [key for q, exchange, ks in bindings() if owned_by(service, q.name) and exchange is EXCHANGE for key in ks]
    escaped = [_escape(name) for name in own]
    return {
        "configure": _alternatives(escaped),
        "write": _alternatives([_escape(EXCHANGE_NAME), _escape(DLX_NAME), *escaped]),
        "read": _alternatives([_escape(EXCHANGE_NAME), *escaped]),
        "topic_write": _alternatives(
            topic_regex(p) for p in (*SERVICE_FACTS[service], *SERVICE_COMMANDS.get(service, ()))
        ),
        "topic_read": _alternatives(_escape(key) for key in keys),
    }
