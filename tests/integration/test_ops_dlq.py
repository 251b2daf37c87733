"""`kranj dlq show`, `kranj dlq purge` and `kranj dlq list --type/--reason` against the real
broker, in a vhost of their own (the `amqp_url` fixture)."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from typer.testing import CliRunner

from kranj.cli import app
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

NOTICE = "si.kranj.notify.notice.requested.v1"
EVENT = "si.kranj.events.event.published.v1"
DEAD = [  # (id, type, routing key, reason)
    ("ce-1", NOTICE, "notify.notice.requested", "data does not match: data.ks.0: unknown KS 'atlantida'"),
    ("ce-2", EVENT, "events.event.published", "handler failed 5 times; last error: OperationalError"),
    ("ce-3", NOTICE, "notify.notice.requested", "data does not match: data.title: Field required"),
    ("ce-4", NOTICE, "notify.notice.requested", "data does not match: data.ks.0: unknown KS 'atlantida'"),
]


async def fill(url: str) -> None:
    broker = make_broker(Settings(amqp_url=url), "dlqtest")
    await broker.connect()
    try:
        await declare_topology(broker)
    finally:
        await broker.stop()
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        dlx = await channel.get_exchange("kranj.dlx")
        for ce_id, ce_type, key, reason in DEAD:
            body = {
                "specversion": "1.0",
                "id": ce_id,
                "source": "/komunala-kranj/outages",
                "type": ce_type,
                "data": {"title": "Izklop vode", "ks": ["atlantida"]},
            }
            await dlx.publish(
                aio_pika.Message(
                    json.dumps(body).encode(),
                    headers={
                        HEADER_REASON: reason,
                        HEADER_ROUTING_KEY: key,
                        HEADER_QUEUE: f"notify.on-{key}",
                        HEADER_DEAD_AT: datetime.now(UTC).isoformat(),
                    },
                    message_id=ce_id,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=key,
            )


async def depth(url: str) -> int:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        return (await channel.declare_queue(DEAD_QUEUE_NAME, passive=True)).declaration_result.message_count or 0


@pytest.fixture
def dead(amqp_url: str) -> str:
    asyncio.run(fill(amqp_url))
    return amqp_url


def kranj(url: str, tmp_path: Path, *args: str) -> Any:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("KRANJ_")}
    env.update({"KRANJ_AMQP_URL": url, "KRANJ_DATA_DIR": str(tmp_path)})
    return CliRunner().invoke(app, list(args), env=env)


def listed(url: str, tmp_path: Path, *filters: str) -> list[str]:
    result = kranj(url, tmp_path, "dlq", "list", "--json", *filters)
    assert result.exit_code == 0, result.output
    return [m["ce_id"] for m in json.loads(result.stdout)["messages"]]


def test_show_prints_one_dead_letter_in_full_and_keeps_it(dead: str, tmp_path: Path) -> None:
    result = kranj(dead, tmp_path, "dlq", "show", "ce-3")
    assert result.exit_code == 0, result.output
    assert "reason:      data does not match: data.title: Field required" in result.stdout
    assert f"{HEADER_REASON}: data does not match: data.title: Field required" in result.stdout
    assert '"title": "Izklop vode"' in result.stdout
    as_json = json.loads(kranj(dead, tmp_path, "dlq", "show", "ce-2", "--json").stdout)
    assert as_json["ce_type"] == EVENT and as_json["body"]["id"] == "ce-2"
    assert as_json["headers"][HEADER_ROUTING_KEY] == "events.event.published"
    missing = kranj(dead, tmp_path, "dlq", "show", "nope")
    assert missing.exit_code == 1 and "no dead letter with id nope" in missing.output
    assert asyncio.run(depth(dead)) == 4
    assert listed(dead, tmp_path) == ["ce-1", "ce-2", "ce-3", "ce-4"]  # order kept


def test_list_filters_by_type_and_reason(dead: str, tmp_path: Path) -> None:
    assert listed(dead, tmp_path, "--type", EVENT) == ["ce-2"]
    assert listed(dead, tmp_path, "--type", "notify.notice.requested") == ["ce-1", "ce-3", "ce-4"]
    assert listed(dead, tmp_path, "--reason", "UNKNOWN ks") == ["ce-1", "ce-4"]
    assert listed(dead, tmp_path, "--type", NOTICE, "--reason", "Field required") == ["ce-3"]
    assert asyncio.run(depth(dead)) == 4


def test_purge_by_type_and_reason_keeps_the_rest_in_order(dead: str, tmp_path: Path) -> None:
    refused = kranj(dead, tmp_path, "dlq", "purge")
    assert refused.exit_code == 2 and "--all" in refused.output

    dry = kranj(dead, tmp_path, "dlq", "purge", "--reason", "unknown KS", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "2 dead letter(s) would purge" in dry.stdout
    assert asyncio.run(depth(dead)) == 4

    purged = kranj(dead, tmp_path, "dlq", "purge", "--type", NOTICE, "--reason", "unknown KS")
    assert purged.exit_code == 0, purged.output
    assert "purged ce-1" in purged.stdout and "purged ce-4" in purged.stdout
    assert "2 dead letter(s) purged, 2 kept" in purged.stdout
    assert listed(dead, tmp_path) == ["ce-2", "ce-3"]

    by_id = kranj(dead, tmp_path, "dlq", "purge", "--id", "ce-3")
    assert "1 dead letter(s) purged, 1 kept" in by_id.stdout
    assert kranj(dead, tmp_path, "dlq", "purge", "--all").exit_code == 0
    assert asyncio.run(depth(dead)) == 0
