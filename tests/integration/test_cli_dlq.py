"""`kranj dlq list` and `kranj dlq replay` against the real broker, in a vhost of their own."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from support.rabbit import rabbitmqctl
from typer.testing import CliRunner

from kranj.cli import app
from kranj.cli.dlq import dlq_peek
from shared.bus import (
    DEAD_QUEUE_NAME,
    HEADER_DEAD_AT,
    HEADER_QUEUE,
    HEADER_REASON,
    HEADER_ROUTING_KEY,
    declare_topology,
    make_broker,
)
from shared.settings import Settings

pytestmark = pytest.mark.integration

NOTICES = "notify.on-notice-requested"
EVENTS = "notify.on-event-published"


def _rabbitmqctl(*args: str) -> None:
    rabbitmqctl(*args)


@pytest.fixture
def vhost_url() -> Iterator[str]:
    """A fresh vhost `kranj-clitest-<random>` with the platform topology declared."""
    name = f"kranj-clitest-{secrets.token_hex(4)}"
    _rabbitmqctl("add_vhost", name)
    try:
        _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        url = f"amqp://guest:guest@127.0.0.1:5672/{urllib.parse.quote(name, safe='')}"

        async def declare() -> None:
            broker = make_broker(Settings(amqp_url=url), "clitest")
            await broker.connect()
            try:
                await declare_topology(broker)
            finally:
                await broker.stop()

        asyncio.run(declare())
        yield url
    finally:
        _rabbitmqctl("delete_vhost", name)


def envelope(ce_id: str, ce_type: str = "si.kranj.notify.notice.requested.v1") -> bytes:
    return json.dumps(
        {"specversion": "1.0", "id": ce_id, "source": "/komunala-kranj/outages", "type": ce_type, "data": {}}
    ).encode()


async def _dead_letter_by_us(url: str, ce_id: str, reason: str, queue: str | None, routing_key: str) -> None:
    """What `Bus.dead_letter` does: the original body, x-kranj-* headers, via the DLX."""
    headers: dict[str, Any] = {
        HEADER_REASON: reason,
        HEADER_ROUTING_KEY: routing_key,
        HEADER_DEAD_AT: datetime.now(UTC).isoformat(),
        "x-delivery-count": 4,
        "x-origin": "kept",
    }
    if queue:
        headers[HEADER_QUEUE] = queue
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        dlx = await channel.get_exchange("kranj.dlx")
        await dlx.publish(
            aio_pika.Message(
                envelope(ce_id),
                headers=headers,
                message_id=ce_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                content_type="application/cloudevents+json",
            ),
            routing_key=routing_key,
        )


async def _dead_letter_by_the_broker(url: str, ce_id: str) -> None:
    """A consumer that keeps crashing: the quorum queue's delivery limit dead-letters it."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange("kranj")
        await exchange.publish(
            aio_pika.Message(envelope(ce_id, "si.kranj.events.event.published.v1"), message_id=ce_id),
            routing_key="events.event.published",
        )
        queue = await channel.declare_queue(EVENTS, passive=True)
        for _ in range(30):
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            await message.nack(requeue=True)
        dead = await channel.declare_queue(DEAD_QUEUE_NAME, passive=True)
        for _ in range(100):
            if (await channel.declare_queue(DEAD_QUEUE_NAME, passive=True)).declaration_result.message_count == 3:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"broker did not dead-letter (kranj.dead has {dead.declaration_result.message_count})")


async def _depths(url: str, *names: str) -> dict[str, int]:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        return {
            name: (await channel.declare_queue(name, passive=True)).declaration_result.message_count or 0
            for name in names
        }


async def _drain(url: str, name: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    connection = await aio_pika.connect(url)
    taken = []
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            await message.ack()
            taken.append(message)
    return taken


@pytest.fixture
def three_dead(vhost_url: str) -> str:
    async def fill() -> None:
        await _dead_letter_by_us(vhost_url, "ce-1", "data.title: Field required", NOTICES, "notify.notice.requested")
        await _dead_letter_by_us(vhost_url, "ce-2", "unknown KS 'atlantida'", NOTICES, "notify.notice.requested")
        await _dead_letter_by_the_broker(vhost_url, "ce-3")

    asyncio.run(fill())
    return vhost_url


def kranj(url: str, tmp_path: Path, *args: str) -> Any:
    env = {k: None for k in os.environ if k.startswith("KRANJ_")}
    env.update({"KRANJ_AMQP_URL": url, "KRANJ_DATA_DIR": str(tmp_path)})
    return CliRunner().invoke(app, list(args), env=env)


def test_list_shows_every_dead_letter_with_its_reason_and_loses_none(three_dead: str, tmp_path: Path) -> None:
    result = kranj(three_dead, tmp_path, "dlq", "list")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert text.count("dead-lettered 20") == 3
    assert "reason:      data.title: Field required" in text
    assert "reason:      unknown KS 'atlantida'" in text
    assert "reason:      dead-lettered by the broker: delivery_limit" in text
    assert f"from queue:  {EVENTS}" in text
    assert "CloudEvent:  id ce-3 · type si.kranj.events.event.published.v1 · source /komunala-kranj/outages" in text
    assert "3 dead letter(s) in kranj.dead" in text
    assert asyncio.run(_depths(three_dead, DEAD_QUEUE_NAME)) == {DEAD_QUEUE_NAME: 3}

    # --json, twice, and --limit: always the same three, in the same order, still all there.
    for _ in range(2):
        listed = json.loads(kranj(three_dead, tmp_path, "dlq", "list", "--json").stdout)
        assert listed["total"] == 3
        assert [m["ce_id"] for m in listed["messages"]] == ["ce-1", "ce-2", "ce-3"]
        assert [m["queue"] for m in listed["messages"]] == [NOTICES, NOTICES, EVENTS]
        assert [m["routing_key"] for m in listed["messages"]][2] == "events.event.published"
    limited = json.loads(kranj(three_dead, tmp_path, "dlq", "list", "--limit", "2", "--json").stdout)
    assert [m["ce_id"] for m in limited["messages"]] == ["ce-1", "ce-2"]
    items, total = asyncio.run(dlq_peek(Settings(amqp_url=three_dead), 10))
    assert total == 3 and [i.ce_id for i in items] == ["ce-1", "ce-2", "ce-3"]
    assert asyncio.run(_depths(three_dead, DEAD_QUEUE_NAME)) == {DEAD_QUEUE_NAME: 3}


def test_replay_moves_them_back_to_their_queues(three_dead: str, tmp_path: Path) -> None:
    one = kranj(three_dead, tmp_path, "dlq", "replay", "--id", "ce-2")
    assert one.exit_code == 0, one.output
    assert f"replayed ce-2 -> queue {NOTICES}" in one.stdout
    assert "1 message(s) replayed, 0 failed." in one.stdout
    assert asyncio.run(_depths(three_dead, DEAD_QUEUE_NAME, NOTICES, EVENTS)) == {
        DEAD_QUEUE_NAME: 2,
        NOTICES: 1,
        EVENTS: 0,
    }
    left = json.loads(kranj(three_dead, tmp_path, "dlq", "list", "--json").stdout)
    assert [m["ce_id"] for m in left["messages"]] == ["ce-1", "ce-3"]  # order kept

    rest = kranj(three_dead, tmp_path, "dlq", "replay")
    assert rest.exit_code == 0, rest.output
    assert "2 message(s) replayed, 0 failed." in rest.stdout
    assert asyncio.run(_depths(three_dead, DEAD_QUEUE_NAME, NOTICES, EVENTS)) == {
        DEAD_QUEUE_NAME: 0,
        NOTICES: 2,
        EVENTS: 1,
    }

    notices = asyncio.run(_drain(three_dead, NOTICES))
    assert [json.loads(m.body)["id"] for m in notices] == ["ce-2", "ce-1"]
    for message in notices:
        headers = dict(message.headers or {})
        assert not [k for k in headers if k.startswith(("x-kranj-", "x-death"))]
        assert "x-delivery-count" not in headers or headers["x-delivery-count"] == 0
        assert headers.get("x-origin") == "kept"  # other headers survive
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert message.content_type == "application/cloudevents+json"
    [event] = asyncio.run(_drain(three_dead, EVENTS))
    assert json.loads(event.body)["id"] == "ce-3"
    assert not [k for k in (event.headers or {}) if k.startswith(("x-death", "x-first-death", "x-last-death"))]

    empty = kranj(three_dead, tmp_path, "dlq", "list")
    assert "kranj.dead is empty" in empty.stdout


def test_replay_without_a_queue_uses_the_routing_key_and_keeps_what_cannot_go(vhost_url: str, tmp_path: Path) -> None:
    async def fill() -> None:
        await _dead_letter_by_us(vhost_url, "by-key", "handler failed 5 times", None, "notify.notice.requested")
        await _dead_letter_by_us(vhost_url, "nowhere", "old consumer", "gone.queue", "gone.thing.happened")

    asyncio.run(fill())
    result = kranj(vhost_url, tmp_path, "dlq", "replay")
    assert result.exit_code == 1
    assert "replayed by-key -> exchange kranj (notify.notice.requested)" in result.stdout
    assert "not replayed nowhere: queue gone.queue does not exist" in result.stderr
    assert asyncio.run(_depths(vhost_url, DEAD_QUEUE_NAME, NOTICES)) == {DEAD_QUEUE_NAME: 1, NOTICES: 1}
    left = json.loads(kranj(vhost_url, tmp_path, "dlq", "list", "--json").stdout)
    assert [m["ce_id"] for m in left["messages"]] == ["nowhere"]


def test_replay_of_an_unknown_id_says_so(vhost_url: str, tmp_path: Path) -> None:
    result = kranj(vhost_url, tmp_path, "dlq", "replay", "--id", "no-such-id")
    assert result.exit_code == 1
    assert "no dead letter with id no-such-id" in result.stderr


def test_dlq_list_on_an_unreachable_broker_is_one_line(tmp_path: Path) -> None:
    result = kranj("amqp://guest:guest@127.0.0.1:1/", tmp_path, "dlq", "list")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("kranj: RabbitMQ is not reachable at amqp://guest:***@127.0.0.1:1/")
