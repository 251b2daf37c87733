"""Issue 15, minor: "Per-service broker users can delete the `kranj` exchange and
`kranj.dead`, consume other services' queues and bind `#`."

Against the real broker, with the users' permissions and topic permissions of
deploy/rabbitmq/definitions.json (what compose imports), applied to a vhost of this module's
own with `rabbitmqctl` commands made from that file (deploy/rabbitmq/rabbitmqctl_commands.py):
the notify service's user tries what an attacker holding its password would, and is refused;
what notify needs to do still works, the real notify service included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import runpy
import secrets
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import pytest
from conftest import RABBIT_HOST, RABBIT_PORT, make_settings, rabbitmqctl, require_broker, vhost_url
from support.rabbit import rabbitmqctl_batch
from support.times import utc_iso

from services.notify import subscribers as notify_subscribers
from services.notify.app import create_app as create_notify
from shared.bus import (
    DEAD_QUEUE_NAME,
    DLX_NAME,
    EXCHANGE_NAME,
    QUEUES,
    REJECTED_QUEUE_NAME,
    declare_topology,
    make_broker,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = json.loads((ROOT / "deploy" / "rabbitmq" / "definitions.json").read_text())
CTL = runpy.run_path(str(ROOT / "deploy" / "rabbitmq" / "rabbitmqctl_commands.py"))
USERS = ("kranj-notify", "kranj-booking", "kranj-events", "kranj-outside")
NOTIFY_QUEUE = "notify.on-notice-requested"


class Vhost:
    def __init__(self, name: str, users: dict[str, str]) -> None:
        self.name = name
        self.users = users  # user of the file -> user in the broker

    def url(self, user: str) -> str:
        name = self.users[user]
        return (
            f"amqp://{urllib.parse.quote(name, safe='')}:{_password(name)}@{RABBIT_HOST}:{RABBIT_PORT}/"
            f"{urllib.parse.quote(self.name, safe='')}"
        )


def _password(name: str) -> str:
    return f"placeholder-{name}"  # test only, never a real password


async def _declare_as_ops(url: str) -> None:
    """What rabbitmq-init's import creates: every exchange, queue and binding."""
    broker = make_broker(make_settings(Path("/nonexistent"), url), "ops")
    await broker.connect()
    try:
        await declare_topology(broker)
    finally:
        await broker.stop()


@pytest.fixture(scope="module")
def vhost() -> Iterator[Vhost]:
    with _new_vhost() as made:
        yield made


@pytest.fixture
def own_vhost() -> Iterator[Vhost]:
    """A vhost of its own: the real notify started there sends only what its test publishes
    (the module's privilege checks leave notices and facts in the shared one)."""
    with _new_vhost() as made:
        yield made


@contextlib.contextmanager
def _new_vhost() -> Iterator[Vhost]:
    """A vhost with the broker definitions' users, permissions and policies."""
    require_broker()
    suffix = secrets.token_hex(4)
    name = f"kranj-test-priv-{suffix}"
    users = {user: f"{user}-{suffix}" for user in USERS}
    # Users, vhosts and rights in one `rabbitmqctl eval` each (support.rabbit); the policies
    # as the deploy file's own `set_policy` commands.
    rabbitmqctl_batch([["add_vhost", name], ["set_permissions", "-p", name, "guest", ".*", ".*", ".*"]])
    try:
        asyncio.run(_declare_as_ops(vhost_url(name)))
        for command in CTL["policy_commands"](DEFINITIONS, name):
            rabbitmqctl(*command)
        rabbitmqctl_batch(
            [["add_user", broker_user, _password(broker_user)] for broker_user in users.values()]
            + CTL["access_commands"](DEFINITIONS, name, users=USERS, rename=users.__getitem__)
        )
        yield Vhost(name, users)
    finally:
        rabbitmqctl_batch(
            [["delete_user", broker_user] for broker_user in users.values()] + [["delete_vhost", name]], cleanup=True
        )


def notice(**data: Any) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "/komunala-kranj/outages",
            "type": "si.kranj.notify.notice.requested.v1",
            "time": utc_iso(),
            "data": {
                "title": "Izklop vode na Primskovem",
                "body": "V četrtek med 8. in 12. uro ne bo vode.",
                "ks": ["primskovo"],
                "topic": "utilities",
                **data,
            },
        },
        ensure_ascii=False,
    ).encode()


Action = Callable[[aio_pika.abc.AbstractChannel], Awaitable[Any]]


async def refused(url: str, action: Action) -> str:
    """`action` on a fresh channel must be refused with ACCESS_REFUSED; returns the reason."""
    connection = await aio_pika.connect(url, timeout=10)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused) as info:
            await asyncio.wait_for(action(channel), timeout=10)
        assert "ACCESS_REFUSED" in str(info.value)
        return str(info.value)
    finally:
        await connection.close()


async def allowed(url: str, action: Action) -> Any:
    connection = await aio_pika.connect(url, timeout=10)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        return await asyncio.wait_for(action(channel), timeout=10)
    finally:
        await connection.close()


def publish(routing_key: str, exchange: str = EXCHANGE_NAME, user_id: str | None = None) -> Action:
    async def go(channel: aio_pika.abc.AbstractChannel) -> Any:
        target = await channel.get_exchange(exchange, ensure=False)
        message = aio_pika.Message(notice(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT, user_id=user_id)
        return await target.publish(message, routing_key=routing_key, mandatory=True, timeout=10)

    return go


async def _requeue(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    await message.nack(requeue=True)


def consume(queue_name: str) -> Action:
    async def go(channel: aio_pika.abc.AbstractChannel) -> Any:
        queue = await channel.get_queue(queue_name, ensure=False)
        tag = await queue.consume(_requeue)
        await queue.cancel(tag)
        return tag

    return go


def purge(queue_name: str) -> Action:
    async def go(channel: aio_pika.abc.AbstractChannel) -> Any:
        return await (await channel.get_queue(queue_name, ensure=False)).purge()

    return go


def bind(queue_name: str, routing_key: str, exchange: str = EXCHANGE_NAME) -> Action:
    async def go(channel: aio_pika.abc.AbstractChannel) -> Any:
        queue = await channel.get_queue(queue_name, ensure=False)
        return await queue.bind(exchange, routing_key=routing_key)

    return go


async def _exists(kind: str, name: str, vhost: Vhost) -> bool:
    connection = await aio_pika.connect(vhost_url(vhost.name), timeout=10)
    async with connection:
        channel = await connection.channel()
        try:
            if kind == "exchange":
                await channel.declare_exchange(name, passive=True)
            else:
                await channel.declare_queue(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
        return True


async def test_a_service_user_cannot_delete_the_exchanges_or_the_dead_letters(vhost: Vhost) -> None:
    url = vhost.url("kranj-notify")
    for exchange in (EXCHANGE_NAME, DLX_NAME):
        await refused(url, lambda ch, e=exchange: ch.exchange_delete(e))
        # ... nor redeclare it with other properties, nor declare an exchange of its own
        await refused(url, lambda ch, e=exchange: ch.declare_exchange(e, aio_pika.ExchangeType.TOPIC, durable=True))
    await refused(url, lambda ch: ch.declare_exchange("notify.mine", aio_pika.ExchangeType.FANOUT))
    for queue in (DEAD_QUEUE_NAME, REJECTED_QUEUE_NAME, "booking.on-room-requested"):
        await refused(url, lambda ch, q=queue: ch.queue_delete(q))
    await refused(url, purge(DEAD_QUEUE_NAME))
    for kind, name in (("exchange", EXCHANGE_NAME), ("exchange", DLX_NAME), ("queue", DEAD_QUEUE_NAME)):
        assert await _exists(kind, name, vhost), f"{kind} {name} is gone"
    # Every service user alike.
    for user in ("kranj-booking", "kranj-events"):
        await refused(vhost.url(user), lambda ch: ch.exchange_delete(EXCHANGE_NAME))
        await refused(vhost.url(user), lambda ch: ch.queue_delete(DEAD_QUEUE_NAME))


async def test_a_service_user_cannot_read_other_services_queues_or_the_dead_letters(vhost: Vhost) -> None:
    url = vhost.url("kranj-notify")
    for queue in ("booking.on-room-requested", "events.on-booking-changed", DEAD_QUEUE_NAME, REJECTED_QUEUE_NAME):
        await refused(url, consume(queue))
    await refused(vhost.url("kranj-booking"), consume(NOTIFY_QUEUE))
    await refused(vhost.url("kranj-events"), consume("booking.on-room-requested"))
    # A queue of its own to read everything through: neither declared nor server-named.
    await refused(url, lambda ch: ch.declare_queue("notify.spy", durable=True))
    await refused(url, lambda ch: ch.declare_queue(exclusive=True))


async def test_a_service_user_cannot_bind_everything_to_its_own_queue(vhost: Vhost) -> None:
    """Binding needs write on the queue, read on the exchange and, on a topic exchange, a
    binding key its topic permission allows: only the keys of its own queues."""
    url = vhost.url("kranj-notify")
    for key in ("#", "*.*.*", "booking.#", "booking.room.requested", "events.registration.*.x"):
        await refused(url, bind(NOTIFY_QUEUE, key))
    await refused(url, bind(NOTIFY_QUEUE, "", exchange=DLX_NAME))  # every dead letter
    await refused(vhost.url("kranj-booking"), bind("booking.on-room-requested", "#"))
    # Its own keys still bind (what it does at every start).
    await allowed(url, bind(NOTIFY_QUEUE, "notify.notice.requested"))
    await allowed(url, bind("notify.on-booking-changed", "booking.booking.*"))


async def test_a_service_user_publishes_only_its_own_routing_keys(vhost: Vhost) -> None:
    url = vhost.url("kranj-notify")
    for key in ("events.event.published", "booking.booking.confirmed", "surveys.x.y"):
        reason = await refused(url, publish(key))
        assert key in reason  # "... access to topic 'kranj' ... refused" names the key
    await refused(vhost.url("kranj-booking"), publish("events.event.published"))
    await refused(vhost.url("kranj-outside"), publish("events.event.published"))
    await refused(vhost.url("kranj-outside"), publish("notify.notice.requested", exchange=DLX_NAME))
    # Its own facts, rejections and dead-lettering with a reason are confirmed.
    user = vhost.users["kranj-notify"]
    # ... and the notices its staff pages send (notify.notice.requested from its own outbox).
    for key in ("notify.delivery.sent", "bus.message.rejected", "notify.notice.requested"):
        assert isinstance(await allowed(url, publish(key, user_id=user)), aiormq.spec.Basic.Ack)
    for other in ("kranj-events", "kranj-booking"):  # no other service sends notices
        await refused(vhost.url(other), publish("notify.notice.requested"))
    assert isinstance(await allowed(url, publish("x", exchange=DLX_NAME)), aiormq.spec.Basic.Ack)
    events = vhost.users["kranj-events"]
    ack = await allowed(vhost.url("kranj-events"), publish("events.event.published", user_id=events))
    assert isinstance(ack, aiormq.spec.Basic.Ack)
    ack = await allowed(vhost.url("kranj-outside"), publish("notify.notice.requested"))
    assert isinstance(ack, aiormq.spec.Basic.Ack)


@pytest.mark.parametrize("service", ["notify", "booking", "events"])
async def test_each_service_starts_its_bus_under_least_privilege(vhost: Vhost, service: str, tmp_path: Path) -> None:
    """What every service does at start: declare (same arguments) and bind its own queues,
    connect to the exchanges and shared queues without declaring them."""
    url = vhost.url(f"kranj-{service}")
    broker = make_broker(make_settings(tmp_path, url), service)
    await broker.connect()
    try:
        await declare_topology(broker, service, amqp_url=url)
        for spec in QUEUES.values():
            if spec.service == service:
                await broker.declare_queue(spec.rabbit_queue())
    finally:
        await broker.stop()


async def test_the_real_notify_service_works_as_its_own_least_privileged_user(
    own_vhost: Vhost, tmp_path: Path, database_url: str, smtp_server: Any, sms_gateway: Any
) -> None:
    """notify starts (declares its queues, binds them, consumes), takes an outside system's
    notice, sends it and publishes notify.delivery.sent (v1) and its page of outcomes
    (notify.delivery.outcomes v2) as `kranj-notify`."""
    settings = make_settings(
        tmp_path,
        own_vhost.url("kranj-notify"),
        notify_database_url=database_url,
        retry_base_seconds=0.05,
        **smtp_server.settings(),
        **sms_gateway.settings(),
    )
    outcomes = await _drain_outcomes(own_vhost)  # empty: a vhost of its own
    app = create_notify(settings)
    async with app.router.lifespan_context(app):
        await notify_subscribers.add_subscriber(
            app.state.ctx.db,
            notify_subscribers.SubscriberIn(email="ana.novak@example.si", ks=["primskovo"], topics=["utilities"]),
        )
        ack = await allowed(own_vhost.url("kranj-outside"), publish("notify.notice.requested"))
        assert isinstance(ack, aiormq.spec.Basic.Ack)
        [mail] = await smtp_server.wait_for(1, timeout=20)
        assert mail.rcpt_tos == ["ana.novak@example.si"]
        outcomes = []
        for _ in range(100):
            outcomes += await _drain_outcomes(own_vhost)
            if {m.routing_key for m in outcomes} == {"notify.delivery.sent", "notify.delivery.outcomes"}:
                break
            await asyncio.sleep(0.1)
    # One outcome of one delivery, as a v1 fact and in a v2 page. The outbox relay publishes at
    # least once: a copy of the same message (same id) after a mark that did not commit is
    # allowed; consumers dedupe.
    ids = {m.routing_key: m.message_id for m in outcomes}
    assert {(m.routing_key, m.message_id) for m in outcomes} == {
        ("notify.delivery.sent", ids.get("notify.delivery.sent")),
        ("notify.delivery.outcomes", ids.get("notify.delivery.outcomes")),
    }
    assert len(smtp_server.messages) == 1, [
        (m.message["Subject"], m.message["Message-ID"]) for m in smtp_server.messages
    ]  # and the email went once
    assert {m.user_id for m in outcomes} == {own_vhost.users["kranj-notify"]}


async def _drain_outcomes(vhost: Vhost) -> list[aio_pika.abc.AbstractIncomingMessage]:
    connection = await aio_pika.connect(vhost_url(vhost.name), timeout=10)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue("notify.delivery-outcomes", ensure=False)
        taken = []
        while (message := await queue.get(fail=False, no_ack=True, timeout=10)) is not None:
            taken.append(message)
        return taken
