"""The broker's maximum message size, proven on a live broker (issue 15, minor: "a 5 MB
message was parked in kranj.dead").

deploy/rabbitmq/rabbitmq.conf sets `max_message_size` (1 MiB), mounted in compose. Here a
PRIVATE RabbitMQ node (the fault suite's `RabbitNode`: its own name, ports and data dir —
never the shared broker) starts with that file's settings applied; a 2 MiB message published
with publisher confirms is refused by the broker (the channel is closed with
PRECONDITION_FAILED), a 900 KiB one is accepted and reaches its queue. The platform's own
envelope limit `MAX_BODY_BYTES` is no larger than the broker's."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import aiormq
import pytest
from faults.conftest import RabbitNode

from shared.contracts.envelope import MAX_BODY_BYTES

pytestmark = pytest.mark.integration

BROKER_CONF = Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq" / "rabbitmq.conf"
KIB = 1024


def configured_max() -> int:
    [size] = re.findall(r"^max_message_size\s*=\s*(\d+)\s*$", BROKER_CONF.read_text(), re.MULTILINE)
    return int(size)


class PlatformConfNode(RabbitNode):
    """A private node whose rabbitmq.conf is the test node's plus the repository's file."""

    def _write_config(self) -> None:
        super()._write_config()
        conf = self.base / "rabbitmq.conf"
        conf.write_text(conf.read_text() + "\n# deploy/rabbitmq/rabbitmq.conf\n" + BROKER_CONF.read_text())


@pytest.fixture(scope="module")
def size_node() -> Iterator[PlatformConfNode]:
    node = PlatformConfNode()
    try:
        node.start()
        yield node
    finally:
        node.stop()  # always: the node, its processes and its data dir


def test_the_envelope_limit_is_within_the_brokers() -> None:
    assert MAX_BODY_BYTES <= configured_max() == 1024 * KIB


async def test_the_broker_refuses_a_message_over_its_maximum_size(size_node: PlatformConfNode) -> None:
    applied = size_node.ctl("eval", "application:get_env(rabbit, max_message_size).").stdout.strip()
    assert applied == f"{{ok,{configured_max()}}}", applied  # the repository's file is what the node runs

    url = size_node.new_vhost()
    connection = await aio_pika.connect(url, timeout=15)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue("size.probe", durable=True)

        accepted = await channel.default_exchange.publish(
            aio_pika.Message(b"x" * (900 * KIB), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=queue.name,
            timeout=15,
        )
        assert isinstance(accepted, aiormq.spec.Basic.Ack), accepted

        # The broker closes the channel instead of confirming: the publish fails.
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed) as refused:
            await channel.default_exchange.publish(
                aio_pika.Message(b"x" * (2048 * KIB), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=queue.name,
                timeout=15,
            )
        reason = str(refused.value)
        assert "PRECONDITION_FAILED" in reason and f"larger than configured max size {configured_max()}" in reason

        # Only the 900 KiB message reached the queue.
        check = await connection.channel()
        probe = await check.declare_queue("size.probe", durable=True, passive=True)
        assert probe.declaration_result.message_count == 1
    finally:
        await connection.close()
