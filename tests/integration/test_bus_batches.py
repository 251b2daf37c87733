"""The Consumer's group commit on the real broker, SQLite and PostgreSQL: messages that
arrive together share one transaction (each with its inbox row, each acked after it), a
message that fails rolls its batch back and every message of it is then handled alone —
so one bad message neither loses nor repeats the others', and a duplicate in the same
batch is handled once. At INFO, each message is logged once, by the Consumer."""

from __future__ import annotations

import asyncio
import json
import logging

import aio_pika
import pytest
from support.settings import wait_until
from test_bus import Counts, close_harness, make_harness, notice

from shared.bus import DEAD_QUEUE_NAME, Handles
from shared.contracts import NOTICE_REQUESTED, parse_data, parse_envelope

pytestmark = pytest.mark.integration


async def publish_together(url: str, bodies: list[dict]) -> None:
    """One connection, every publish confirmed at once: they reach the queue together."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("kranj")
        await asyncio.gather(
            *(exchange.publish(aio_pika.Message(json.dumps(b).encode()), "notify.notice.requested") for b in bodies)
        )


def batch_sizes(caplog: pytest.LogCaptureFixture) -> list[int]:
    return [r.batch for r in caplog.records if r.name == "kranj.bus" and hasattr(r, "batch")]


async def test_messages_arriving_together_share_a_transaction_and_a_failing_one_goes_alone(
    tmp_path, amqp_url, database_url, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="kranj.bus")
    h = await make_harness(tmp_path, amqp_url, database_url)
    try:
        counts = Counts()
        # 1. 40 messages at once, one of them twice: handled together
        bodies = [notice() for _ in range(40)]
        await publish_together(h.direct_url, [*bodies, bodies[7]])
        await wait_until(lambda: counts("processed") + counts("duplicate") == 41, timeout=30, message="41 outcomes")
        assert counts("processed") == 40 and counts("duplicate") == 1
        assert await h.rows() == 40
        assert sorted(p.message_id for p in await h.processed()) == sorted(b["id"] for b in bodies)
        assert max(batch_sizes(caplog)) > 1, "messages that arrived together were not committed together"

        # 2. a batch with a message whose handler fails: the batch is rolled back, every other
        #    message of it is then handled once, alone; the failing one fails alone too (and is
        #    retried by redelivery, then dead-lettered, as test_bus proves)
        caplog.clear()
        consumer = h.bus.consumers[0]
        wave = [parse_envelope(json.dumps(notice()).encode()) for _ in range(15)]
        bad = wave[6].id

        async def handler(session, envelope, data) -> None:
            if envelope.id == bad:
                raise RuntimeError("this one is broken")
            await h.handler(session, envelope, data)

        handles = Handles(NOTICE_REQUESTED, handler)
        outcomes = await asyncio.gather(
            *(consumer._handle(e, handles, parse_data(e, NOTICE_REQUESTED)) for e in wave), return_exceptions=True
        )
        assert [o for i, o in enumerate(outcomes) if i != 6] == ["processed"] * 14
        assert isinstance(outcomes[6], RuntimeError)
        assert any("rolled back; handling each alone" in r.getMessage() for r in caplog.records)
        assert await h.rows() == 40 + 14
        processed = {p.message_id for p in await h.processed()}
        assert bad not in processed and all(e.id in processed for i, e in enumerate(wave) if i != 6)
        q = await h.channel.get_queue(DEAD_QUEUE_NAME, ensure=True)
        assert await q.get(no_ack=True, fail=False) is None
    finally:
        await close_harness(h)


async def test_at_info_each_message_is_logged_once_by_the_consumer_and_not_by_faststream(
    tmp_path, amqp_url, caplog: pytest.LogCaptureFixture
):
    """At INFO, the production level, a message gives one line of the Consumer (its id, type,
    source and queue): FastStream's own "Received" and "Processed" for every message are
    DEBUG (they were half of the lines and about a fifth of notify's CPU per notice)."""
    caplog.set_level(logging.INFO)
    h = await make_harness(tmp_path, amqp_url, f"sqlite+aiosqlite:///{(tmp_path / 'x.db').resolve()}")
    try:
        counts = Counts()
        bodies = [notice() for _ in range(12)]
        await publish_together(h.direct_url, bodies)
        await wait_until(lambda: counts("processed") == 12, timeout=30, message="12 processed")
        ids = {b["id"] for b in bodies}
        per_message = [r for r in caplog.records if getattr(r, "ce_id", None) in ids]
        assert sorted(r.ce_id for r in per_message) == sorted(ids)  # once each
        assert {(r.name, r.getMessage()) for r in per_message} == {("kranj.bus", "message processed")}
        faststream = [r for r in caplog.records if r.name.endswith(".faststream") and r.levelno >= logging.INFO]
        assert not [r for r in faststream if r.getMessage() in ("Received", "Processed")], faststream[:3]
    finally:
        await close_harness(h)


async def _left_on(h, queue: str) -> int:
    """Messages ready on `queue` (after the Bus stopped: what it had not acked is back)."""
    q = await h.channel.declare_queue(queue, passive=True)
    return q.declaration_result.message_count


async def test_a_batch_is_acked_with_one_frame_and_a_message_still_in_hand_is_never_acked_with_it(
    tmp_path, amqp_url, database_url
):
    """shared/acks.py on the real broker. (1) 40 messages that arrive together are acked with
    fewer frames than messages (a multiple ack), and once the Bus has stopped none of them
    comes back. (2) The first of 25 fails once: while it waits for its retry (0.5 s, then a
    nack) the 24 after it are stored and acked, but no ack covers it, so it is redelivered
    and stored too: each of the 25 once, nothing lost, nothing left on the queue."""
    from test_bus import TEST_QUEUE

    h = await make_harness(tmp_path, amqp_url, database_url)
    stopped = False
    try:
        counts = Counts()
        bodies = [notice() for _ in range(40)]
        await publish_together(h.direct_url, bodies)
        await wait_until(lambda: counts("processed") == 40, timeout=30, message="40 processed")
        [window] = list(h.bus.acks._windows.values())
        assert window.multiple_acks >= 1 and not window.waiting and window.coalescing
        frames_before = window.multiple_acks

        wave = [notice() for _ in range(25)]
        h.fail_first = {wave[0]["id"]: 2}  # in its batch (rolled back), then alone: retried
        await publish_together(h.direct_url, wave)
        await wait_until(lambda: counts("processed") == 65, timeout=30, message="25 more processed, one after a retry")
        assert counts("retried") in (1, 2) and counts("dead_lettered") == 0  # alone once or twice
        assert h.calls.count(wave[0]["id"]) == 3  # failed twice, then redelivered and stored
        assert await h.rows() == 65
        assert sorted(p.message_id for p in await h.processed()) == sorted(b["id"] for b in bodies + wave)
        assert window.multiple_acks >= frames_before and window.coalescing
        await h.bus.stop()
        stopped = True
        assert await _left_on(h, TEST_QUEUE.name) == 0  # every delivery acked, none twice
        assert await h.rows() == 65
    finally:
        if not stopped:
            await h.bus.stop()
        await h.amqp.close()
        await h.db.dispose()
