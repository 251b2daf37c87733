"""EXPERIMENT (not committed): nacks after the leader of a quorum queue is killed."""
from __future__ import annotations

import asyncio
import time

import aio_pika
import pytest
from aio_pika.exceptions import DeliveryError

pytestmark = pytest.mark.faults


async def _publisher(url, label, log, stop, reopen: bool):
    connection = await aio_pika.connect(url)
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    exchange = await channel.get_exchange("xx")
    n = 0
    while not stop.is_set():
        n += 1
        t = time.monotonic()
        try:
            async with asyncio.timeout(10):
                await exchange.publish(aio_pika.Message(b"x" * 200, delivery_mode=2), routing_key="notify.delivery.outcomes", mandatory=True)
            log.append((t, label, "ack"))
        except DeliveryError as exc:
            log.append((t, label, f"nack {type(exc.frame).__name__ if exc.frame else ''}"))
            if reopen:
                try:
                    await channel.close()
                except Exception:
                    pass
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                exchange = await channel.get_exchange("xx")
        except Exception as exc:  # noqa
            log.append((t, label, f"err {type(exc).__name__}: {exc}"[:80]))
            await asyncio.sleep(0.5)
            try:
                connection = await aio_pika.connect(url)
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                exchange = await channel.get_exchange("xx")
            except Exception as exc2:
                log.append((t, label, f"reconnect {exc2!r}"[:80]))
        await asyncio.sleep(0.05)
    await connection.close()


async def test_nacks_after_leader_kill(rabbit_cluster):
    vhost = rabbit_cluster.new_vhost()
    n1, n2, n3 = rabbit_cluster.nodes
    url2 = f"amqp://guest:guest@127.0.0.1:{n2.port}/{vhost}"
    url3 = f"amqp://guest:guest@127.0.0.1:{n3.port}/{vhost}"
    url1 = f"amqp://guest:guest@127.0.0.1:{n1.port}/{vhost}"
    c = await aio_pika.connect(url1)  # declared on n1: its leader is there
    ch = await c.channel()
    x = await ch.declare_exchange("xx", aio_pika.ExchangeType.TOPIC, durable=True)
    q = await ch.declare_queue("notify.delivery-outcomes", durable=True, arguments={
        "x-queue-type": "quorum", "x-max-length": 100_000, "x-overflow": "drop-head", "x-message-ttl": 7 * 24 * 3600 * 1000})
    await q.bind(x, "notify.delivery.*")
    await c.close()
    assert rabbit_cluster.leader(vhost, "notify.delivery-outcomes") is n1
    log: list = []
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(_publisher(url2, "same-channel", log, stop, reopen=False)),
        asyncio.create_task(_publisher(url3, "reopen", log, stop, reopen=True)),
    ]
    await asyncio.sleep(3)
    pid = n1.os_pid()
    killed = time.monotonic()
    n1.kill_9(pid)
    await asyncio.sleep(100)
    stop.set()
    await asyncio.gather(*tasks)
    leader = rabbit_cluster.leader(vhost, "notify.delivery-outcomes")
    out = [f"leader after: {leader.name}"]
    for label in ("same-channel", "reopen"):
        rows = [(t - killed, s) for t, lab, s in log if lab == label and t >= killed]
        firsts = {}
        for t, s in rows:
            firsts.setdefault(s, t)
        last_bad = max((t for t, s in rows if s != "ack"), default=None)
        first_ack_after_bad = next((t for t, s in rows if s == "ack" and (last_bad is None or t > last_bad)), None)
        counts = {}
        for _, s in rows:
            counts[s] = counts.get(s, 0) + 1
        out.append(f"{label}: counts={counts} firsts={ {k: round(v, 1) for k, v in firsts.items()} } last_bad={last_bad and round(last_bad,1)} acks_again_from={first_ack_after_bad and round(first_ack_after_bad,1)}")
    print("\n" + "\n".join(out))
    open("/tmp/exp/result.txt", "a").write("\n".join(out) + "\n---\n")
