"""CPU per message of a consumer alone (issue 20 §4, ingest): the same noticeboard-only
notices wait in a quorum queue before the consumer starts, and its CPU is counted from its
first message to its last. Three consumers, each in a process of its own:

- `plain`: aio-pika, prefetch 100, each message acked (the broker ceiling's consumer);
- `faststream`: a FastStream subscriber on the broker notify uses (shared.broker.make_broker:
  no FastDepends, the ack policy, the prefetch, confirms), whose handler only acks: the
  framework's own cost per message, under anything a service does with it;
- `notify`: the real service draining `notify.on-notice-requested` (parse, sender check,
  inbox, group commit on SQLite, ack), as in the ingest phase.

    .venv/bin/python -m bench --only floor   # prints the three, writes nothing
"""

from __future__ import annotations

import asyncio
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aio_pika
import psutil
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from .procs import ROOT, Service, Vhost, base_env

LABELS = {
    "plain": "plain aio-pika consumer",
    "faststream": "FastStream subscriber with notify's broker settings, handler only acks",
    "notify": "notify's consumer (parse, check, inbox, group commit on SQLite)",
}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _consume_plain(url: str, queue: str, n: int) -> float:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=100)
        q = await channel.get_queue(queue)
        done = asyncio.get_running_loop().create_future()
        got, started = 0, 0.0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal got, started
            if got == 0:
                started = _cpu()
            await message.ack()
            got += 1
            if got >= n and not done.done():
                done.set_result(None)

        await q.consume(on_message)
        await done
        return (_cpu() - started) * 1000 / n


async def _consume_faststream(url: str, queue: str, n: int) -> float:
    from faststream.rabbit import QueueType, RabbitQueue

    from shared.broker import make_broker
    from shared.inbox import _undecoded
    from shared.settings import Settings

    broker = make_broker(Settings(amqp_url=url), "bench")
    context = broker.context
    done = asyncio.get_running_loop().create_future()
    got, started = 0, 0.0

    async def on_message(_body: bytes) -> None:  # as shared.bus.Bus.consume registers one
        nonlocal got, started
        if got == 0:
            started = _cpu()
        await context.get_local("message").ack()
        got += 1
        if got >= n and not done.done():
            done.set_result(None)

    broker.subscriber(RabbitQueue(queue, queue_type=QueueType.QUORUM, durable=True), decoder=_undecoded)(on_message)
    await broker.start()
    try:
        await done
        return (_cpu() - started) * 1000 / n
    finally:
        await broker.stop()


def consumer_main(kind: str, url: str, queue: str, n: int) -> None:
    """In the child process: consume `n` messages, print the CPU ms per message as JSON."""
    run = _consume_plain if kind == "plain" else _consume_faststream
    print(json.dumps({"cpu_ms": asyncio.run(run(url, queue, n))}), flush=True)


async def _fill(url: str, routing: tuple[str, str], bodies: list[bytes]) -> None:
    """Publish `bodies` (persistent, confirmed) to `routing` = (exchange, routing key)."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = channel.default_exchange if not routing[0] else await channel.get_exchange(routing[0])
        for first in range(0, len(bodies), 500):
            await asyncio.gather(
                *(
                    exchange.publish(aio_pika.Message(body, delivery_mode=2), routing[1])
                    for body in bodies[first : first + 500]
                )
            )


async def _plain_or_faststream(kind: str, url: str, bodies: list[bytes]) -> float:
    name = f"bench.floor.{uuid.uuid4().hex[:6]}"
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        q = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        await _fill(url, ("", name), bodies)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.floor", kind, url, name, str(len(bodies)),
            cwd=ROOT, stdout=subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=300)
        await q.delete(if_unused=False, if_empty=False)
    return float(json.loads(out.decode().strip().splitlines()[-1])["cpu_ms"])


async def _notify(url: str, tmp: Path, bodies: list[bytes], source: str, profile: Path | None = None) -> float:
    from shared.migrations import upgrade_async

    data = tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    db = f"sqlite+aiosqlite:///{(data / 'notify.db').resolve()}"
    await upgrade_async("notify", db)
    env = base_env(url, data)
    service = Service("notify", env, tmp)
    service.start()  # declares the topology, then stops: the notices wait in its queue
    await service.ready()
    service.stop()
    await _fill(url, ("kranj", "notify.notice.requested"), bodies)
    service = Service("notify", env, tmp, profile=profile)
    service.start()
    await service.ready()
    proc = psutil.Process(service.pid)
    before = sum(proc.cpu_times()[:2])
    engine = create_async_engine(db)
    sql = sa.text("SELECT count(*) FROM notices WHERE source = :source")
    try:
        deadline = time.perf_counter() + 300
        while True:
            async with engine.connect() as conn:
                if int((await conn.execute(sql, {"source": source})).scalar_one()) >= len(bodies):
                    break
            if time.perf_counter() > deadline:
                raise RuntimeError("notify did not store the notices within 300 s")
            await asyncio.sleep(0.05)
        return (sum(proc.cpu_times()[:2]) - before) * 1000 / len(bodies)
    finally:
        await engine.dispose()
        service.stop()


async def run(n: int, make_body: Callable[[int, str], bytes], profile: Path | None = None) -> dict[str, Any]:
    """CPU ms per message of each consumer alone, `n` messages each, on a vhost of its own;
    with `profile`, notify's is sampled by py-spy into that file (bench/profile.py)."""
    source = f"/bench/floor-{uuid.uuid4().hex[:6]}"
    bodies = [make_body(i, source) for i in range(n)]
    tmp = Path(tempfile.mkdtemp(prefix="kranj-bench-floor-"))
    try:
        with Vhost() as vhost:
            result = {
                "messages": n,
                "plain": round(await _plain_or_faststream("plain", vhost.url, bodies), 3),
                "faststream": round(await _plain_or_faststream("faststream", vhost.url, bodies), 3),
                "notify": round(await _notify(vhost.url, tmp, bodies, source, profile), 3),
            }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"cpu_ms_per_message": result, "labels": LABELS}


if __name__ == "__main__":
    consumer_main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
