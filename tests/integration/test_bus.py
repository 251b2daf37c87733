"""shared/bus.py against the real RabbitMQ and both databases: plain-AMQP publishers,
inbox deduplication, dead letters with reasons, handler retries, the outbox across a
broker outage, and mandatory publishing.

Every test has a vhost of its own (`amqp_url`), so `kranj.dead` and `kranj.rejected`
hold only what the test itself caused.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import pytest
from prometheus_client import REGISTRY
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession
from support.rabbit import publish_bare
from support.settings import make_settings, wait_until
from support.times import utc_iso

import shared.broker
import shared.inbox
from services.events import service as events_service
from services.events.models import Event
from services.events.schemas import EventIn
from shared.auth import Staff
from shared.bus import (
    DEAD_QUEUE_NAME,
    EXCHANGE_NAME,
    HANDLER_ATTEMPTS,
    HEADER_QUEUE,
    HEADER_REASON,
    HEADER_ROUTING_KEY,
    QUEUES,
    REJECTED_QUEUE_NAME,
    Bus,
    Handles,
    QueueSpec,
    publish_envelope,
)
from shared.contracts import (
    MESSAGE_REJECTED,
    NOTICE_REQUESTED,
    CloudEvent,
    NoticeRequested,
)
from shared.db import Database
from shared.migrations import upgrade_async
from shared.models import OutboxMessage, ProcessedMessage, utcnow

pytestmark = pytest.mark.integration

ROUTING_KEY = NOTICE_REQUESTED.routing_key  # notify.notice.requested
TEST_QUEUE = QueueSpec(
    "events.test-notices", "events", (ROUTING_KEY,), "A test consumer of notify.notice.requested."
)
# declared by shared.bus.declare_topology and bound to the same key, never consumed here:
# it keeps a copy of every message exactly as the publisher sent it
WITNESS_QUEUE = "notify.on-notice-requested"
STAFF = Staff("t", "admin", ("*",))


def notice(
    *, id: str | None = None, source: str = "/komunala-kranj/outages", **data: Any
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": id or str(uuid.uuid4()),
        "source": source,
        "type": NOTICE_REQUESTED.type,
        "time": utc_iso(),
        "datacontenttype": "application/json",
        "data": {"title": "Izklop vode", "body": "Jutri med 8. in 12. uro ne bo vode.", "ks": ["primskovo"], **data},
    }


def consumed(outcome: str, ce_type: str = NOTICE_REQUESTED.type) -> float:
    labels = {"service": "events", "queue": TEST_QUEUE.name, "type": ce_type, "outcome": outcome}
    return REGISTRY.get_sample_value("kranj_messages_consumed_total", labels) or 0.0


class Counts:
    """Deltas of the consumer's outcome counter since creation (the metric is process-wide)."""

    def __init__(self) -> None:
        self._start = {k: self._read(k) for k in self._keys()}

    @staticmethod
    def _keys() -> list[tuple[str, str]]:
        return [(o, t) for o in ("processed", "duplicate", "dead_lettered", "retried", "ignored") for t in (NOTICE_REQUESTED.type, "unknown")]

    @staticmethod
    def _read(key: tuple[str, str]) -> float:
        return consumed(key[0], key[1])

    def __call__(self, outcome: str) -> int:
        return int(sum(self._read((outcome, t)) - self._start[(outcome, t)] for t in (NOTICE_REQUESTED.type, "unknown")))


@dataclass
class Harness:
    """The events service's database and a Bus with one test consumer on TEST_QUEUE."""

    settings: Any
    db: Database
    bus: Bus
    amqp: aio_pika.abc.AbstractRobustConnection
    channel: aio_pika.abc.AbstractChannel
    direct_url: str
    calls: list[str] = field(default_factory=list)
    fail_times: int = 0  # the handler raises this many more times
    error_text: str = "the printer is on fire"
    fail_first: dict[str, int] = field(default_factory=dict)  # id -> how many of its first calls raise

    async def handler(self, session: AsyncSession, envelope: CloudEvent, data: NoticeRequested) -> None:
        self.calls.append(envelope.id)
        if self.fail_first.get(envelope.id):
            self.fail_first[envelope.id] -= 1
            raise RuntimeError(self.error_text)
        if self.fail_times:
            self.fail_times -= 1
            raise RuntimeError(self.error_text)
        now = utcnow()
        session.add(
            Event(
                ks=data.ks[0],
                title=data.title,
                starts_at=now,
                ends_at=now + timedelta(hours=1),
                venue="test",
                created_by=f"{envelope.source}#{envelope.id}",
            )
        )

    async def publish_plain(self, body: bytes | str, routing_key: str = ROUTING_KEY) -> None:
        """Like a shell `amqp-publish`: no AMQP properties at all."""
        await publish_bare(self.direct_url, body, routing_key=routing_key)

    async def rows(self) -> int:
        async with self.db.session() as session:
            return (await session.exec(select(func.count()).select_from(Event))).one()

    async def processed(self) -> list[ProcessedMessage]:
        async with self.db.session() as session:
            return list((await session.exec(select(ProcessedMessage))).all())

    async def drain(self, queue: str, count: int, timeout: float = 10.0) -> list[aio_pika.abc.AbstractIncomingMessage]:
        """Take exactly `count` messages off `queue` (acked), failing after `timeout`."""
        q = await self.channel.get_queue(queue, ensure=True)
        got: list[aio_pika.abc.AbstractIncomingMessage] = []

        async def more() -> bool:
            while len(got) < count and (message := await q.get(no_ack=True, fail=False)) is not None:
                got.append(message)
            return len(got) >= count

        await wait_until(more, timeout=timeout, message=f"{count} message(s) on {queue}")
        await asyncio.sleep(0.2)
        extra = await q.get(no_ack=True, fail=False)
        assert extra is None, f"more than {count} message(s) on {queue}: {extra.body[:200]!r}"
        return got


async def make_harness(
    tmp_path: Path, amqp_url: str, database_url: str, *, relay: bool = False, direct_url: str | None = None
) -> Harness:
    """The Bus connects to `amqp_url`; the test's own publishing and inspection use
    `direct_url` (default: the same), so a proxy can cut the Bus away alone."""
    await upgrade_async("events", database_url)
    settings = make_settings(tmp_path, amqp_url, events_database_url=database_url)
    db = Database(database_url)
    bus = Bus(settings, "events", db)
    amqp = await aio_pika.connect_robust(direct_url or amqp_url)
    channel = await amqp.channel()
    harness = Harness(settings, db, bus, amqp, channel, direct_url or amqp_url)
    bus.consume(TEST_QUEUE, Handles(NOTICE_REQUESTED, harness.handler))
    await bus.start(relay=relay)
    return harness


async def close_harness(h: Harness) -> None:
    await h.bus.stop()
    await h.amqp.close()
    await h.db.dispose()


@pytest.fixture
async def harness(tmp_path: Path, amqp_url: str, database_url: str) -> AsyncIterator[Harness]:
    """A started Bus of the events service (no relay) with the test consumer."""
    h = await make_harness(tmp_path, amqp_url, database_url)
    yield h
    await close_harness(h)


def test_the_test_queue_is_not_part_of_the_platform_topology() -> None:
    assert TEST_QUEUE.name not in QUEUES and WITNESS_QUEUE in QUEUES


# --------------------------------------------------------------------------------------
# (a) a plain AMQP publisher, no properties at all
# --------------------------------------------------------------------------------------
async def test_message_without_any_amqp_properties_is_handled_once(harness: Harness) -> None:
    counts = Counts()
    body = notice(title="Zapora Ceste Staneta Žagarja")
    await harness.publish_plain(json.dumps(body, ensure_ascii=False))

    await wait_until(lambda: counts("processed") == 1, message="the message to be processed")
    assert harness.calls == [body["id"]]
    assert await harness.rows() == 1
    [seen] = await harness.processed()
    assert (seen.consumer, seen.source, seen.message_id, seen.type) == (
        TEST_QUEUE.name,
        "/komunala-kranj/outages",
        body["id"],
        NOTICE_REQUESTED.type,
    )
    # what was on the wire really carried no properties (a copy sits in the witness queue)
    [copy] = await harness.drain(WITNESS_QUEUE, 1)
    assert copy.content_type is None and copy.message_id is None and copy.type is None
    assert copy.delivery_mode in (None, aio_pika.DeliveryMode.NOT_PERSISTENT)
    assert set(copy.headers or {}) <= {"x-delivery-count"}  # only what the quorum queue adds
    await asyncio.sleep(0.3)
    assert len(harness.calls) == 1 and counts("dead_lettered") == 0


# --------------------------------------------------------------------------------------
# (b) the same message twice has the effect of one
# --------------------------------------------------------------------------------------
async def test_same_message_published_twice_is_handled_once(harness: Harness) -> None:
    counts = Counts()
    body = json.dumps(notice())
    # back to back: the two deliveries may be handled concurrently (aio-pika runs one task
    # per delivery, up to the prefetch); on PostgreSQL the second then loses the race on
    # processed_messages' primary key, its transaction rolls back and it counts as duplicate
    await harness.publish_plain(body)
    await harness.publish_plain(body)

    await wait_until(
        lambda: counts("processed") + counts("duplicate") == 2, message="both deliveries to be dealt with"
    )
    assert counts("processed") == 1 and counts("duplicate") == 1
    assert await harness.rows() == 1
    assert len(await harness.processed()) == 1
    calls = len(harness.calls)
    assert calls in (1, 2)

    # later: the inbox row is there, so the handler is not even called
    await harness.publish_plain(body)
    await wait_until(lambda: counts("duplicate") == 2, message="the third delivery to be skipped")
    assert len(harness.calls) == calls
    assert await harness.rows() == 1


async def test_dedupe_key_is_source_and_id(harness: Harness) -> None:
    counts = Counts()
    same_id = str(uuid.uuid4())
    # as FastStream would, with a different AMQP message_id per publish: the body decides
    exchange = await harness.channel.get_exchange(EXCHANGE_NAME)
    for message_id in ("amqp-1", "amqp-2"):
        await exchange.publish(
            aio_pika.Message(json.dumps(notice(id=same_id)).encode(), message_id=message_id), routing_key=ROUTING_KEY
        )
    await harness.publish_plain(json.dumps(notice(id=same_id, source="/elektro-gorenjska")))

    await wait_until(lambda: counts("processed") + counts("duplicate") == 3, message="three deliveries")
    assert counts("processed") == 2 and counts("duplicate") == 1
    assert await harness.rows() == 2
    assert sorted(p.source for p in await harness.processed()) == ["/elektro-gorenjska", "/komunala-kranj/outages"]


# --------------------------------------------------------------------------------------
# (c) messages that can never be processed: kranj.dead + bus.message.rejected
# --------------------------------------------------------------------------------------
async def test_bad_messages_are_dead_lettered_with_reasons_and_the_queue_moves_on(harness: Harness) -> None:
    counts = Counts()
    broken = notice()
    del broken["source"]
    unknown_ks = notice(ks=["primskovo", "atlantis"])
    good = notice(title="Dober")

    await harness.publish_plain(b"{this is not json")
    await harness.publish_plain(json.dumps(broken))
    await harness.publish_plain(json.dumps(unknown_ks))
    await harness.publish_plain(json.dumps(good))

    await wait_until(lambda: counts("processed") == 1, message="the good message after the bad ones")
    assert harness.calls == [good["id"]]
    assert await harness.rows() == 1

    dead = await harness.drain(DEAD_QUEUE_NAME, 3)
    by_reason: dict[str, aio_pika.abc.AbstractIncomingMessage] = {}
    for message in dead:
        headers = message.headers or {}
        assert headers[HEADER_QUEUE] == TEST_QUEUE.name
        assert headers[HEADER_ROUTING_KEY] == ROUTING_KEY
        by_reason[str(headers[HEADER_REASON])] = message
    reasons = sorted(by_reason)
    assert [r for r in reasons if r.startswith("body is not JSON")], reasons
    assert "not a valid CloudEvents 1.0 envelope: source: Field required" in reasons
    [ks_reason] = [r for r in reasons if "atlantis" in r]
    assert ks_reason.startswith("data does not match si.kranj.notify.notice.requested.v1: data.ks.1: unknown KS 'atlantis'")
    # the dead message is the original body, untouched
    assert by_reason[ks_reason].body == json.dumps(unknown_ks).encode()
    assert by_reason[next(r for r in reasons if r.startswith("body is not JSON"))].body == b"{this is not json"

    rejected = await harness.drain(REJECTED_QUEUE_NAME, 3)
    events = [json.loads(m.body) for m in rejected]
    assert all(e["type"] == MESSAGE_REJECTED.type and e["source"] == "/kranj/events" for e in events)
    assert all(m.content_type == "application/cloudevents+json" and m.delivery_mode == aio_pika.DeliveryMode.PERSISTENT for m in rejected)
    data = {e["data"]["reason"]: e["data"] for e in events}
    assert set(data) == set(reasons)
    assert data[ks_reason]["id"] == unknown_ks["id"]
    assert data[ks_reason]["source"] == "/komunala-kranj/outages"
    assert data[ks_reason]["type"] == NOTICE_REQUESTED.type
    assert data[ks_reason]["queue"] == TEST_QUEUE.name
    broken_data = data["not a valid CloudEvents 1.0 envelope: source: Field required"]
    assert broken_data["id"] == broken["id"] and broken_data.get("source") is None
    not_json = data[next(r for r in reasons if r.startswith("body is not JSON"))]
    assert not_json.get("id") is None and not_json.get("source") is None
    assert counts("dead_lettered") == 3


async def test_other_major_version_of_a_handled_type_is_dead_lettered(harness: Harness) -> None:
    counts = Counts()
    v2 = notice()
    v2["type"] = "si.kranj.notify.notice.requested.v2"
    await harness.publish_plain(json.dumps(v2))
    [dead] = await harness.drain(DEAD_QUEUE_NAME, 1)
    assert "unsupported version 'si.kranj.notify.notice.requested.v2'" in str(dead.headers[HEADER_REASON])
    assert harness.calls == [] and counts("processed") == 0


# --------------------------------------------------------------------------------------
# (d) a handler that keeps failing
# --------------------------------------------------------------------------------------
class FastSleep:
    """Stands in for the `asyncio` module inside shared.inbox (the Consumer): records the backoff delays and
    sleeps only briefly, so the retry test takes well under a second per attempt."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def sleep(self, delay: float, *args: Any) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0.01)

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


@pytest.fixture
def fast_sleep(monkeypatch: pytest.MonkeyPatch) -> FastSleep:
    fake = FastSleep()
    monkeypatch.setattr(shared.inbox, "asyncio", fake)
    return fake


async def test_failing_handler_is_retried_then_dead_lettered_with_the_error(
    harness: Harness, fast_sleep: FastSleep
) -> None:
    counts = Counts()
    harness.fail_times = 10**6
    harness.error_text = "database of kokoši is locked (test)"
    body = notice()
    await harness.publish_plain(json.dumps(body))

    [dead] = await harness.drain(DEAD_QUEUE_NAME, 1, timeout=20)
    reason = str(dead.headers[HEADER_REASON])
    assert reason == (
        f"handler failed {HANDLER_ATTEMPTS} times; last error: RuntimeError: database of kokoši is locked (test)"
    )
    assert harness.calls == [body["id"]] * HANDLER_ATTEMPTS
    assert fast_sleep.delays == [0.5, 1.0, 2.0, 4.0][: HANDLER_ATTEMPTS - 1]
    assert counts("retried") == HANDLER_ATTEMPTS - 1 and counts("dead_lettered") == 1
    assert await harness.rows() == 0 and await harness.processed() == []

    [rejected] = await harness.drain(REJECTED_QUEUE_NAME, 1)
    data = json.loads(rejected.body)["data"]
    assert (data["id"], data["source"], data["type"], data["reason"]) == (
        body["id"],
        body["source"],
        body["type"],
        reason,
    )

    # the queue is not blocked: the next message goes through
    harness.fail_times = 0
    await harness.publish_plain(json.dumps(notice()))
    await wait_until(lambda: counts("processed") == 1, message="the next message")
    assert await harness.rows() == 1


async def test_handler_that_recovers_is_handled_once_and_not_dead_lettered(
    harness: Harness, fast_sleep: FastSleep
) -> None:
    counts = Counts()
    harness.fail_times = 2
    body = notice()
    await harness.publish_plain(json.dumps(body))
    await wait_until(lambda: counts("processed") == 1, message="success on the third attempt")
    assert harness.calls == [body["id"]] * 3
    assert counts("retried") == 2 and counts("dead_lettered") == 0
    assert await harness.rows() == 1
    dead = await harness.channel.get_queue(DEAD_QUEUE_NAME, ensure=True)
    assert await dead.get(no_ack=True, fail=False) is None


# --------------------------------------------------------------------------------------
# (e) the outbox survives a broker outage
# --------------------------------------------------------------------------------------
async def outbox_rows(db: Database) -> list[OutboxMessage]:
    async with db.session() as session:
        return list((await session.exec(select(OutboxMessage))).all())


async def test_outbox_row_committed_while_broker_is_unreachable_is_published_later(
    tmp_path: Path, broker_proxy: Any, database_url: str
) -> None:
    h = await make_harness(
        tmp_path, broker_proxy.url, database_url, relay=True, direct_url=broker_proxy.direct_url
    )
    try:
        # a queue of the test's own for the fact the events service publishes
        queue = await h.channel.declare_queue("test.events-published", durable=True)
        await queue.bind(EXCHANGE_NAME, routing_key="events.event.published")
        now = utcnow()
        event = await events_service.create_event(
            h.db,
            STAFF,
            EventIn(
                ks="primskovo",
                title="Delavnica peke kruha",
                starts_at=now + timedelta(days=7),
                ends_at=now + timedelta(days=7, hours=2),
                venue="Dom KS Primskovo",
            ),
        )
        assert await h.bus.is_connected()

        await broker_proxy.cut()  # the broker is gone: live connection dropped, new ones refused
        await events_service.publish_event(h.db, h.settings, event.id)  # commits; wakes the relay

        rows = await wait_until(
            lambda: _failed_rows(h.db), timeout=20, message="the relay to try and fail while the broker is away"
        )
        [row] = rows
        assert row.sent_at is None and row.attempts >= 1 and row.last_error
        assert await queue.get(no_ack=True, fail=False) is None

        await broker_proxy.restore()
        await wait_until(lambda: _sent_rows(h.db), timeout=30, message="the outbox row to be sent after the outage")
        [message] = await h.drain("test.events-published", 1)
        [row] = await outbox_rows(h.db)
        assert row.sent_at is not None and row.last_error is None
        assert message.body.decode() == row.body
        envelope = json.loads(message.body)
        assert envelope["type"] == "si.kranj.events.event.published.v1"
        assert envelope["data"]["event_id"] == event.id
        assert message.message_id == envelope["id"] == row.id
        assert message.content_type == "application/cloudevents+json"
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    finally:
        await close_harness(h)


async def _failed_rows(db: Database) -> list[OutboxMessage] | None:
    rows = await outbox_rows(db)
    return rows if rows and all(r.attempts >= 1 and r.last_error for r in rows) else None


async def _sent_rows(db: Database) -> list[OutboxMessage] | None:
    rows = await outbox_rows(db)
    return rows if rows and all(r.sent_at is not None for r in rows) else None


async def test_consumer_comes_back_after_the_connection_drops(
    tmp_path: Path, broker_proxy: Any, database_url: str
) -> None:
    h = await make_harness(tmp_path, broker_proxy.url, database_url, direct_url=broker_proxy.direct_url)
    try:
        counts = Counts()
        await h.publish_plain(json.dumps(notice()))  # published directly, consumed through the proxy
        await wait_until(lambda: counts("processed") == 1, message="the first message")

        await broker_proxy.cut()
        await asyncio.sleep(0.5)
        await h.publish_plain(json.dumps(notice()))  # waits in the queue while the consumer is away
        await broker_proxy.restore()

        await wait_until(lambda: counts("processed") == 2, timeout=30, message="the consumer to come back")
        await h.publish_plain(json.dumps(notice()))
        await wait_until(lambda: counts("processed") == 3, timeout=10, message="a message after the reconnect")
        assert await h.rows() == 3
    finally:
        await close_harness(h)


# --------------------------------------------------------------------------------------
# (f) mandatory publishing
# --------------------------------------------------------------------------------------
async def test_unroutable_publish_raises(tmp_path: Path, amqp_url: str) -> None:
    settings = make_settings(tmp_path, amqp_url)
    await upgrade_async("events", settings.database_url("events"))
    db = Database(settings.database_url("events"))
    bus = Bus(settings, "events", db)
    await bus.start(relay=False)
    try:
        body = json.dumps({"specversion": "1.0", "id": "x", "source": "/t", "type": "si.kranj.nobody.listens.here.v1"})
        with pytest.raises(aiormq.exceptions.DeliveryError, match="NO_ROUTE") as caught:
            await publish_envelope(
                bus.broker, body, routing_key="nobody.listens.here", message_id="x", message_type="t"
            )
        assert "routing_key='nobody.listens.here'" in str(caught.value)
        # the same call with a bound routing key is confirmed
        await publish_envelope(
            bus.broker, body, routing_key="events.event.published", message_id="y", message_type="t"
        )

        # the relay treats a returned message as not sent: the row stays, with the reason
        async with db.session() as session:
            session.add(OutboxMessage(id="z", routing_key="nobody.listens.here", type="t", body=body))
            await session.commit()
        assert await bus.relay.flush_once() == 0
        [row] = await outbox_rows(db)
        assert row.sent_at is None and row.attempts == 1
        assert row.last_error is not None and "NO_ROUTE" in row.last_error
        assert row.next_attempt_at > utcnow()  # backed off, not hammering the broker
        assert await bus.relay.flush_once() == 0  # not due yet: nothing tried
        assert (await outbox_rows(db))[0].attempts == 1
    finally:
        await bus.stop()
        await db.dispose()


async def test_a_nacked_publish_stays_in_the_outbox_and_the_relay_renews_its_channel(
    tmp_path: Path, amqp_url: str
) -> None:
    """A broker that refuses a publish (Basic.Nack; here a full queue that rejects, in a
    cluster a channel that lost a quorum queue's leader with a node, docs/scaling.md): the
    row stays with the reason, and the next try goes on a new channel of the relay's own."""
    settings = make_settings(tmp_path, amqp_url)
    await upgrade_async("events", settings.database_url("events"))
    db = Database(settings.database_url("events"))
    bus = Bus(settings, "events", db)
    await bus.start(relay=False)
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        full = await channel.declare_queue(
            f"test.full-{uuid.uuid4().hex[:6]}",
            arguments={"x-max-length": 1, "x-overflow": "reject-publish"},
        )
        await full.bind("kranj", "test.nacked")
        await channel.default_exchange.publish(aio_pika.Message(b"first"), routing_key=full.name)  # now full
        body = json.dumps({"specversion": "1.0", "id": "n", "source": "/t", "type": "si.kranj.test.nacked.v1"})
        async with db.session() as session:
            session.add(OutboxMessage(id="n", routing_key="test.nacked", type="t", body=body))
            await session.commit()
        assert await bus.relay.flush_once() == 0
        [row] = await outbox_rows(db)
        assert row.sent_at is None and row.attempts == 1 and "Nack" in (row.last_error or "")
        assert bus.relay.channel.renewals == 1  # the channel closed: the next try opens another

        await full.purge()  # room again
        async with db.session() as session:  # due now
            stored = await session.get(OutboxMessage, "n")
            stored.next_attempt_at = utcnow()
            await session.commit()
        assert await bus.relay.flush_once() == 1
        [row] = await outbox_rows(db)
        assert row.sent_at is not None and row.last_error is None
        assert bus.relay.channel.renewals == 1  # confirmed: nothing renewed
        message = await full.get(no_ack=True)
        assert message.body == body.encode() and message.message_id == "n" and message.user_id == bus.user
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT and message.app_id == "kranj-events"
        assert message.content_type == "application/cloudevents+json" and message.type == "t"
        assert message.routing_key == "test.nacked" and message.exchange == "kranj"
    finally:
        await connection.close()
        await bus.stop()
        await db.dispose()


# --------------------------------------------------------------------------------------
# A broker that stops answering (a silent network; a memory or disk alarm, which makes
# RabbitMQ block publishing connections) while the TCP connection stays up
# --------------------------------------------------------------------------------------
async def test_publish_gives_up_when_the_broker_stops_answering(
    tmp_path: Path, broker_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FastStream 0.7.8 ignores publish(timeout=); publish_envelope enforces PUBLISH_TIMEOUT itself."""
    settings = make_settings(tmp_path, broker_proxy.url)
    db = Database(settings.database_url("events"))
    bus = Bus(settings, "events", db)
    await bus.start(relay=False)
    monkeypatch.setattr(shared.broker, "PUBLISH_TIMEOUT", 1.0)  # the fix's knob
    try:
        broker_proxy.stall()
        started = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(3):
                with pytest.raises(TimeoutError):
                    await publish_envelope(
                        bus.broker, "{}", routing_key="events.event.published", message_id="m", message_type="t"
                    )
        except TimeoutError:
            pytest.fail("publish_envelope still waiting after 3 s on a broker that does not answer")
        assert asyncio.get_running_loop().time() - started < 2.5
    finally:
        await broker_proxy.cut()
        await broker_proxy.restore()
        await bus.stop()
        await db.dispose()


async def test_writes_go_on_while_the_relay_waits_for_a_silent_broker(
    request: pytest.FixtureRequest, tmp_path: Path, broker_proxy: Any, database_url: str
) -> None:
    """On SQLite the relay must not hold the only write lock while it waits for confirms."""
    h = await make_harness(tmp_path, broker_proxy.url, database_url, relay=True, direct_url=broker_proxy.direct_url)
    try:
        now = utcnow()
        data = EventIn(
            ks="center",
            title="Božični sejem",
            starts_at=now + timedelta(days=20),
            ends_at=now + timedelta(days=20, hours=6),
            venue="Glavni trg",
        )
        first = await events_service.create_event(h.db, STAFF, data)
        broker_proxy.stall()
        await events_service.publish_event(h.db, h.settings, first.id)  # the relay wakes, publishes, waits
        await asyncio.sleep(0.5)
        # (a task: a write stuck in aiosqlite's thread cannot be cancelled, only unblocked)
        write = asyncio.create_task(events_service.create_event(h.db, STAFF, data))
        done, _ = await asyncio.wait({write}, timeout=3)
        if not done:
            await broker_proxy.cut()  # the relay's publish fails, its transaction ends ...
            await asyncio.wait({write}, timeout=30)  # ... and the write can finish
            pytest.fail("a plain write waited > 3 s for the outbox relay, which waits for the broker")
        assert write.result().id != first.id
    finally:
        await broker_proxy.cut()
        await broker_proxy.restore()
        await close_harness(h)


async def test_stop_returns_when_the_broker_is_silent(tmp_path: Path, broker_proxy: Any) -> None:
    """Bus.stop() is bounded: a silent broker cannot keep a stopping service alive."""
    settings = make_settings(tmp_path, broker_proxy.url, graceful_timeout=0.5)
    db = Database(settings.database_url("events"))
    bus = Bus(settings, "events", db)
    bus.consume(TEST_QUEUE, Handles(NOTICE_REQUESTED, lambda *_: asyncio.sleep(0)))
    await bus.start(relay=True)
    broker_proxy.stall()
    stopping = asyncio.create_task(bus.stop())
    try:
        done, _ = await asyncio.wait({stopping}, timeout=4)
        assert done, "Bus.stop() still waiting 4 s after it was asked to stop (graceful_timeout 0.5 s)"
        stopping.result()
    finally:
        await broker_proxy.cut()  # lets a stuck stop() finish
        await asyncio.wait({stopping}, timeout=30)
        if stopping.done() and not stopping.cancelled():
            stopping.exception()  # retrieved: a stop cut short may fail, that is not the point here
        await db.dispose()
