"""deploy/rabbitmq/definitions.json loaded into the real broker: every user may do what its
job needs and no more.

The file is copied with its vhost `kranj` and user names made unique (a random suffix), the
users get placeholder passwords through deploy/rabbitmq/render_definitions.py (the same
script compose runs), and `rabbitmqctl import_definitions` loads it. The users and the
vhost are deleted at the end.
"""

from __future__ import annotations

import asyncio
import json
import runpy
import secrets
import shutil
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import pytest
from support.rabbit import RABBIT_HOST, RABBIT_PORT, rabbitmqctl, rabbitmqctl_batch, require_broker
from support.settings import make_settings

from shared.bus import declare_topology, make_broker

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = ROOT / "deploy" / "rabbitmq" / "definitions.json"
RENDER = runpy.run_path(str(ROOT / "deploy" / "rabbitmq" / "render_definitions.py"))
SERVICES = ("events", "booking", "surveys", "notify")


def notice_body() -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": secrets.token_hex(8),
            "source": "/komunala-kranj/outages",
            "type": "si.kranj.notify.notice.requested.v1",
            "datacontenttype": "application/json",
            "data": {"title": "Izklop vode", "body": "Jutri od 8.00 do 12.00.", "ks": ["primskovo"]},
        }
    ).encode()


class Loaded:
    def __init__(self, vhost: str, users: dict[str, str], passwords: dict[str, str]) -> None:
        self.vhost = vhost
        self.users = users  # name in the file -> name in the broker
        self.passwords = passwords  # name in the broker -> placeholder password

    def url(self, user: str) -> str:
        name = self.users[user]
        return (
            f"amqp://{urllib.parse.quote(name, safe='')}:{self.passwords[name]}@{RABBIT_HOST}:{RABBIT_PORT}/"
            f"{urllib.parse.quote(self.vhost, safe='')}"
        )


def rewrite(definitions: dict[str, Any], vhost: str, suffix: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The same definitions with vhost `kranj` renamed and every user name suffixed."""
    users = {u["name"]: f"{u['name']}-{suffix}" for u in definitions["users"]}
    out = json.loads(json.dumps(definitions))
    for section, items in out.items():
        if not isinstance(items, list):
            continue
        for item in items:
            if section == "vhosts":
                item["name"] = vhost
            elif item.get("vhost") == "kranj":
                item["vhost"] = vhost
            if section == "users":
                item["name"] = users[item["name"]]
            elif section in ("permissions", "topic_permissions"):
                item["user"] = users[item["user"]]
    return out, users


@pytest.fixture(scope="module")
def loaded() -> Iterator[Loaded]:
    require_broker()
    suffix = secrets.token_hex(4)
    vhost = f"kranj-test-defs-{suffix}"
    definitions, users = rewrite(json.loads(DEFINITIONS.read_text()), vhost, suffix)
    passwords = {name: f"placeholder-{name}" for name in users.values()}  # test only, never real
    rendered = RENDER["render"](definitions, passwords)
    # rabbitmqctl run by root switches to the rabbitmq user, so the file must be readable by
    # others (placeholder passwords only); 3.10's CLI does not take "-" (stdin) here.
    folder = Path(tempfile.mkdtemp(prefix="kranj-defs-"))
    folder.chmod(0o755)
    path = folder / "definitions.json"
    path.write_text(json.dumps(rendered))
    path.chmod(0o644)
    try:
        rabbitmqctl("import_definitions", str(path))
        yield Loaded(vhost, users, passwords)
    finally:
        rabbitmqctl_batch([["delete_user", name] for name in users.values()] + [["delete_vhost", vhost]], cleanup=True)
        shutil.rmtree(folder, ignore_errors=True)


async def expect_refused(url: str, action: Any) -> None:
    """`action(channel)` on a fresh channel of `url` must fail with ACCESS_REFUSED."""
    connection = await aio_pika.connect(url, timeout=10)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused) as info:
            await asyncio.wait_for(action(channel), timeout=10)
        assert "ACCESS_REFUSED" in str(info.value)
    finally:
        await connection.close()


async def publish(channel: aio_pika.abc.AbstractChannel, routing_key: str, exchange: str = "kranj") -> Any:
    target = await channel.get_exchange(exchange, ensure=False)
    return await target.publish(
        aio_pika.Message(notice_body(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
        routing_key=routing_key,
        mandatory=True,
        timeout=10,
    )


def test_the_file_loads_users_permissions_and_policies(loaded: Loaded) -> None:
    users = rabbitmqctl("list_users", "--formatter", "json")
    names = {u["user"] for u in json.loads(users)}
    assert set(loaded.users.values()) <= names
    policies = {p["name"] for p in json.loads(rabbitmqctl("list_policies", "-p", loaded.vhost, "--formatter", "json"))}
    assert {"kranj-quorum", "kranj-dead", "kranj-rejected"} <= policies
    queues = json.loads(rabbitmqctl("list_queues", "-p", loaded.vhost, "name", "policy", "type", "--formatter", "json"))
    by_name = {q["name"]: q for q in queues}
    assert by_name["notify.on-notice-requested"]["policy"] == "kranj-quorum"
    assert by_name["notify.on-notice-requested"]["type"] == "quorum"
    assert by_name["kranj.dead"]["policy"] == "kranj-dead"


async def test_outside_system_may_only_publish_notice_requests(loaded: Loaded) -> None:
    url = loaded.url("kranj-outside")

    # The one thing it may do: publish notify.notice.requested on `kranj`, confirmed.
    connection = await aio_pika.connect(url, timeout=10)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        confirmation = await publish(channel, "notify.notice.requested")
        assert isinstance(confirmation, aiormq.spec.Basic.Ack)
    finally:
        await connection.close()

    # Everything else is ACCESS_REFUSED.
    await expect_refused(url, lambda ch: publish(ch, "events.event.published"))
    await expect_refused(url, lambda ch: publish(ch, "bus.message.rejected"))
    await expect_refused(url, lambda ch: publish(ch, "notify.notice.requested", exchange="kranj.dlx"))
    await expect_refused(url, lambda ch: ch.declare_queue("komunala.inbox", durable=True))
    await expect_refused(url, lambda ch: ch.declare_queue(exclusive=True))  # server-named
    await expect_refused(url, lambda ch: ch.declare_exchange("komunala", aio_pika.ExchangeType.FANOUT))
    await expect_refused(url, lambda ch: _basic_get(ch, "notify.on-notice-requested"))
    await expect_refused(url, lambda ch: _basic_get(ch, "kranj.rejected"))


async def _basic_get(channel: aio_pika.abc.AbstractChannel, queue_name: str) -> Any:
    queue = await channel.get_queue(queue_name, ensure=False)
    return await queue.get(fail=False, timeout=10)


async def test_notify_consumes_its_queues(loaded: Loaded) -> None:
    outside = await aio_pika.connect(loaded.url("kranj-outside"), timeout=10)
    try:
        channel = await outside.channel(publisher_confirms=True, on_return_raises=True)
        await publish(channel, "notify.notice.requested")
    finally:
        await outside.close()

    connection = await aio_pika.connect(loaded.url("kranj-notify"), timeout=10)
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=10)
        for name in ("notify.on-notice-requested", "notify.on-event-published"):
            queue = await channel.get_queue(name, ensure=False)
            got: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
            tag = await queue.consume(got.put)
            if name == "notify.on-notice-requested":
                message = await asyncio.wait_for(got.get(), timeout=10)
                assert json.loads(message.body)["type"] == "si.kranj.notify.notice.requested.v1"
                await message.ack()
            await queue.cancel(tag)
        # Dead-lettering with a reason: a copy to kranj.dlx and bus.message.rejected on kranj.
        publisher = await connection.channel(publisher_confirms=True, on_return_raises=True)
        assert isinstance(
            await publish(publisher, "notify.notice.requested", exchange="kranj.dlx"), aiormq.spec.Basic.Ack
        )
        assert isinstance(await publish(publisher, "bus.message.rejected"), aiormq.spec.Basic.Ack)
    finally:
        await connection.close()

    # It reads no dead letters (that is the ops user's job) and publishes no other domain's facts.
    url = loaded.url("kranj-notify")
    await expect_refused(url, lambda ch: _basic_get(ch, "kranj.dead"))
    await expect_refused(url, lambda ch: publish(ch, "events.event.published"))


@pytest.mark.parametrize("service", SERVICES)
async def test_each_service_user_can_declare_the_topology(loaded: Loaded, service: str, tmp_path: Path) -> None:
    """What every service does at start (shared.bus.declare_topology), as its own user: it
    declares and binds its own queues and only checks the rest (least privilege)."""
    url = loaded.url(f"kranj-{service}")
    broker = make_broker(make_settings(tmp_path, url), service)
    await broker.connect()
    try:
        await declare_topology(broker, service, amqp_url=url)
        await broker.publish(
            notice_body(),
            exchange="kranj",
            routing_key="bus.message.rejected",
            persist=True,
            mandatory=True,
        )
    finally:
        await broker.stop()
