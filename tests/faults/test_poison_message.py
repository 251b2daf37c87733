"""A poison message that crashes its consumer process every time it is handled: the
quorum queue's delivery limit dead-letters it into `kranj.dead`, and the queue keeps
flowing (the messages behind it are handled once each).

(A handler that merely raises is dead-lettered by shared.bus after HANDLER_ATTEMPTS with
the error as reason: tests/integration/test_bus.py proves that. Here the process itself
dies, so only the broker can count; a supervisor restarts it, as `kranj up` does.)"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import aio_pika
from support.rabbit import publish_bare
from support.settings import wait_until

from kranj.supervisor import ChildSpec, Supervisor
from shared.bus import DEAD_QUEUE_NAME, DELIVERY_LIMIT

from .conftest import notice_envelope

SCRIPT = Path(__file__).with_name("crashing_consumer.py")
ROOT = Path(__file__).resolve().parents[2]


async def test_poison_message_is_dead_lettered_after_the_delivery_limit_and_the_queue_flows(
    tmp_path, fault_amqp_url
):
    data_dir = tmp_path / "consumer"
    data_dir.mkdir()
    logs: list[str] = []
    supervisor = Supervisor(
        [ChildSpec("consumer", [sys.executable, str(SCRIPT), fault_amqp_url, str(data_dir)], cwd=str(ROOT))],
        backoff_initial=0.1,
        backoff_max=0.2,
        stop_timeout=10,
        log=logs.append,
    )
    thread = threading.Thread(target=supervisor.run, kwargs={"install_signal_handlers": False}, daemon=True)
    thread.start()
    starts = data_dir / "starts.txt"
    handled = data_dir / "handled.txt"
    try:
        await wait_until(starts.exists, timeout=60, interval=0.1, message="the consumer to start")
        # One KS: a plain message may not be city-wide (shared/senders.py), the default of notice_envelope.
        poison = notice_envelope("POISON", ks=["primskovo"])
        good = [notice_envelope(f"Obvestilo {i}", ks=["primskovo"]) for i in range(3)]
        for envelope in (poison, *good):
            await publish_bare(fault_amqp_url, json.dumps(envelope), routing_key="notify.notice.requested")

        await wait_until(
            lambda: handled.exists() and len(handled.read_text().split()) >= len(good),
            timeout=150,
            interval=0.2,
            message="the messages behind the poison handled",
        )
        assert sorted(handled.read_text().split()) == sorted(e["id"] for e in good)  # each once
        crashes = sum("exited with code 3" in line for line in logs)
        assert crashes == DELIVERY_LIMIT + 1, logs  # the first delivery and DELIVERY_LIMIT redeliveries

        connection = await aio_pika.connect(fault_amqp_url)
        async with connection:
            channel = await connection.channel()
            dead = await channel.get_queue(DEAD_QUEUE_NAME)
            message = await dead.get(no_ack=True, fail=False, timeout=10)
            assert message is not None, "nothing in kranj.dead"
            assert json.loads(message.body)["id"] == poison["id"]
            death = (message.headers or {}).get("x-death") or []
            assert death and death[0]["queue"] == "events.test-crashing", message.headers
            assert await dead.get(no_ack=True, fail=False, timeout=5) is None
        assert supervisor.pids()["consumer"] is not None  # still serving
    finally:
        supervisor.request_stop("test over")
        thread.join(timeout=30)
    print(f"\npoison: {crashes} crashes, then kranj.dead (reason {death[0].get('reason')}); {len(good)} good messages once each")
