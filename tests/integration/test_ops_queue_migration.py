"""`kranj queues migrate` on the real broker: a deployment made before every queue was a
quorum queue (kranj.dead, kranj.dead.overflow, kranj.rejected and notify.delivery-outcomes
were classic, one node each) is brought to the quorum queues the code declares, while
messages keep arriving, and nothing is lost (issue 20)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aio_pika
import pytest
from support.rabbit import rabbitmqctl, vhost_of
from typer.testing import CliRunner

from kranj.cli import app
from kranj.cli.queues import MIGRATING_SUFFIX, migrate_queues
from shared.bus import (
    DEAD_OVERFLOW_NAME,
    DEAD_QUEUE_NAME,
    DELIVERY_OUTCOMES_QUEUE_NAME,
    DLX_NAME,
    EXCHANGE_NAME,
    REJECTED_QUEUE_NAME,
    declare_topology,
    make_broker,
)
from shared.settings import Settings

pytestmark = pytest.mark.integration

# The four queues as they were declared until 2026-12 (deploy/rabbitmq/definitions.json then).
OLD = {
    DEAD_QUEUE_NAME: ({"x-queue-type": "classic", "x-queue-mode": "lazy"}, DLX_NAME, ""),
    DEAD_OVERFLOW_NAME: (
        {"x-queue-type": "classic", "x-max-length": 1000, "x-max-length-bytes": 10485760, "x-overflow": "drop-head"},
        DEAD_OVERFLOW_NAME,
        "",
    ),
    REJECTED_QUEUE_NAME: (
        {"x-queue-type": "classic", "x-max-length": 10000, "x-overflow": "drop-head", "x-message-ttl": 604800000},
        EXCHANGE_NAME,
        "bus.message.rejected",
    ),
    DELIVERY_OUTCOMES_QUEUE_NAME: (
        {"x-queue-type": "classic", "x-max-length": 100000, "x-overflow": "drop-head", "x-message-ttl": 604800000},
        EXCHANGE_NAME,
        "notify.delivery.*",
    ),
}
BEFORE = 40  # messages in each queue before the migration


async def _old_deployment(url: str) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_exchange(EXCHANGE_NAME, aio_pika.ExchangeType.TOPIC, durable=True)
        await channel.declare_exchange(DLX_NAME, aio_pika.ExchangeType.FANOUT, durable=True)
        await channel.declare_exchange(DEAD_OVERFLOW_NAME, aio_pika.ExchangeType.FANOUT, durable=True)
        for name, (arguments, exchange, key) in OLD.items():
            queue = await channel.declare_queue(name, durable=True, arguments=arguments)
            await queue.bind(exchange, routing_key=key)


async def _publish(channel: Any, where: str, ident: str) -> None:
    _, exchange_name, key = OLD[where]
    exchange = await channel.get_exchange(exchange_name, ensure=False)
    message = aio_pika.Message(
        json.dumps({"id": ident}).encode(),
        message_id=ident,
        headers={"x-kranj-reason": "test", "x-origin": where},
        content_type="application/cloudevents+json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        user_id="guest",
    )
    await exchange.publish(message, routing_key=key.replace("*", "sent"))


async def _contents(url: str, name: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Every message of `name`, in order, taken and put back (nothing changes)."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        taken = []
        while (message := await queue.get(no_ack=False, fail=False, timeout=10)) is not None:
            taken.append(message)
        if taken:
            await taken[-1].nack(multiple=True, requeue=True)
        return taken


def _types(url: str) -> dict[str, str]:
    out = rabbitmqctl("list_queues", "-p", vhost_of(url), "name", "type")
    return dict(line.split("\t")[:2] for line in out.splitlines() if "\t" in line)


async def test_classic_queues_become_quorum_without_losing_a_message(amqp_url: str) -> None:
    await _old_deployment(amqp_url)
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        for name in OLD:
            for i in range(BEFORE):
                await _publish(channel, name, f"{name}-before-{i}")

        # Messages keep arriving while the queues move (a dead letter, a rejection, a fact).
        during: dict[str, list[str]] = {name: [] for name in OLD}
        stop = asyncio.Event()

        async def keep_publishing() -> None:
            i = 0
            while not stop.is_set():
                for name in OLD:
                    ident = f"{name}-during-{i}"
                    await _publish(channel, name, ident)  # confirmed: the broker has it
                    during[name].append(ident)
                i += 1
                await asyncio.sleep(0.005)

        publisher = asyncio.create_task(keep_publishing())
        results = await migrate_queues(Settings(amqp_url=amqp_url))
        stop.set()
        await publisher

    assert {r.name: r.state for r in results if r.name in OLD} == dict.fromkeys(OLD, "migrated")
    assert {r.name: r.moved for r in results if r.name in OLD} == {
        name: pytest.approx(BEFORE, abs=len(during[name])) for name in OLD
    }
    types = _types(amqp_url)
    assert {types[name] for name in OLD} == {"quorum"}, types
    assert not [name for name in types if name.endswith(MIGRATING_SUFFIX)], types

    for name in OLD:
        messages = await _contents(amqp_url, name)
        ids = [m.message_id for m in messages]
        expected = [f"{name}-before-{i}" for i in range(BEFORE)] + during[name]
        assert not set(expected) - set(ids), f"{name} lost {sorted(set(expected) - set(ids))[:5]}"
        # What waited keeps its order (what arrived meanwhile may come between); a message
        # routed while both queues were bound may be there twice, never more.
        assert [i for i in ids if "-before-" in i] == expected[:BEFORE], name
        assert len(ids) - len(set(ids)) <= 2, name
        first = messages[0]
        assert first.headers["x-origin"] == name and first.headers["x-kranj-reason"] == "test"
        assert first.content_type == "application/cloudevents+json"
        assert first.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert first.user_id == "guest"  # published by the same user: kept as it was

    # The migrated queues are what the code declares: a service's topology declaration
    # (which would refuse other arguments) goes through, and a second run has nothing to do.
    broker = make_broker(Settings(amqp_url=amqp_url), "migrationtest")
    await broker.connect()
    try:
        await declare_topology(broker)
    finally:
        await broker.stop()
    again = await asyncio.to_thread(CliRunner().invoke, app, ["queues", "migrate"], env={"KRANJ_AMQP_URL": amqp_url})
    assert again.exit_code == 0, again.output
    for name in OLD:
        assert f"{name}: up to date" in again.output

    # Routing reaches the new queues: a rejection published now lands in kranj.rejected.
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await _publish(channel, REJECTED_QUEUE_NAME, "after")
    assert (await _contents(amqp_url, REJECTED_QUEUE_NAME))[-1].message_id == "after"


async def test_an_interrupted_migration_is_finished_by_the_next_run(amqp_url: str) -> None:
    """The old queue already deleted, its messages waiting in `<name>.migrating`: the next
    run declares the quorum queue and moves them in."""
    await _old_deployment(amqp_url)
    name = REJECTED_QUEUE_NAME
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        for i in range(5):
            await _publish(channel, name, f"waiting-{i}")
        temporary = await channel.declare_queue(
            name + MIGRATING_SUFFIX, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await temporary.bind(EXCHANGE_NAME, routing_key="bus.message.rejected")
        old = await channel.declare_queue(name, passive=True)
        await old.unbind(EXCHANGE_NAME, routing_key="bus.message.rejected")
        while (message := await old.get(no_ack=False, fail=False, timeout=10)) is not None:
            await channel.default_exchange.publish(
                aio_pika.Message(message.body, message_id=message.message_id), routing_key=temporary.name
            )
            await message.ack()
        await channel.queue_delete(name)

    results = await migrate_queues(Settings(amqp_url=amqp_url), [name])
    assert [(r.name, r.state) for r in results] == [(name, "migrated")]
    assert [m.message_id for m in await _contents(amqp_url, name)] == [f"waiting-{i}" for i in range(5)]
    types = _types(amqp_url)
    assert types[name] == "quorum" and name + MIGRATING_SUFFIX not in types


async def _leave_it(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    """A consumer that takes nothing off (the message stays unacknowledged)."""


async def test_a_queue_someone_reads_is_left_alone(amqp_url: str) -> None:
    await _old_deployment(amqp_url)
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(DELIVERY_OUTCOMES_QUEUE_NAME, passive=True)
        await queue.consume(_leave_it)
        result = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            ["queues", "migrate", "--queue", DELIVERY_OUTCOMES_QUEUE_NAME],
            env={"KRANJ_AMQP_URL": amqp_url},
        )
    assert result.exit_code == 1
    assert "1 consumer(s) read it: stop them first" in result.output
    assert _types(amqp_url)[DELIVERY_OUTCOMES_QUEUE_NAME] == "classic"
