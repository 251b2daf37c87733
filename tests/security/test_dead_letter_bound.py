"""Issue 15, minor: "`kranj.dead` has no bound (a 5 MB message was parked)."

- The broker refuses messages larger than 1 MiB (deploy/rabbitmq/rabbitmq.conf, mounted by
  compose), and the platform's own envelope limit is not larger.
- kranj.dead is bounded by the policy `kranj-dead` of deploy/rabbitmq/definitions.json: at
  the bound the oldest dead letter is dropped into kranj.dead.overflow, and `kranj status`
  warns (a WARNING line, exit code 1) from 80 % of the bound and whenever anything was
  dropped. Proven on the real broker with the same policy and a bound of 5.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import Any

import aio_pika
import pytest
import yaml
from support.rabbit import rabbitmqctl, vhost_of
from support.settings import make_settings, wait_until
from typer.testing import CliRunner

from kranj.cli import app
from shared.bus import (
    DEAD_MAX_BYTES,
    DEAD_MAX_LENGTH,
    DEAD_OVERFLOW_NAME,
    DEAD_QUEUE_NAME,
    DLX_NAME,
    declare_topology,
    make_broker,
)
from shared.contracts.envelope import MAX_BODY_BYTES

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = json.loads((ROOT / "deploy" / "rabbitmq" / "definitions.json").read_text())
SMALL = 5


def test_the_broker_refuses_messages_larger_than_the_platform_accepts() -> None:
    conf = (ROOT / "deploy" / "rabbitmq" / "rabbitmq.conf").read_text()
    [size] = re.findall(r"^max_message_size\s*=\s*(\d+)\s*$", conf, re.MULTILINE)
    assert MAX_BODY_BYTES <= int(size) <= 1024 * 1024
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["rabbitmq"]["volumes"]
    assert "./deploy/rabbitmq/rabbitmq.conf:/etc/rabbitmq/conf.d/90-kranj.conf:ro" in mounts
    # kranj.dead keeps at most DEAD_MAX_LENGTH messages of that size, and DEAD_MAX_BYTES in all.
    [policy] = [p for p in DEFINITIONS["policies"] if p["name"] == "kranj-dead"]
    assert policy["definition"]["max-length"] == DEAD_MAX_LENGTH
    assert policy["definition"]["max-length-bytes"] == DEAD_MAX_BYTES
    assert policy["definition"]["overflow"] == "drop-head"


async def _dead_letter(url: str, first: int, count: int) -> None:
    """What Bus.dead_letter does: a copy to kranj.dlx with the reason, confirmed."""
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        dlx = await channel.get_exchange(DLX_NAME, ensure=False)
        for i in range(first, first + count):
            await dlx.publish(
                aio_pika.Message(
                    json.dumps({"id": f"m{i}"}).encode(),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    headers={"x-kranj-reason": "test"},
                ),
                routing_key="notify.notice.requested",
                timeout=10,
            )


async def _ids(url: str, queue_name: str) -> list[str]:
    """The ids in `queue_name`, oldest first (browsed and handed back)."""
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(queue_name, ensure=False)
        taken = []
        while (message := await queue.get(fail=False, timeout=10)) is not None:
            taken.append(message)
        ids = [json.loads(m.body)["id"] for m in taken]
        if taken:
            await taken[-1].nack(multiple=True, requeue=True)
        return ids


async def _depth(url: str, queue_name: str) -> int:
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        return queue.declaration_result.message_count or 0


def kranj_status(tmp_path: Path, amqp_url: str, *args: str) -> Any:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("KRANJ_")}
    env.update({f"KRANJ_{s.upper()}_PORT": "1" for s in ("events", "booking", "surveys", "notify")})
    env.update({"KRANJ_AMQP_URL": amqp_url, "KRANJ_DATA_DIR": str(tmp_path / "var"), "KRANJ_DEAD_MAX_LENGTH": str(SMALL)})
    return CliRunner().invoke(app, ["status", *args], env=env)


def _warnings(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("WARNING:")]


async def test_a_full_dead_letter_queue_drops_the_oldest_and_tells_ops(amqp_url: str, tmp_path: Path) -> None:
    broker = make_broker(make_settings(tmp_path, amqp_url), "ops")
    await broker.connect()
    try:
        await declare_topology(broker)
    finally:
        await broker.stop()
    # The policy of the definitions, with a bound of 5 for this vhost.
    [policy] = [p for p in DEFINITIONS["policies"] if p["name"] == "kranj-dead"]
    definition = {**policy["definition"], "max-length": SMALL}
    vhost = vhost_of(amqp_url)
    await asyncio.to_thread(
        rabbitmqctl,
        "set_policy", "-p", vhost, "--priority", str(policy["priority"]), "--apply-to", "queues",
        policy["name"], policy["pattern"], json.dumps(definition),
    )  # fmt: skip

    async def applied() -> bool:
        out = await asyncio.to_thread(rabbitmqctl, "list_queues", "-p", vhost, "name", "policy", "--formatter", "json")
        return any(q["name"] == DEAD_QUEUE_NAME and q["policy"] == "kranj-dead" for q in json.loads(out))

    await wait_until(applied, timeout=20, interval=0.5, message="policy kranj-dead applied")

    # Three dead letters (60 %): no warning.
    await _dead_letter(amqp_url, 0, 3)
    result = await asyncio.to_thread(kranj_status, tmp_path, amqp_url)
    assert "Dead letters: 3 of at most 5" in result.stdout, result.stdout
    assert _warnings(result.stdout) == [], result.stdout

    # Four (80 %): a warning, exit code 1.
    await _dead_letter(amqp_url, 3, 1)
    result = await asyncio.to_thread(kranj_status, tmp_path, amqp_url)
    [warning] = _warnings(result.stdout)
    assert "kranj.dead holds 4 of at most 5 dead letters (80 %)" in warning
    assert result.exit_code == 1

    # Four more: the bound holds, the three oldest went to kranj.dead.overflow, ops are told.
    await _dead_letter(amqp_url, 4, 4)
    assert await _depth(amqp_url, DEAD_QUEUE_NAME) == SMALL
    # Oldest first: the first three (m0, m1, m2) were dropped, the newest five are kept.
    assert await _ids(amqp_url, DEAD_QUEUE_NAME) == ["m3", "m4", "m5", "m6", "m7"]
    assert await _ids(amqp_url, DEAD_OVERFLOW_NAME) == ["m0", "m1", "m2"]
    result = await asyncio.to_thread(kranj_status, tmp_path, amqp_url)
    warnings = _warnings(result.stdout)
    assert any("kranj.dead holds 5 of at most 5 dead letters (100 %)" in w for w in warnings), result.stdout
    assert any(w.startswith("WARNING: 3 dead letters were dropped from kranj.dead") for w in warnings), result.stdout
    assert result.exit_code == 1
    report = json.loads((await asyncio.to_thread(kranj_status, tmp_path, amqp_url, "--json")).stdout)
    assert len(report["warnings"]) == 2 and report["healthy"] is False

